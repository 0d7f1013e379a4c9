"""
Tests for the in-memory credential index of L{echogate.entities.credentials}
(L{ConsumerIndex}, L{CredentialIndex}) and how the data path reads it:
through the configuration snapshot and the PDK's C{ctx.credentials} and
C{ctx.consumers}.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.entities.credentials import verify_password
from echogate.errors import SchemaViolation
from echogate.pdk.credentials import ACLS, BASICAUTH, EMPTY, JWT, KEYAUTH, ConsumerIndex, CredentialIndex
from echogate.plugin import GatewayPlugin
from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.schema import Record
from echogate.store.data import ConfigurationData
from echogate.testing import GatewayHarness
from tests.entities.test_credentials import ALICE, BOB, NEW_ID

CONSUMERS = [
    {"id": ALICE, "username": "alice", "custom_id": "a-1"},
    {"id": BOB, "username": None, "custom_id": "b-1"},
]


class ConsumerIndexTests(SynchronousTestCase):
    """
    L{ConsumerIndex}: consumers by id, username and custom_id.
    """

    def test_get(self) -> None:
        """
        C{get} finds by id (any case), then by username.
        """
        index = ConsumerIndex(CONSUMERS)
        self.assertEqual(index.get(ALICE)["username"], "alice")
        self.assertEqual(index.get(ALICE.upper())["id"], ALICE)
        self.assertEqual(index.get("alice")["id"], ALICE)
        self.assertIsNone(index.get("a-1"))
        self.assertIsNone(index.get("nobody"))
        self.assertIsNone(index.get(None))
        self.assertEqual(len(index), 2)

    def test_usernameShapedLikeAnId(self) -> None:
        """
        A username that looks like a UUID is still found by it.
        """
        index = ConsumerIndex([{"id": ALICE, "username": BOB, "custom_id": None}])
        self.assertEqual(index.get(BOB)["id"], ALICE)

    def test_byIdAndCustomId(self) -> None:
        """
        C{by_id} finds only by id, C{by_custom_id} only by custom_id.
        """
        index = ConsumerIndex(CONSUMERS)
        self.assertEqual(index.by_id(BOB)["custom_id"], "b-1")
        self.assertIsNone(index.by_id("alice"))
        self.assertIsNone(index.by_id(None))
        self.assertEqual(index.by_custom_id("a-1")["id"], ALICE)
        self.assertIsNone(index.by_custom_id("alice"))


def _credential(consumer: str, **fields: Any) -> dict:
    return {"id": NEW_ID, "consumer": {"id": consumer}, **fields}


class CredentialIndexTests(SynchronousTestCase):
    """
    L{CredentialIndex}: credentials by key, username and consumer.
    """

    def index(self) -> CredentialIndex:
        return CredentialIndex(CONSUMERS, {
            KEYAUTH: [_credential(ALICE, key="k1"), _credential(BOB, key="k2")],
            BASICAUTH: [_credential(ALICE, username="alice-basic", password="h")],
            JWT: [_credential(BOB, key="iss-b", secret="s", algorithm="HS256")],
            ACLS: [_credential(ALICE, group="gold"), _credential(ALICE, group="admin"),
                   _credential(ALICE, group="gold"), _credential(BOB, group="silver")],
        })

    def test_find(self) -> None:
        """
        Each kind is found by its key, by the plugin's name or the entity's.
        """
        index = self.index()
        self.assertEqual(index.find("key-auth", "k2")["consumer"], {"id": BOB})
        self.assertEqual(index.find(KEYAUTH, "k1")["consumer"], {"id": ALICE})
        self.assertEqual(index.find("basic-auth", "alice-basic")["password"], "h")
        self.assertEqual(index.find("jwt", "iss-b")["secret"], "s")
        self.assertIsNone(index.find("key-auth", "k3"))
        self.assertIsNone(index.find("key-auth", None))
        self.assertIsNone(index.find("jwt", "k1"))

    def test_findUnknownKind(self) -> None:
        """
        An unknown kind is a programming error.
        """
        self.assertRaises(ValueError, self.index().find, "oauth2", "x")
        self.assertRaises(ValueError, self.index().find, "acls", "x")

    def test_groups(self) -> None:
        """
        A consumer's groups, in the order stored, each once.
        """
        index = self.index()
        self.assertEqual(index.groups(ALICE), ("gold", "admin"))
        self.assertEqual(index.groups(ALICE.upper()), ("gold", "admin"))
        self.assertEqual(index.groups(BOB), ("silver",))
        self.assertEqual(index.groups(NEW_ID), ())
        self.assertEqual(index.groups(None), ())

    def test_consumers(self) -> None:
        """
        The index carries the consumers.
        """
        self.assertEqual(self.index().consumers.get("alice")["id"], ALICE)

    def test_unknownEntity(self) -> None:
        """
        Credentials of an unknown entity are refused.
        """
        self.assertRaises(ValueError, CredentialIndex, (), {"oauth2_credentials": [{}]})

    def test_recordsCopied(self) -> None:
        """
        The index keeps its own copies of the records it was given.
        """
        record = _credential(ALICE, key="k1")
        index = CredentialIndex(CONSUMERS, {KEYAUTH: [record]})
        record["key"] = "changed"
        self.assertEqual(index.find("key-auth", "k1")["key"], "k1")

    def test_empty(self) -> None:
        """
        L{EMPTY} finds nothing.
        """
        self.assertIsNone(EMPTY.find("key-auth", "k"))
        self.assertIsNone(EMPTY.consumers.get(ALICE))
        self.assertEqual(EMPTY.groups(ALICE), ())


DATA = ConfigurationData(
    version=3, consumers=tuple(CONSUMERS),
    keyauth_credentials=(_credential(ALICE, key="k1"),),
    basicauth_credentials=(_credential(BOB, username="bob", password="h"),),
    jwt_secrets=(_credential(BOB, key="j", secret="s", algorithm="HS256"),),
    acls=(_credential(BOB, group="g"),))


class SnapshotTests(SynchronousTestCase):
    """
    Consumers and credentials travel in the configuration snapshot.
    """

    def test_build(self) -> None:
        """
        L{Snapshot.build} indexes the consumers and credentials of the data.
        """
        index = Snapshot.build(DATA, {}).credentials
        self.assertEqual(index.find("key-auth", "k1")["consumer"], {"id": ALICE})
        self.assertEqual(index.find("basic-auth", "bob")["consumer"], {"id": BOB})
        self.assertEqual(index.find("jwt", "j")["consumer"], {"id": BOB})
        self.assertEqual(index.groups(BOB), ("g",))
        self.assertEqual(index.consumers.by_custom_id("b-1")["id"], BOB)

    def test_reload(self) -> None:
        """
        A reload swaps in the new credentials: a deleted key is gone and a
        new one found.
        """
        loads = [DATA, attrs.evolve(DATA, version=4, keyauth_credentials=(_credential(BOB, key="k9"),))]

        class Store:
            def load(self) -> Any:
                return succeed(loads.pop(0))

            def subscribe(self, callback: Any) -> Any:
                return lambda: None

            def version(self) -> Any:
                return succeed(3)

        live = LiveConfiguration(store=Store(), plugins={}, clock=Clock())
        live.start()
        self.assertIsNotNone(live.current.credentials.find("key-auth", "k1"))
        live.reload()
        self.assertIsNone(live.current.credentials.find("key-auth", "k1"))
        self.assertEqual(live.current.credentials.find("key-auth", "k9")["consumer"], {"id": BOB})
        live.stop()


class _Lookup(GatewayPlugin):
    """
    Answers with what the PDK's consumer and credential lookups find.
    """

    name = "lookup"
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        key = ctx.request.get_header("x-key")
        credential = ctx.credentials.find("key-auth", key)
        ctx.exit(200, {"credential": credential and credential["key"],
                       "consumer": (ctx.consumers.get(ctx.request.get_header("x-consumer")) or {}).get("id"),
                       "groups": list(ctx.credentials.groups(ALICE))})


class PluginContextTests(SynchronousTestCase):
    """
    C{ctx.credentials} and C{ctx.consumers} in a plugin's phases.
    """

    def test_lookups(self) -> None:
        """
        A plugin finds credentials and consumers of the current snapshot.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})], entities={
            "consumers": [{"id": ALICE, "username": "alice"}],
            KEYAUTH: [{"consumer": {"id": ALICE}, "key": "k1"}],
            ACLS: [{"consumer": {"id": ALICE}, "group": "gold"}],
        })
        response = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1", "x-consumer": "alice"}))
        self.assertEqual(response.json(), {"credential": "k1", "consumer": ALICE, "groups": ["gold"]})

    def test_nextRequest(self) -> None:
        """
        Changed credentials are found from the next request on.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})], entities={
            "consumers": [{"id": ALICE, "username": "alice"}]})
        first = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1"}))
        harness.set_entities({KEYAUTH: [{"consumer": {"id": ALICE}, "key": "k1"}]})
        second = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1"}))
        self.assertEqual((first.json()["credential"], second.json()["credential"]), (None, "k1"))

    def test_noSnapshotIndex(self) -> None:
        """
        A snapshot without an index (built by hand) finds nothing.
        """
        harness = GatewayHarness([_Lookup()], [("lookup", {})])
        harness.snapshot = attrs.evolve(harness.snapshot, credentials=None)
        response = self.successResultOf(harness.request("GET", "/", headers={"x-key": "k1", "x-consumer": ALICE}))
        self.assertEqual(response.json(), {"credential": None, "consumer": None, "groups": []})

    def test_harnessCompletes(self) -> None:
        """
        The harness stores entities as the Admin API would: generated keys,
        hashed passwords, ids and timestamps.
        """
        harness = GatewayHarness([], clock=Clock())
        stored = harness.set_entities({
            "consumers": [{"id": ALICE, "username": "alice"}],
            KEYAUTH: [{"consumer": {"id": ALICE}}],
            BASICAUTH: [{"consumer": {"id": ALICE}, "username": "a", "password": "p"}]})
        self.assertRegex(stored[KEYAUTH][0]["key"], "^[0-9a-f]{32}$")
        self.assertTrue(verify_password(stored[BASICAUTH][0]["password"], "p"))
        self.assertEqual(stored["consumers"][0]["created_at"], 1)
        self.assertRaises(SchemaViolation, harness.set_entities, {ACLS: [{"consumer": {"id": ALICE}}]})
