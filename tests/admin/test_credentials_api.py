"""
Consumers' credentials end to end: a gateway node on 127.0.0.1 with the
real PostgreSQL, configured through its Admin API (C{/consumers/{c}/key-auth},
C{/key-auths} and the like), in front of a real upstream.

L{AuthTestCase} is also the base of the auth plugins' end-to-end tests
(C{tests.test_plugin_*}).
"""
from __future__ import annotations

import base64
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from echogate.entities.credentials import verify_password
from tests.gateway import Answer, RunningGateway, start_gateway
from tests.postgres import PostgresMixin
from tests.upstream_server import start_upstream

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NOT_FOUND = {"message": "Not found"}


def basic(username: str, password: str) -> str:
    """
    An C{Authorization: Basic} value.
    """
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class AuthTestCase(unittest.TestCase):
    """
    A gateway with the tutorial's service (C{mock-service}) and route
    (host C{mockbin.org}, path C{/mock}) in front of a real upstream that
    answers with the request it saw.
    """

    timeout = 60
    settings: dict[str, str] = {}

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.gw = await start_gateway(self, settings=self.settings)
        await self.admin_ok("POST", "/services", 201, json={
            "name": "mock-service", "url": f"http://127.0.0.1:{self.upstream_port}"})
        self.mock_route = await self.admin_ok("POST", "/services/mock-service/routes", 201, json={
            "name": "mock", "hosts": ["mockbin.org"], "paths": ["/mock"]})

    async def admin_ok(self, method: str, path: str, code: int = 200, **kw: Any) -> Any:
        """
        Call the Admin API, check the status, return the JSON body.
        """
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer.body)
        return answer.json() if answer.body else None

    async def consumer(self, username: str, **fields: Any) -> dict:
        return await self.admin_ok("POST", "/consumers", 201, json={"username": username, **fields})

    async def plugin(self, name: str, config: dict | None = None, path: str = "/plugins", **fields: Any) -> dict:
        return await self.admin_ok("POST", path, 201, json={"name": name, "config": config or {}, **fields})

    async def call(self, path: str = "/mock/request", method: str = "GET",
                   headers: dict[str, str] | None = None, **kw: Any) -> Answer:
        """
        A request through the proxy to the mock route.
        """
        return await self.gw.proxy(method, path, headers={"Host": "mockbin.org", **(headers or {})}, **kw)

    def assertRefused(self, answer: Answer, status: int, body: Any, challenge: str | None = None) -> None:
        """
        The gateway answered C{status} with this JSON C{body} (and
        C{WWW-Authenticate} challenge) itself.
        """
        self.assertEqual((answer.code, answer.json()), (status, body), answer.body)
        self.assertEqual(answer.header("www-authenticate"), challenge)
        self.assertTrue(answer.header("server").startswith("echogate/"))

    def seen_headers(self, answer: Answer) -> dict[str, list[str]]:
        """
        The headers the upstream received (it answers with them).
        """
        self.assertEqual(answer.code, 200, answer.body)
        return answer.json()["headers"]


class KeyAuthCredentialTests(AuthTestCase):
    """
    C{/consumers/{c}/key-auth} and C{/key-auths}.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.consumer("alice")

    async def test_create(self) -> None:
        """
        POST with a form body: 201 with every field, the consumer set from
        the path.
        """
        record = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, data={"key": "secret-1"})
        self.assertEqual(set(record), {"id", "created_at", "updated_at", "consumer", "key", "tags"})
        self.assertEqual((record["consumer"], record["key"], record["tags"]),
                         ({"id": self.alice["id"]}, "secret-1", None))
        self.assertRegex(record["id"], UUID)

    async def test_generatedKey(self) -> None:
        """
        Without a key, one is generated.
        """
        record = await self.admin_ok("POST", f"/consumers/{self.alice['id']}/key-auth", 201, json={})
        self.assertRegex(record["key"], "^[0-9a-f]{32}$")

    async def test_duplicateKey(self) -> None:
        """
        Keys are unique across consumers: 409 with Kong's message.
        """
        await self.consumer("bob")
        await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "k"})
        answer = await self.gw.admin("POST", "/consumers/bob/key-auth", json={"key": "k"})
        self.assertEqual((answer.code, answer.json()), (409, {
            "code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{key=\"k\"}'", "fields": {"key": "k"}}))

    async def test_invalid(self) -> None:
        """
        A bad field is a 400 schema violation.
        """
        answer = await self.gw.admin("POST", "/consumers/alice/key-auth", json={"key": 5, "x": 1})
        self.assertEqual((answer.code, answer.json()["fields"]),
                         (400, {"key": "expected a string", "x": "unknown field"}))

    async def test_unknownConsumer(self) -> None:
        """
        Under a consumer that does not exist: 404.
        """
        for method, path in [("GET", "/consumers/nobody/key-auth"), ("POST", "/consumers/nobody/key-auth"),
                             ("GET", "/consumers/nobody/key-auth/k"), ("DELETE", "/consumers/nobody/key-auth/k")]:
            answer = await self.gw.admin(method, path, json={})
            self.assertEqual((method, path, answer.code, answer.json()), (method, path, 404, NOT_FOUND),
                             f"row method={method!r} path={path!r}")

    async def test_readNested(self) -> None:
        """
        Listed and read under their consumer, by id or key; another
        consumer's credential is not found there.
        """
        await self.consumer("bob")
        mine = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "a1"})
        theirs = await self.admin_ok("POST", "/consumers/bob/key-auth", 201, json={"key": "b1"})
        listed = await self.admin_ok("GET", "/consumers/alice/key-auth")
        self.assertEqual((listed["data"], listed["next"]), ([mine], None))
        self.assertEqual(await self.admin_ok("GET", "/consumers/alice/key-auth/a1"), mine)
        self.assertEqual(await self.admin_ok("GET", f"/consumers/alice/key-auth/{mine['id']}"), mine)
        for key in ("b1", theirs["id"], "nope"):
            self.assertEqual(await self.admin_ok("GET", f"/consumers/alice/key-auth/{key}", 404), NOT_FOUND,
                             f"row key={key!r}")
            self.assertEqual(await self.admin_ok("PATCH", f"/consumers/alice/key-auth/{key}", 404, json={}),
                             NOT_FOUND, f"row key={key!r}")

    async def test_readTopLevel(self) -> None:
        """
        C{/key-auths} lists every consumer's keys; one is read by id or key,
        and its consumer through C{/key-auths/{k}/consumer}.
        """
        bob = await self.consumer("bob")
        mine = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "a1"})
        theirs = await self.admin_ok("POST", "/consumers/bob/key-auth", 201, json={"key": "b1"})
        listed = await self.admin_ok("GET", "/key-auths")
        self.assertEqual(sorted(r["key"] for r in listed["data"]), ["a1", "b1"])
        self.assertEqual(await self.admin_ok("GET", "/key-auths/b1"), theirs)
        self.assertEqual(await self.admin_ok("GET", f"/key-auths/{mine['id']}"), mine)
        self.assertEqual(await self.admin_ok("GET", "/key-auths/b1/consumer"), bob)
        self.assertEqual(await self.admin_ok("GET", "/key-auths/zz", 404), NOT_FOUND)
        self.assertEqual(await self.admin_ok("GET", "/key-auths/zz/consumer", 404), NOT_FOUND)

    async def test_hexKey(self) -> None:
        """
        A key of 32 hex digits (what Kong generates) is a key, not an id.
        """
        key = "0123456789abcdef0123456789abcdef"
        record = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": key})
        self.assertEqual(await self.admin_ok("GET", f"/key-auths/{key}"), record)
        self.assertEqual(await self.admin_ok("GET", f"/consumers/alice/key-auth/{key}"), record)
        replaced = await self.admin_ok("PUT", f"/consumers/alice/key-auth/{key}", json={"tags": ["t"]})
        self.assertEqual((replaced["id"], replaced["tags"]), (record["id"], ["t"]))

    async def test_pages(self) -> None:
        """
        Nested lists page like any list.
        """
        for n in range(3):
            await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": f"k{n}"})
        page = await self.admin_ok("GET", "/consumers/alice/key-auth?size=2")
        self.assertEqual(len(page["data"]), 2)
        self.assertTrue(page["next"].startswith(f"/consumers/{self.alice['id']}/key-auth?"))
        rest = await self.admin_ok("GET", page["next"])
        self.assertEqual((len(rest["data"]), rest["next"]), (1, None))

    async def test_createTopLevel(self) -> None:
        """
        POST /key-auths names the consumer in the body, by id or username;
        a missing consumer is a 400.
        """
        by_id = await self.admin_ok("POST", "/key-auths", 201, data={"consumer.id": self.alice["id"], "key": "x1"})
        by_name = await self.admin_ok("POST", "/key-auths", 201, json={"consumer": {"username": "alice"}, "key": "x2"})
        self.assertEqual((by_id["consumer"], by_name["consumer"]), ({"id": self.alice["id"]},) * 2)
        answer = await self.gw.admin("POST", "/key-auths", json={"key": "x3"})
        self.assertEqual((answer.code, answer.json()["fields"]), (400, {"consumer": "required field missing"}))
        ghost = "00000000-0000-4000-8000-000000000099"
        answer = await self.gw.admin("POST", "/key-auths", json={"key": "x3", "consumer": {"id": ghost}})
        self.assertEqual((answer.code, answer.json()["name"], answer.json()["fields"]),
                         (400, "foreign key violation", {"consumer": {"id": ghost}}))

    async def test_put(self) -> None:
        """
        PUT by key creates, then replaces (keeping the id); PUT by id sets
        the id.
        """
        created = await self.admin_ok("PUT", "/consumers/alice/key-auth/k1", json={"tags": ["a"]})
        replaced = await self.admin_ok("PUT", "/consumers/alice/key-auth/k1", json={})
        self.assertEqual((created["key"], created["tags"], replaced["id"], replaced["tags"]),
                         ("k1", ["a"], created["id"], None))
        new_id = "00000000-0000-4000-8000-0000000000aa"
        by_id = await self.admin_ok("PUT", f"/key-auths/{new_id}", json={"consumer": {"id": self.alice["id"]},
                                                                         "key": "k2"})
        self.assertEqual((by_id["id"], by_id["key"]), (new_id, "k2"))

    async def test_patch(self) -> None:
        """
        PATCH changes the given fields only.
        """
        record = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "k1", "tags": ["t"]})
        patched = await self.admin_ok("PATCH", "/consumers/alice/key-auth/k1", json={"key": "k2"})
        self.assertEqual((patched["id"], patched["key"], patched["tags"]), (record["id"], "k2", ["t"]))
        top = await self.admin_ok("PATCH", f"/key-auths/{record['id']}", json={"tags": ["u"]})
        self.assertEqual((top["key"], top["tags"]), ("k2", ["u"]))
        self.assertEqual(await self.admin_ok("PATCH", "/key-auths/nope", 404, json={}), NOT_FOUND)

    async def test_delete(self) -> None:
        """
        DELETE answers 204; under a consumer, an absent key is 404 (as in
        Kong), at the top level 204; another consumer's key is not deleted
        through this consumer.
        """
        await self.consumer("bob")
        await self.admin_ok("POST", "/consumers/bob/key-auth", 201, json={"key": "b1"})
        await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "a1"})
        self.assertEqual(await self.admin_ok("DELETE", "/consumers/alice/key-auth/b1", 404), NOT_FOUND)
        await self.admin_ok("DELETE", "/consumers/alice/key-auth/a1", 204)
        self.assertEqual(await self.admin_ok("DELETE", "/consumers/alice/key-auth/a1", 404), NOT_FOUND)
        await self.admin_ok("DELETE", "/key-auths/b1", 204)
        await self.admin_ok("DELETE", "/key-auths/b1", 204)
        self.assertEqual((await self.admin_ok("GET", "/key-auths"))["data"], [])

    async def test_deletedWithConsumer(self) -> None:
        """
        Deleting a consumer deletes its credentials of every kind.
        """
        await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "a1"})
        await self.admin_ok("POST", "/consumers/alice/basic-auth", 201, json={"username": "a", "password": "p"})
        await self.admin_ok("POST", "/consumers/alice/jwt", 201, json={})
        await self.admin_ok("POST", "/consumers/alice/acls", 201, json={"group": "g"})
        await self.admin_ok("DELETE", "/consumers/alice", 204)
        for path in ("/key-auths", "/basic-auths", "/jwts", "/acls"):
            self.assertEqual((await self.admin_ok("GET", path))["data"], [], f"row path={path!r}")

    async def test_schema(self) -> None:
        """
        The entity's schema is served under its Kong name.
        """
        schema = await self.admin_ok("GET", "/schemas/keyauth_credentials")
        self.assertEqual([list(f)[0] for f in schema["fields"]],
                         ["id", "created_at", "updated_at", "consumer", "key", "tags"])


class BasicAuthCredentialTests(AuthTestCase):
    """
    C{/consumers/{c}/basic-auth}: passwords are stored hashed.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.consumer("alice")

    async def test_hashed(self) -> None:
        """
        The password is never returned in clear: not on creation, not on
        reading.
        """
        record = await self.admin_ok("POST", "/consumers/alice/basic-auth", 201,
                                     data={"username": "alice", "password": "open sesame"})
        self.assertNotIn("open sesame", str(record))
        self.assertTrue(verify_password(record["password"], "open sesame"))
        self.assertEqual(await self.admin_ok("GET", "/basic-auths/alice"), record)
        self.assertEqual(await self.admin_ok("GET", f"/consumers/alice/basic-auth/{record['id']}"), record)

    async def test_patch(self) -> None:
        """
        PATCH without a password keeps the hash; with one, hashes it.
        """
        record = await self.admin_ok("POST", "/consumers/alice/basic-auth", 201,
                                     json={"username": "alice", "password": "one"})
        renamed = await self.admin_ok("PATCH", "/consumers/alice/basic-auth/alice", json={"username": "al"})
        self.assertEqual((renamed["username"], renamed["password"]), ("al", record["password"]))
        changed = await self.admin_ok("PATCH", "/basic-auths/al", json={"password": "two"})
        self.assertTrue(verify_password(changed["password"], "two"))
        self.assertFalse(verify_password(changed["password"], "one"))

    async def test_put(self) -> None:
        """
        PUT by username stores the given password hashed.
        """
        record = await self.admin_ok("PUT", "/consumers/alice/basic-auth/al", json={"password": "p"})
        self.assertEqual(record["username"], "al")
        self.assertTrue(verify_password(record["password"], "p"))

    async def test_errors(self) -> None:
        """
        Username and password are required; usernames are unique.
        """
        answer = await self.gw.admin("POST", "/consumers/alice/basic-auth", json={})
        self.assertEqual((answer.code, answer.json()["fields"]),
                         (400, {"username": "required field missing", "password": "required field missing"}))
        await self.admin_ok("POST", "/consumers/alice/basic-auth", 201, json={"username": "u", "password": "p"})
        answer = await self.gw.admin("POST", "/consumers/alice/basic-auth", json={"username": "u", "password": "q"})
        self.assertEqual((answer.code, answer.json()["fields"]), (409, {"username": "u"}))


class JWTCredentialTests(AuthTestCase):
    """
    C{/consumers/{c}/jwt}.
    """

    async def setUp(self) -> None:
        await super().setUp()
        await self.consumer("alice")

    async def test_generated(self) -> None:
        """
        Key and secret are generated; HS256 by default.
        """
        record = await self.admin_ok("POST", "/consumers/alice/jwt", 201, data={})
        self.assertRegex(record["key"], "^[0-9a-f]{32}$")
        self.assertRegex(record["secret"], "^[0-9a-f]{32}$")
        self.assertEqual((record["algorithm"], record["rsa_public_key"]), ("HS256", None))
        self.assertEqual(await self.admin_ok("GET", f"/jwts/{record['key']}"), record)

    async def test_publicKeyRequired(self) -> None:
        """
        RS256 without a public key is a schema violation.
        """
        answer = await self.gw.admin("POST", "/consumers/alice/jwt", json={"algorithm": "RS256"})
        self.assertEqual((answer.code, answer.json()["fields"]), (400, {
            "@entity": ["failed conditional validation given value of field 'algorithm'"],
            "rsa_public_key": "required field missing"}))


class ACLCredentialTests(AuthTestCase):
    """
    C{/consumers/{c}/acls}: groups, addressed by name under their consumer.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.consumer("alice")
        self.bob = await self.consumer("bob")

    async def test_groups(self) -> None:
        """
        A group is read, replaced and deleted by its name under the
        consumer, and by id at the top level.
        """
        gold = await self.admin_ok("POST", "/consumers/alice/acls", 201, data={"group": "gold"})
        self.assertEqual(await self.admin_ok("GET", "/consumers/alice/acls/gold"), gold)
        self.assertEqual(await self.admin_ok("GET", f"/acls/{gold['id']}"), gold)
        self.assertEqual(await self.admin_ok("GET", "/acls/gold", 404), NOT_FOUND)
        self.assertEqual(await self.admin_ok("GET", "/consumers/bob/acls/gold", 404), NOT_FOUND)
        replaced = await self.admin_ok("PUT", "/consumers/alice/acls/gold", json={"tags": ["t"]})
        self.assertEqual((replaced["id"], replaced["tags"]), (gold["id"], ["t"]))
        created = await self.admin_ok("PUT", "/consumers/alice/acls/silver", json={})
        self.assertEqual(created["group"], "silver")
        await self.admin_ok("DELETE", "/consumers/alice/acls/gold", 204)
        self.assertEqual([r["group"] for r in (await self.admin_ok("GET", "/consumers/alice/acls"))["data"]],
                         ["silver"])

    async def test_uniquePerConsumer(self) -> None:
        """
        A consumer is in a group once; another consumer may be in it too.
        """
        await self.admin_ok("POST", "/consumers/alice/acls", 201, json={"group": "gold"})
        await self.admin_ok("POST", "/consumers/bob/acls", 201, json={"group": "gold"})
        answer = await self.gw.admin("POST", "/consumers/alice/acls", json={"group": "gold"})
        self.assertEqual((answer.code, answer.json()["fields"]),
                         (409, {"consumer": {"id": self.alice["id"]}, "group": "gold"}))

    async def test_putByGroupTopLevel(self) -> None:
        """
        At the top level a group name does not address an acl.
        """
        self.assertEqual(await self.admin_ok("PUT", "/acls/gold", 404, json={"consumer": {"id": self.alice["id"]}}),
                         NOT_FOUND)


class ScopeTests(AuthTestCase):
    """
    Auth plugins are not configured per consumer.
    """

    async def test_noConsumer(self) -> None:
        """
        Configuring an auth plugin on a consumer is a 400, as in Kong.
        """
        await self.consumer("alice")
        for name, config in [("key-auth", {}), ("basic-auth", {}), ("jwt", {}), ("acl", {"allow": ["a"]})]:
            answer = await self.gw.admin("POST", "/consumers/alice/plugins", json={"name": name, "config": config})
            self.assertEqual((name, answer.code, answer.json()["fields"]),
                             (name, 400, {"consumer": "value must be null"}),
                             f"row name={name!r} config={config!r}")


class ClusterTests(unittest.TestCase, PostgresMixin):
    """
    Credentials propagate to every node sharing the database.
    """

    timeout = 120

    async def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        dsn = self.database()
        quiet = {"config_check_interval": "600"}  # only LISTEN/NOTIFY can propagate
        self.a = await start_gateway(self, database=dsn, settings=quiet)
        self.b = await start_gateway(self, database=dsn, settings=quiet)

    async def status_on(self, node: RunningGateway, want: int, headers: dict[str, str]) -> int:
        """
        Poll C{node}'s proxy (at most 500 tries, 10 ms apart) until it
        answers C{want}; the last status seen.
        """
        for _ in range(500):
            code = (await node.proxy("GET", "/p", headers=headers)).code
            if code == want:
                break
            await deferLater(reactor, 0.01, lambda: None)
        return code

    async def test_keyReachesOtherNode(self) -> None:
        """
        A key created through node A authenticates on node B; deleting its
        consumer through A refuses it on B.
        """
        await self.a.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.a.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        await self.a.admin("POST", "/plugins", json={"name": "key-auth"})
        await self.a.admin("POST", "/consumers", json={"username": "alice"})
        self.assertEqual(await self.status_on(self.b, 401, {}), 401)
        answer = await self.a.admin("POST", "/consumers/alice/key-auth", json={"key": "k"})
        self.assertEqual(answer.code, 201)
        self.assertEqual(await self.status_on(self.b, 200, {"apikey": "k"}), 200)
        await self.a.admin("DELETE", "/consumers/alice")
        self.assertEqual(await self.status_on(self.b, 401, {"apikey": "k"}), 401)


class CredentialDeleteTests(unittest.TestCase):
    """
    Deleting a credential under a consumer that has no such credential is
    404 C{{"message": "Not found"}} (Kong), for every kind, also when the
    credential exists under another consumer; it is left in place.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.gw = await start_gateway(self)
        for name in ("alice", "bob"):
            answer = await self.gw.admin("POST", "/consumers", json={"username": name})
            self.assertEqual(answer.code, 201, answer.body)

    async def check(self, kind: str, body: dict, key: str, collection: str) -> None:
        created = await self.gw.admin("POST", f"/consumers/bob/{kind}", json=body)
        self.assertEqual(created.code, 201, created.body)
        for path in (f"/consumers/alice/{kind}/absent", f"/consumers/alice/{kind}/{key}",
                     f"/consumers/alice/{kind}/{created.json()['id']}"):
            answer = await self.gw.admin("DELETE", path)
            self.assertEqual((path, answer.code, answer.json()), (path, 404, NOT_FOUND), f"row path={path!r}")
        self.assertEqual(len((await self.gw.admin("GET", f"/{collection}")).json()["data"]), 1)
        self.assertEqual((await self.gw.admin("DELETE", f"/consumers/bob/{kind}/{created.json()['id']}")).code, 204)

    async def test_keyAuth(self) -> None:
        """
        DELETE /consumers/alice/key-auth/absent, and bob's key through alice: 404.
        """
        await self.check("key-auth", {"key": "bobs-key"}, "bobs-key", "key-auths")

    async def test_basicAuth(self) -> None:
        """
        DELETE /consumers/alice/basic-auth/absent, and bob's username through alice: 404.
        """
        await self.check("basic-auth", {"username": "bobby", "password": "p"}, "bobby", "basic-auths")

    async def test_jwt(self) -> None:
        """
        DELETE /consumers/alice/jwt/absent, and bob's key through alice: 404.
        """
        await self.check("jwt", {"key": "bobs-iss"}, "bobs-iss", "jwts")

    async def test_acls(self) -> None:
        """
        DELETE /consumers/alice/acls/absent, and bob's group through alice: 404.
        """
        await self.check("acls", {"group": "admins"}, "admins", "acls")
