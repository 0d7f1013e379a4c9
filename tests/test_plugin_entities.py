"""
Entities that plugins declare (L{echogate.pdk.entities.PluginEntity}): the
Admin API's endpoints over a L{MemoryStore}, the generic table of
L{PostgresStore}, and the records in a real node's snapshot, read by a
phase, on two nodes.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from echogate.errors import UniqueViolation
from echogate.pdk.credentials import CredentialIndex, UnknownEntity
from echogate.store.data import ConfigurationData
from echogate.store.memory import MemoryStore
from tests.admin.test_admin import AdminTestCase
from tests.examples import example_module
from tests.gateway import start_gateway
from tests.postgres import fresh_database
from tests.upstream_server import start_upstream

_tokens = example_module("entity-plugin", "tokens_plugin")
TOKENS, TokenAuth = _tokens.TOKENS, _tokens.TokenAuth

PLUGINS = {"token-auth": TokenAuth()}


class AdminEndpointTests(AdminTestCase):
    """
    A plugin's entity in the Admin API, over a L{MemoryStore}.
    """

    def make_api(self, **kw: Any) -> Any:
        return super().make_api(plugins=PLUGINS, **kw)

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.ok("POST", "/consumers", 201, json_body={"username": "alice"})

    def test_createNested(self) -> None:
        """
        POST under a consumer makes a record that belongs to it.
        """
        token = self.ok("POST", "/consumers/alice/tokens", 201, json_body={"token": "t1"})
        self.assertEqual((token["token"], token["consumer"], token["label"], token["tags"]),
                         ("t1", {"id": self.alice["id"]}, None, None))

    def test_topLevel(self) -> None:
        """
        POST, GET by id and by key, PATCH, PUT and DELETE at the top level.
        """
        token = self.ok("POST", "/tokens", 201, json_body={"token": "t1", "consumer": {"username": "alice"}})
        self.assertEqual(self.ok("GET", "/tokens/t1"), token)
        self.assertEqual(self.ok("GET", f"/tokens/{token['id']}"), token)
        self.assertEqual(self.ok("PATCH", "/tokens/t1", json_body={"label": "ci"})["label"], "ci")
        self.assertEqual(self.ok("GET", "/tokens/t1/consumer")["id"], self.alice["id"])
        replaced = self.ok("PUT", f"/tokens/{token['id']}",
                           json_body={"token": "t2", "consumer": {"id": self.alice["id"]}})
        self.assertEqual((replaced["token"], replaced["label"]), ("t2", None))
        self.assertEqual(self.call("DELETE", "/tokens/t2").status, 204)
        self.assertEqual(self.call("GET", "/tokens/t2").status, 404)

    def test_nestedOfAnother(self) -> None:
        """
        A record of another consumer is not found under this one.
        """
        self.ok("POST", "/consumers", 201, json_body={"username": "bob"})
        self.ok("POST", "/consumers/bob/tokens", 201, json_body={"token": "tb"})
        self.assertEqual(self.call("GET", "/consumers/alice/tokens/tb").status, 404)
        self.assertEqual(self.ok("GET", "/consumers/bob/tokens/tb")["token"], "tb")
        self.assertEqual([t["token"] for t in self.ok("GET", "/consumers/alice/tokens")["data"]], [])

    def test_unique(self) -> None:
        """
        A unique field's value taken by another record is 409.
        """
        self.ok("POST", "/consumers/alice/tokens", 201, json_body={"token": "t1"})
        answer = self.call("POST", "/tokens", json_body={"token": "t1", "consumer": {"id": self.alice["id"]}})
        self.assertEqual(answer.status, 409, answer.raw)
        self.assertEqual(answer.json["fields"], {"token": "t1"})

    def test_schemaViolation(self) -> None:
        """
        A body the entity's schema refuses is 400, Kong-shaped.
        """
        answer = self.call("POST", "/consumers/alice/tokens", json_body={"label": 3})
        self.assertEqual(answer.status, 400, answer.raw)
        self.assertEqual(answer.json["fields"]["token"], "required field missing")

    def test_cascade(self) -> None:
        """
        Deleting the consumer deletes its records.
        """
        self.ok("POST", "/consumers/alice/tokens", 201, json_body={"token": "t1"})
        self.assertEqual(self.call("DELETE", "/consumers/alice").status, 204)
        self.assertEqual(self.ok("GET", "/tokens")["data"], [])

    def test_pagesAndTags(self) -> None:
        """
        Lists are paged and filtered by tags.
        """
        for n in range(3):
            self.ok("POST", "/consumers/alice/tokens", 201, json_body={"token": f"t{n}", "tags": [f"n{n}"]})
        first = self.ok("GET", "/tokens?size=2")
        self.assertEqual((len(first["data"]), first["next"].startswith("/tokens?")), (2, True))
        rest = self.ok("GET", first["next"])
        self.assertEqual(len(rest["data"]), 1)
        self.assertEqual([t["token"] for t in self.ok("GET", "/tokens?tags=n1")["data"]], ["t1"])

    def test_unknownEndpoint(self) -> None:
        """
        A name no loaded plugin declares is 404; the core's paths are untouched.
        """
        self.assertEqual(self.call("GET", "/nothing").status, 404)
        self.assertEqual(self.call("GET", "/consumers/alice/nothing").status, 404)
        self.assertEqual(self.ok("GET", "/consumers")["data"][0]["username"], "alice")


class AdminDescriptionTests(AdminTestCase):
    """
    A plugin's entity in the Admin API's descriptions of itself: C{/tags},
    C{/schemas}, C{/endpoints}.
    """

    def make_api(self, **kw: Any) -> Any:
        return super().make_api(plugins=PLUGINS, **kw)

    def test_tags(self) -> None:
        """
        C{GET /tags} and C{GET /tags/{tag}} list a tagged record under its entity's name.
        """
        self.ok("POST", "/consumers", 201, json_body={"username": "alice"})
        token = self.ok("POST", "/consumers/alice/tokens", 201, json_body={"token": "t1", "tags": ["ci"]})
        row = {"entity_name": TOKENS.name, "entity_id": token["id"], "tag": "ci"}
        self.assertIn(row, self.ok("GET", "/tags")["data"])
        self.assertEqual(self.ok("GET", "/tags/ci")["data"], [row])

    def test_schema(self) -> None:
        """
        C{GET /schemas/{entity}} describes the entity: its own fields and
        the parent's, required.
        """
        described = self.ok("GET", f"/schemas/{TOKENS.name}")
        fields = {name: spec for field in described["fields"] for name, spec in field.items()}
        self.assertEqual((fields["token"]["type"], fields["token"]["required"]), ("string", True))
        self.assertEqual((fields["consumer"]["type"], fields["consumer"]["reference"]), ("foreign", "consumers"))
        self.assertIn("label", fields)

    def test_validate(self) -> None:
        """
        C{POST /schemas/{entity}/validate} judges a record of the entity,
        writing nothing.
        """
        consumer = {"id": "11111111-1111-4111-8111-111111111111"}
        self.assertEqual(self.ok("POST", f"/schemas/{TOKENS.name}/validate",
                                 json_body={"token": "t1", "consumer": consumer}),
                         {"message": "schema validation successful"})
        bad = self.ok("POST", f"/schemas/{TOKENS.name}/validate", 400, json_body={"label": 1})
        self.assertEqual(bad["fields"]["token"], "required field missing")
        self.assertEqual(self.ok("GET", "/tokens")["data"], [])

    def test_endpoints(self) -> None:
        """
        C{GET /endpoints} lists the entity's own paths, not the rules that
        match any name.
        """
        data = self.ok("GET", "/endpoints")["data"]
        for path in ["/tokens", "/tokens/{tokens}", "/tokens/{tokens}/consumer",
                     "/consumers/{consumers}/tokens", "/consumers/{consumers}/tokens/{tokens}"]:
            self.assertIn(path, data)
        self.assertEqual([p for p in data if "collection" in p or "kind" in p or "/services/{services}/tokens"
                          in p or "/tokens/{tokens}/service" in p], [])


class WithoutThePluginTests(AdminTestCase):
    """
    A node without the plugin serves none of its endpoints.
    """

    def test_notServed(self) -> None:
        """
        C{/tokens} is 404.
        """
        self.assertEqual(self.call("GET", "/tokens").status, 404)

    def test_notDescribed(self) -> None:
        """
        C{/schemas/{entity}} does not know the entity; C{/endpoints} lists
        no plugin entity's path.
        """
        self.assertEqual(self.ok("GET", f"/schemas/{TOKENS.name}", 404),
                         {"message": f"No entity named '{TOKENS.name}'"})
        self.assertEqual(self.ok("POST", f"/schemas/{TOKENS.name}/validate", 404, json_body={}),
                         {"message": f"No entity named '{TOKENS.name}'"})
        data = self.ok("GET", "/endpoints")["data"]
        self.assertEqual([p for p in data if "tokens" in p or "{collection}" in p or "{kind}" in p], [])


class SnapshotIndexTests(unittest.SynchronousTestCase):
    """
    L{CredentialIndex.entities}: the records of a declared entity, by field.
    """

    def test_find(self) -> None:
        """
        A record is found by a unique field and by its parent.
        """
        record = {"id": "a" * 8 + "-0000-4000-8000-" + "0" * 12, "token": "t1",
                  "consumer": {"id": "c"}, "tags": None}
        data = ConfigurationData(version=1, plugin_entities=({"entity": TOKENS.name, "record": record},))
        index = CredentialIndex.build(data, [TOKENS]).entities(TOKENS.name)
        self.assertEqual(index.find("token", "t1"), record)
        self.assertEqual(index.find_all("consumer", {"id": "c"}), (record,))
        self.assertIsNone(index.find("token", "t2"))

    def test_unknown(self) -> None:
        """
        An entity no plugin declares raises L{UnknownEntity}.
        """
        self.assertRaises(UnknownEntity, CredentialIndex.build(ConfigurationData(version=1)).entities, "x")


class StoreContractTests(unittest.TestCase):
    """
    The generic storage of both stores: unique values, cascade, lookups by key.
    """

    async def stores(self) -> list[Any]:
        from echogate.store.postgres import PostgresStore

        postgres = PostgresStore(reactor, await fresh_database(migrated=True))
        await postgres.start()
        self.addCleanup(postgres.stop)
        return [MemoryStore(), postgres]

    async def test_contract(self) -> None:
        """
        Unique values are refused, a key finds its record, the parent's
        deletion takes its records, C{load} returns them with their entity.
        """
        for store in await self.stores():
            store.declare(TOKENS.name, unique=("token",), keys=("token",), foreign={"consumer": "consumers"})
            consumer = await store.insert("consumers", {
                "id": "11111111-1111-4111-8111-111111111111", "created_at": 1, "updated_at": 1,
                "username": "alice", "custom_id": None, "tags": None})
            token = {"id": "22222222-2222-4222-8222-222222222222", "created_at": 1, "updated_at": 1,
                     "token": "t1", "label": None, "consumer": {"id": consumer["id"]}, "tags": ["x"]}
            await store.insert(TOKENS.name, token)
            with self.assertRaises(UniqueViolation):
                await store.insert(TOKENS.name, {**token, "id": "33333333-3333-4333-8333-333333333333"})
            self.assertEqual(await store.get(TOKENS.name, "t1"), token)
            await store.update(TOKENS.name, {**token, "token": "t2"})
            self.assertIsNone(await store.get(TOKENS.name, "t1"))
            await store.insert(TOKENS.name, {**token, "id": "33333333-3333-4333-8333-333333333333"})
            data = await store.load()
            self.assertEqual(sorted(r["record"]["token"] for r in data.plugin_entities), ["t1", "t2"])
            self.assertEqual(len((await store.page(TOKENS.name, 10, where={"consumer": consumer["id"]}))[0]), 2)
            await store.delete("consumers", consumer["id"])
            self.assertEqual((await store.page(TOKENS.name, 10))[0], [])


class NodeTests(unittest.TestCase):
    """
    Two real nodes on one database: records written through one node's
    Admin API reach both nodes' phases.
    """

    timeout = 60

    async def test_phaseReadsSnapshot(self) -> None:
        """
        The plugin finds the token written through the first node, on both nodes.
        """
        _, upstream_port = start_upstream(self)
        database = await fresh_database(migrated=True)
        first = await start_gateway(self, database=database, plugin_objects=PLUGINS)
        second = await start_gateway(self, database=database, plugin_objects=PLUGINS)

        async def ok(method: str, path: str, code: int, **kw: Any) -> Any:
            answer = await first.admin(method, path, **kw)
            self.assertEqual(answer.code, code, answer.body)
            return answer.json()

        await ok("POST", "/services", 201, json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        await ok("POST", "/services/s/routes", 201, json={"paths": ["/t"]})
        await ok("POST", "/plugins", 201, json={"name": "token-auth"})
        alice = await ok("POST", "/consumers", 201, json={"username": "alice"})
        await ok("POST", "/consumers/alice/tokens", 201, json={"token": "secret"})
        for node in (first, second):
            # (Each write reaches a node on its own: the route may be served
            # before the plugin is, answering 200 without it; wait for the
            # plugin, then for the token.)
            await _eventually(node, {"X-Token": "nope"}, 401)
            answer = await _eventually(node, {"X-Token": "secret"}, 200)
            self.assertEqual(answer.header("x-token-consumer"), alice["id"])
            self.assertEqual((await node.proxy("GET", "/t", headers={"X-Token": "nope"})).code, 401)


async def _eventually(node: Any, headers: dict[str, str], code: int) -> Any:
    """
    The node's answer to C{GET /t} once it is C{code} (the change reaches
    a node when it reloads; no timing is asserted).
    """
    from twisted.internet.task import deferLater

    while True:
        answer = await node.proxy("GET", "/t", headers=headers)
        if answer.code == code:
            return answer
        await deferLater(reactor, 0.05, lambda: None)
