"""
Tests for the bundled key-auth plugin (L{echogate.bundled.key_auth}):
through L{GatewayHarness}, and end to end through a running gateway.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.key_auth import KeyAuth
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase
from tests.entities.test_credentials import ALICE, BOB, PreAuth, Stamp, people

KEYS = {"keyauth_credentials": [{"id": "00000000-0000-4000-8000-0000000000a1", "consumer": {"id": ALICE},
                                 "key": "secret-1"},
                                {"consumer": {"id": BOB}, "key": "secret-2"}]}
NO_KEY = {"message": "No API key found in request"}
UNAUTHORIZED = {"message": "Unauthorized"}
DUPLICATE = {"message": "Duplicate API key found"}


class KeyAuthTests(SynchronousTestCase):
    """
    key-auth through the harness.
    """

    def harness(self, config: dict | None = None, plugins: list | None = None, configs: list | None = None,
                entities: dict | None = None) -> GatewayHarness:
        return GatewayHarness([KeyAuth(), *(plugins or [])], [("key-auth", config or {}), *(configs or [])],
                              entities=people(KEYS if entities is None else entities))

    def request(self, harness: GatewayHarness, path: str = "/", headers: dict | None = None, method: str = "GET",
                body: bytes = b"") -> HarnessResponse:
        return self.successResultOf(harness.request(method, path, headers=headers, body=body))

    def seen(self, response: HarnessResponse) -> dict[str, Any]:
        self.assertEqual(response.status, 200, response.body)
        return response.json()

    def assertRefused(self, response: HarnessResponse, body: dict, challenge: str = "Key",
                      status: int = 401) -> None:
        self.assertEqual((response.status, response.json(), response.header("www-authenticate")),
                         (status, body, challenge))

    def test_provides(self) -> None:
        """
        It is Kong's key-auth: name, priority, and not scoped to consumers.
        """
        plugin = KeyAuth()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority, plugin.version, plugin.no_consumer),
                         ("key-auth", 1250, "1.0.0", True))

    def test_defaults(self) -> None:
        """
        The config's defaults are Kong's.
        """
        self.assertEqual(KeyAuth.config_schema.validate({}), {
            "key_names": ["apikey"], "hide_credentials": False, "anonymous": None, "key_in_header": True,
            "key_in_query": True, "key_in_body": False, "run_on_preflight": True, "realm": None})

    def test_configErrors(self) -> None:
        """
        Every field checks its value.
        """
        bad = {"key_names": ["api key"], "hide_credentials": "yes", "anonymous": 5, "key_in_header": 1,
               "key_in_query": None, "key_in_body": "no", "run_on_preflight": [], "realm": ""}
        with self.assertRaises(SchemaViolation) as caught:
            KeyAuth.config_schema.validate(bad)
        self.assertEqual(caught.exception.fields, {
            "key_names": {"1": "bad header name 'api key', allowed characters are A-Z, a-z, 0-9, '_', and '-'"},
            "hide_credentials": "expected a boolean", "anonymous": "expected a string",
            "key_in_header": "expected a boolean", "key_in_query": "required field missing",
            "key_in_body": "expected a boolean", "run_on_preflight": "expected a boolean",
            "realm": "length must be at least 1"})
        with self.assertRaises(SchemaViolation) as caught:
            KeyAuth.config_schema.validate({"key_names": None})
        self.assertEqual(caught.exception.fields, {"key_names": "required field missing"})
        with self.assertRaises(SchemaViolation) as caught:
            KeyAuth.config_schema.validate({"key_names": "apikey"})
        self.assertEqual(caught.exception.fields, {"key_names": "expected an array"})

    def test_noKey(self) -> None:
        """
        No key: 401, Kong's message, a C{Key} challenge; the upstream is
        not called.
        """
        harness = self.harness()
        self.assertRefused(self.request(harness), NO_KEY)
        self.assertRefused(self.request(harness, "/?apikey="), NO_KEY)
        self.assertEqual(harness.upstream_requests, [])

    def test_realm(self) -> None:
        """
        With a realm, the challenge names it.
        """
        self.assertRefused(self.request(self.harness({"realm": "api"})), NO_KEY, 'Key realm="api"')

    def test_unknownKey(self) -> None:
        """
        A key that is no consumer's: 401 Unauthorized.
        """
        self.assertRefused(self.request(self.harness(), headers={"apikey": "nope"}), UNAUTHORIZED)

    def test_header(self) -> None:
        """
        A key in the header authenticates its consumer; the upstream learns
        who it is, and still receives the key.
        """
        seen = self.seen(self.request(self.harness(), headers={"apikey": "secret-1"}))
        headers = seen["headers"]
        self.assertEqual((headers["x-consumer-id"], headers["x-consumer-username"], headers["x-consumer-custom-id"],
                          headers["x-credential-identifier"], headers["apikey"]),
                         ([ALICE], ["alice"], ["a-1"], ["00000000-0000-4000-8000-0000000000a1"], ["secret-1"]))
        self.assertNotIn("x-anonymous-consumer", headers)

    def test_query(self) -> None:
        """
        A key in the query string authenticates; the query goes upstream
        unchanged.
        """
        seen = self.seen(self.request(self.harness(), "/x?a=1&apikey=secret-2&b=%2F"))
        self.assertEqual((seen["path"], seen["headers"]["x-consumer-username"]),
                         ("/x?a=1&apikey=secret-2&b=%2F", ["bob"]))
        self.assertNotIn("x-consumer-custom-id", seen["headers"])

    def test_headerFirst(self) -> None:
        """
        The header is looked at before the query string.
        """
        seen = self.seen(self.request(self.harness(), "/?apikey=secret-2", headers={"apikey": "secret-1"}))
        self.assertEqual(seen["headers"]["x-consumer-username"], ["alice"])

    def test_keyNames(self) -> None:
        """
        Each of C{key_names} is looked for, in order, any header case.
        """
        harness = self.harness({"key_names": ["x-token", "apikey"]})
        self.assertEqual(self.seen(self.request(harness, headers={"apikey": "secret-2"}))["headers"]
                         ["x-consumer-username"], ["bob"])
        seen = self.seen(self.request(harness, "/?apikey=secret-2", headers={"X-Token": "secret-1"}))
        self.assertEqual(seen["headers"]["x-consumer-username"], ["alice"])

    def test_placesDisabled(self) -> None:
        """
        C{key_in_header} and C{key_in_query} false: the key is not looked
        for there.
        """
        self.assertRefused(self.request(self.harness({"key_in_header": False}), headers={"apikey": "secret-1"}),
                           NO_KEY)
        self.assertRefused(self.request(self.harness({"key_in_query": False}), "/?apikey=secret-1"), NO_KEY)

    def test_duplicate(self) -> None:
        """
        Several values for the key: 401 Duplicate API key found.
        """
        harness = self.harness()
        self.assertRefused(self.request(harness, "/?apikey=secret-1&apikey=secret-2"), DUPLICATE)
        self.assertRefused(self.request(harness, headers={"apikey": "secret-1", "APIKEY": "secret-2"}), DUPLICATE)

    def test_body(self) -> None:
        """
        With C{key_in_body}, a form, JSON or multipart body carries the key.
        """
        harness = self.harness({"key_in_body": True})
        multipart = (b'--XyZ\r\nContent-Disposition: form-data; name="apikey"\r\n\r\nsecret-1\r\n--XyZ--\r\n')
        for content_type, body in [("application/x-www-form-urlencoded", b"a=1&apikey=secret-1"),
                                   ("application/json", b'{"apikey": "secret-1"}'),
                                   ("multipart/form-data; boundary=XyZ", multipart)]:
            seen = self.seen(self.request(harness, method="POST", headers={"Content-Type": content_type}, body=body))
            self.assertEqual(seen["headers"]["x-consumer-username"], ["alice"], content_type)
            self.assertEqual(seen["body"], body.decode(), f"row content_type={content_type!r} body={body!r}")

    def test_bodyNotLooked(self) -> None:
        """
        Without C{key_in_body}, a key in the body is not looked for; nor is
        a body that cannot be parsed, or a non-string value.
        """
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        self.assertRefused(self.request(self.harness(), method="POST", headers=form, body=b"apikey=secret-1"), NO_KEY)
        harness = self.harness({"key_in_body": True})
        self.assertRefused(self.request(harness, method="POST", headers={"Content-Type": "application/json"},
                                        body=b"{nope"), NO_KEY)
        self.assertRefused(self.request(harness, method="POST", headers={"Content-Type": "application/json"},
                                        body=b'{"apikey": 5}'), NO_KEY)
        self.assertRefused(self.request(harness, method="POST", headers={"Content-Type": "text/plain"},
                                        body=b"apikey=secret-1"), NO_KEY)

    def test_hideCredentials(self) -> None:
        """
        C{hide_credentials}: the key's header and query argument are not
        sent upstream; everything else is.
        """
        harness = self.harness({"hide_credentials": True})
        seen = self.seen(self.request(harness, "/x?a=1&apikey=secret-1&b=%2F", headers={"X-Other": "o"}))
        self.assertEqual((seen["path"], seen["headers"]["x-other"]), ("/x?a=1&b=%2F", ["o"]))
        seen = self.seen(self.request(harness, headers={"apikey": "secret-1"}))
        self.assertNotIn("apikey", seen["headers"])

    def test_hideInBody(self) -> None:
        """
        C{hide_credentials} with C{key_in_body}: the key is taken out of
        the body, whatever its type.
        """
        harness = self.harness({"hide_credentials": True, "key_in_body": True})
        cases = [
            ("application/x-www-form-urlencoded", b"a=1&apikey=secret-1&b=2", lambda s: s == "a=1&b=2"),
            ("application/json", b'{"apikey": "secret-1", "a": [1]}', lambda s: json.loads(s) == {"a": [1]}),
            ("multipart/form-data; boundary=XyZ",
             b'--XyZ\r\nContent-Disposition: form-data; name="apikey"\r\n\r\nsecret-1\r\n'
             b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\none\r\n--XyZ--\r\n',
             lambda s: "secret-1" not in s and 'name="a"\r\n\r\none' in s),
        ]
        for content_type, body, check in cases:
            seen = self.seen(self.request(harness, method="POST", headers={"Content-Type": content_type}, body=body))
            self.assertTrue(check(seen["body"]), (content_type, seen["body"]))

    def test_spoofedIdentity(self) -> None:
        """
        Identity headers the client sends are replaced, never passed on.
        """
        seen = self.seen(self.request(self.harness(), headers={
            "apikey": "secret-2", "X-Consumer-Username": "mallory", "X-Consumer-Custom-ID": "m",
            "X-Anonymous-Consumer": "true", "X-Credential-Identifier": "forged", "X-Consumer-ID": "x"}))
        headers = seen["headers"]
        self.assertEqual((headers["x-consumer-username"], headers["x-consumer-id"]), (["bob"], [BOB]))
        self.assertNotIn("x-consumer-custom-id", headers)
        self.assertNotIn("x-anonymous-consumer", headers)
        self.assertNotEqual(headers["x-credential-identifier"], ["forged"])

    def test_anonymous(self) -> None:
        """
        With C{anonymous} (a username or an id), a request without a valid
        key passes as that consumer, marked anonymous.
        """
        for anonymous in ("bob", BOB):
            harness = self.harness({"anonymous": anonymous})
            for headers in ({}, {"apikey": "nope"}, {"X-Credential-Identifier": "forged"}):
                seen = self.seen(self.request(harness, headers=headers))["headers"]
                self.assertEqual((seen["x-consumer-username"], seen["x-anonymous-consumer"]), (["bob"], ["true"]),
                                 f"row anonymous={anonymous!r} headers={headers!r}")
                self.assertNotIn("x-credential-identifier", seen, f"row anonymous={anonymous!r} headers={headers!r}")
            seen = self.seen(self.request(harness, headers={"apikey": "secret-1"}))["headers"]
            self.assertEqual(seen["x-consumer-username"], ["alice"], f"row anonymous={anonymous!r}")
            self.assertNotIn("x-anonymous-consumer", seen, f"row anonymous={anonymous!r}")

    def test_anonymousMissing(self) -> None:
        """
        An anonymous consumer that does not exist: 500 saying so.
        """
        response = self.request(self.harness({"anonymous": "ghost"}))
        self.assertEqual((response.status, response.json()),
                         (500, {"message": "anonymous consumer ghost is configured but doesn't exist"}))

    def test_logicalOr(self) -> None:
        """
        With C{anonymous}, a request an earlier plugin authenticated is let
        through untouched.
        """
        harness = self.harness({"anonymous": "bob"}, plugins=[PreAuth()], configs=[("pre-auth", {})])
        seen = self.seen(self.request(harness, headers={"X-Pre-Auth": "alice"}))
        self.assertNotIn("x-consumer-username", seen["headers"])

    def test_logicalAnd(self) -> None:
        """
        Without C{anonymous}, key-auth insists on its own key even after an
        earlier plugin authenticated the request.
        """
        harness = self.harness(plugins=[PreAuth()], configs=[("pre-auth", {})])
        self.assertRefused(self.request(harness, headers={"X-Pre-Auth": "alice"}), NO_KEY)

    def test_preflight(self) -> None:
        """
        C{run_on_preflight} false lets OPTIONS through; true (the default)
        does not.
        """
        self.seen(self.request(self.harness({"run_on_preflight": False}), method="OPTIONS"))
        self.assertRefused(self.request(self.harness(), method="OPTIONS"), NO_KEY)
        self.assertRefused(self.request(self.harness({"run_on_preflight": False})), NO_KEY)

    def test_consumerScopedConfig(self) -> None:
        """
        Once key-auth identified the consumer, that consumer's configs of
        later plugins apply.
        """
        harness = self.harness(plugins=[Stamp()], configs=[("stamp", {}), ("stamp", {"value": "alice's"},
                                                                           {"consumer": ALICE})])
        alice = self.seen(self.request(harness, headers={"apikey": "secret-1"}))
        bob = self.seen(self.request(harness, headers={"apikey": "secret-2"}))
        self.assertEqual((alice["headers"]["x-stamp"], bob["headers"]["x-stamp"]), (["alice's"], ["global"]))

    def test_nextRequest(self) -> None:
        """
        A removed key is refused from the next request on; a new one
        accepted.
        """
        harness = self.harness()
        self.seen(self.request(harness, headers={"apikey": "secret-1"}))
        harness.set_entities({"keyauth_credentials": [{"consumer": {"id": ALICE}, "key": "secret-3"}]})
        self.assertRefused(self.request(harness, headers={"apikey": "secret-1"}), UNAUTHORIZED)
        self.seen(self.request(harness, headers={"apikey": "secret-3"}))

    def count_owners(self) -> list[str]:
        """
        Record every consumer lookup of a credential (L{KeyAuth.owner}).
        """
        looked: list[str] = []
        real = KeyAuth.owner

        def owner(ctx: Any, credential: Any) -> Any:
            looked.append(credential["key"])
            return real(ctx, credential)

        # (Set on KeyAuth, which inherits it, and deleted afterwards: a
        # patch would put the unwrapped function back, not the staticmethod.)
        self.assertNotIn("owner", vars(KeyAuth))
        KeyAuth.owner = staticmethod(owner)  # type: ignore[method-assign]
        self.addCleanup(delattr, KeyAuth, "owner")
        return looked

    def test_consumerLookedUpOnce(self) -> None:
        """
        A credential's consumer is looked up once per snapshot; each
        request still tells the upstream who it is.
        """
        looked = self.count_owners()
        harness = self.harness()
        for key in ("secret-1", "secret-2", "secret-1", "secret-2"):
            self.seen(self.request(harness, headers={"apikey": key}))
        self.assertEqual(looked, ["secret-1", "secret-2"])
        self.assertEqual([r.header("x-consumer-username") for r in harness.upstream_requests],
                         ["alice", "bob", "alice", "bob"])

    def test_newSnapshot(self) -> None:
        """
        A new snapshot looks the consumer up again: a changed consumer is
        told as it now is, and what was kept for the old snapshot is
        dropped.
        """
        looked = self.count_owners()
        harness = self.harness()
        self.seen(self.request(harness, headers={"apikey": "secret-1"}))
        self.seen(self.request(harness, headers={"apikey": "secret-2"}))
        harness.set_entities({"consumers": [{"id": ALICE, "username": "alice-2"}]})
        headers = self.seen(self.request(harness, headers={"apikey": "secret-1"}))["headers"]
        self.assertEqual((headers["x-consumer-username"], headers["x-consumer-id"]), (["alice-2"], [ALICE]))
        self.assertNotIn("x-consumer-custom-id", headers)
        self.assertEqual(looked, ["secret-1", "secret-2", "secret-1"])
        self.assertEqual(len(harness.plugins["key-auth"]._known[1]), 1)

    def test_keptHeaders(self) -> None:
        """
        The outcome kept for a credential carries the upstream's identity
        headers, worked out once; they are what the upstream gets.
        """
        harness = self.harness()
        self.seen(self.request(harness, headers={"apikey": "secret-1"}))
        [(_, outcome)] = harness.plugins["key-auth"]._known[1].values()
        expected = (("X-Consumer-ID", ALICE), ("X-Consumer-Custom-ID", "a-1"), ("X-Consumer-Username", "alice"),
                    ("X-Credential-Identifier", "00000000-0000-4000-8000-0000000000a1"))
        self.assertEqual(outcome.values, tuple((name.encode(), value.encode()) for name, value in expected))
        sent = harness.upstream_requests[0]
        self.assertEqual([(name, sent.header(name)) for name, _ in expected], list(expected))


class KeyAuthEndToEndTests(AuthTestCase):
    """
    key-auth in a running gateway, configured through the Admin API.
    """

    async def test_walkThrough(self) -> None:
        """
        The issue's walk-through: no key 401, a wrong key 401, the right key
        200 and the upstream sees the consumer.
        """
        await self.admin_ok("POST", "/services/mock-service/plugins", 201, data={"name": "key-auth"})
        alice = await self.admin_ok("POST", "/consumers", 201, data={"username": "alice"})
        credential = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, data={"key": "secret-1"})
        self.assertRefused(await self.call(), 401, NO_KEY, "Key")
        self.assertRefused(await self.call(headers={"apikey": "nope"}), 401, UNAUTHORIZED, "Key")
        headers = self.seen_headers(await self.call(headers={"apikey": "secret-1"}))
        self.assertEqual((headers["x-consumer-username"], headers["x-consumer-id"], headers["x-credential-identifier"]),
                         (["alice"], [alice["id"]], [credential["id"]]))

    async def test_queryAndHide(self) -> None:
        """
        A key in the query string, hidden from the service with
        C{hide_credentials}, as are client-sent identity headers.
        """
        await self.plugin("key-auth", {"hide_credentials": True, "key_names": ["token"]})
        await self.consumer("alice")
        await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "k"})
        answer = await self.call("/mock/x?token=k&keep=1", headers={"X-Consumer-Username": "mallory"})
        seen = answer.json()
        self.assertEqual((seen["uri"], seen["headers"]["x-consumer-username"]), ("/x?keep=1", ["alice"]))
        answer = await self.call(headers={"token": "k"})
        self.assertNotIn("token", self.seen_headers(answer))

    async def test_hideInBody(self) -> None:
        """
        A key in a form body is taken out of the body the service receives,
        which has its new length.
        """
        await self.plugin("key-auth", {"hide_credentials": True, "key_in_body": True})
        await self.consumer("alice")
        await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "k"})
        answer = await self.call(method="POST", data={"apikey": "k", "a": "1"})
        seen = answer.json()
        self.assertEqual((answer.code, seen["body"], seen["headers"]["content-length"]), (200, "a=1", ["3"]))

    async def test_anonymous(self) -> None:
        """
        The anonymous consumer gets the requests without a key.
        """
        guest = await self.consumer("guest")
        await self.plugin("key-auth", {"anonymous": "guest"})
        headers = self.seen_headers(await self.call(headers={"apikey": "none"}))
        self.assertEqual((headers["x-consumer-id"], headers["x-anonymous-consumer"]), ([guest["id"]], ["true"]))

    async def test_credentialChanges(self) -> None:
        """
        Keys created, changed and deleted through the Admin API take effect
        on the next request; so does deleting the consumer.
        """
        await self.plugin("key-auth")
        await self.consumer("alice")
        self.assertEqual((await self.call(headers={"apikey": "k1"})).code, 401)
        record = await self.admin_ok("POST", "/consumers/alice/key-auth", 201, json={"key": "k1"})
        self.assertEqual((await self.call(headers={"apikey": "k1"})).code, 200)
        await self.admin_ok("PATCH", f"/key-auths/{record['id']}", json={"key": "k2"})
        self.assertEqual((await self.call(headers={"apikey": "k1"})).code, 401)
        self.assertEqual((await self.call(headers={"apikey": "k2"})).code, 200)
        await self.admin_ok("DELETE", "/consumers/alice", 204)
        self.assertEqual((await self.call(headers={"apikey": "k2"})).code, 401)

    async def test_consumerScopedConfig(self) -> None:
        """
        A consumer's own config of a later plugin (header-echo) applies to
        its requests once key-auth identified it.
        """
        await self.plugin("key-auth")
        await self.plugin("header-echo", {"responseHeader": "X-Everyone"})
        for name in ("alice", "bob"):
            await self.consumer(name)
            await self.admin_ok("POST", f"/consumers/{name}/key-auth", 201, json={"key": name})
        await self.plugin("header-echo", {"responseHeader": "X-Alice"}, path="/consumers/alice/plugins")
        alice = await self.call(headers={"apikey": "alice", "X-Request-Echo": "hi"})
        bob = await self.call(headers={"apikey": "bob", "X-Request-Echo": "hi"})
        self.assertEqual((alice.header("x-alice"), alice.header("x-everyone")), ("hi", None))
        self.assertEqual((bob.header("x-alice"), bob.header("x-everyone")), (None, "hi"))
