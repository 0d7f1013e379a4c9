"""
Tests for the bundled basic-auth plugin (L{echogate.bundled.basic_auth}):
through L{GatewayHarness}, and end to end through a running gateway.
"""
from __future__ import annotations

import base64
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.basic_auth import BasicAuth, PasswordCheck, parse_basic
from echogate.entities.credentials import hash_password, verify_password
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase, basic
from tests.entities.test_credentials import ALICE, BOB, PreAuth, Stamp, people

UNAUTHORIZED = {"message": "Unauthorized"}
CHALLENGE = 'Basic realm="service"'
USERS = {"basicauth_credentials": [{"consumer": {"id": ALICE}, "username": "alice", "password": "wonderland"},
                                   {"consumer": {"id": BOB}, "username": "bob", "password": "b:u:i:l:d"}]}


def call_now(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


class PasswordCheckTests(SynchronousTestCase):
    """
    L{PasswordCheck}: the slow check runs where it is told, and successes
    are remembered.
    """

    def setUp(self) -> None:
        self.calls: list[tuple] = []
        self.stored = hash_password("right", log_n=4)

    def runner(self, function: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(args)
        return function(*args)

    def test_checks(self) -> None:
        """
        The right password matches, a wrong one does not.
        """
        check = PasswordCheck(run=self.runner, clock=Clock())
        self.assertTrue(self.successResultOf(check(self.stored, "right")))
        self.assertFalse(self.successResultOf(check(self.stored, "wrong")))

    def test_remembered(self) -> None:
        """
        A success is remembered: checking it again does not run the slow
        check, and answers at once.
        """
        check = PasswordCheck(run=self.runner, clock=Clock())
        self.successResultOf(check(self.stored, "right"))
        self.assertIs(check(self.stored, "right"), True)
        self.assertEqual(len(self.calls), 1)

    def test_failuresNotRemembered(self) -> None:
        """
        A failure is checked again every time, and does not count as the
        remembered password.
        """
        check = PasswordCheck(run=self.runner, clock=Clock())
        self.successResultOf(check(self.stored, "right"))
        self.assertFalse(self.successResultOf(check(self.stored, "wrong")))
        self.assertFalse(self.successResultOf(check(self.stored, "wrong")))
        self.assertEqual(len(self.calls), 3)

    def test_newHash(self) -> None:
        """
        A changed password (a new stored hash) is checked afresh.
        """
        check = PasswordCheck(run=self.runner, clock=Clock())
        self.successResultOf(check(self.stored, "right"))
        other = hash_password("right", log_n=4)
        self.assertTrue(self.successResultOf(check(other, "right")))
        self.assertEqual(len(self.calls), 2)

    def test_bounded(self) -> None:
        """
        At most C{size} successes are remembered, the oldest forgotten.
        """
        check = PasswordCheck(run=self.runner, size=2, clock=Clock())
        hashes = [hash_password(str(n), log_n=4) for n in range(3)]
        for n, stored in enumerate(hashes):
            self.successResultOf(check(stored, str(n)))
        self.assertIs(check(hashes[2], "2"), True)
        self.assertIsInstance(check(hashes[0], "0"), Deferred)

    def test_asynchronous(self) -> None:
        """
        The check may answer later (from the thread pool).
        """
        pending: list[Deferred] = []
        check = PasswordCheck(run=lambda f, *a: pending.append(Deferred()) or pending[-1], clock=Clock())
        result = check(self.stored, "right")
        self.assertNoResult(result)
        pending[0].callback(True)
        self.assertTrue(self.successResultOf(result))


class ParseTests(SynchronousTestCase):
    """
    L{parse_basic} reads a Basic authorization header as Kong does.
    """

    def test_parse(self) -> None:
        """
        Username and password; the password may have colons; any case of
        C{Basic}.
        """
        token = base64.b64encode(b"u:p:q").decode()
        self.assertEqual(parse_basic(f"Basic {token}"), ("u", "p:q"))
        self.assertEqual(parse_basic(f"  basic {token}"), ("u", "p:q"))
        self.assertEqual(parse_basic("Basic " + base64.b64encode(b"u:").decode()), ("u", ""))

    def test_unreadable(self) -> None:
        """
        Not Basic, not base64, no colon, no username, not UTF-8: nothing.
        """
        for header in ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"user").decode(),
                       "Basic " + base64.b64encode(b":p").decode(), "Basic " + base64.b64encode(b"\xff:p").decode(),
                       "Basic"]:
            self.assertIsNone(parse_basic(header), header)


class BasicAuthTests(SynchronousTestCase):
    """
    basic-auth through the harness.
    """

    def harness(self, config: dict | None = None, plugins: list | None = None, configs: list | None = None,
                check: Any = None) -> GatewayHarness:
        plugin = BasicAuth(check=check or PasswordCheck(run=call_now, clock=Clock()))
        return GatewayHarness([plugin, *(plugins or [])], [("basic-auth", config or {}), *(configs or [])],
                              entities=people(USERS))

    def request(self, harness: GatewayHarness, headers: dict | None = None, method: str = "GET") -> HarnessResponse:
        return self.successResultOf(harness.request(method, "/", headers=headers))

    def seen(self, response: HarnessResponse) -> dict[str, list[str]]:
        self.assertEqual(response.status, 200, response.body)
        return response.json()["headers"]

    def assertRefused(self, response: HarnessResponse, challenge: str = CHALLENGE) -> None:
        self.assertEqual((response.status, response.json(), response.header("www-authenticate")),
                         (401, UNAUTHORIZED, challenge))

    def test_provides(self) -> None:
        """
        It is Kong's basic-auth: name, priority, not scoped to consumers.
        """
        plugin = BasicAuth()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority, plugin.no_consumer), ("basic-auth", 1100, True))

    def test_configErrors(self) -> None:
        """
        Every field checks its value; the realm defaults to C{service}.
        """
        self.assertEqual(BasicAuth.config_schema.validate({}),
                         {"anonymous": None, "hide_credentials": False, "realm": "service"})
        with self.assertRaises(SchemaViolation) as caught:
            BasicAuth.config_schema.validate({"anonymous": [], "hide_credentials": None, "realm": ""})
        self.assertEqual(caught.exception.fields, {"anonymous": "expected a string",
                                                   "hide_credentials": "required field missing",
                                                   "realm": "length must be at least 1"})
        with self.assertRaises(SchemaViolation) as caught:
            BasicAuth.config_schema.validate({"realm": None, "hide_credentials": 1})
        self.assertEqual(caught.exception.fields, {"realm": "required field missing",
                                                   "hide_credentials": "expected a boolean"})

    def test_noCredentials(self) -> None:
        """
        No Authorization header: 401 with the realm's challenge; the
        upstream is not called.
        """
        harness = self.harness()
        self.assertRefused(self.request(harness))
        self.assertRefused(self.request(self.harness({"realm": "api"})), 'Basic realm="api"')
        self.assertEqual(harness.upstream_requests, [])

    def test_refused(self) -> None:
        """
        Unreadable headers, unknown users and wrong passwords: 401.
        """
        harness = self.harness()
        for value in ["Bearer x", "Basic !!", basic("carol", "x"), basic("alice", "Wonderland"), basic("alice", "")]:
            self.assertRefused(self.request(harness, {"Authorization": value}))

    def test_authenticated(self) -> None:
        """
        The right password authenticates; the upstream learns the consumer
        and the username, and still receives the header.
        """
        value = basic("bob", "b:u:i:l:d")
        headers = self.seen(self.request(self.harness(), {"Authorization": value}))
        self.assertEqual((headers["x-consumer-username"], headers["x-consumer-id"],
                          headers["x-credential-identifier"], headers["authorization"]),
                         (["bob"], [BOB], ["bob"], [value]))
        self.assertNotIn("x-anonymous-consumer", headers)

    def test_proxyAuthorization(self) -> None:
        """
        Proxy-Authorization is looked at first, then Authorization.
        """
        harness = self.harness()
        headers = self.seen(self.request(harness, {"Proxy-Authorization": basic("alice", "wonderland"),
                                                   "Authorization": basic("bob", "b:u:i:l:d")}))
        self.assertEqual(headers["x-consumer-username"], ["alice"])
        headers = self.seen(self.request(harness, {"Proxy-Authorization": basic("carol", "x"),
                                                   "Authorization": basic("bob", "b:u:i:l:d")}))
        self.assertEqual(headers["x-consumer-username"], ["bob"])
        self.assertRefused(self.request(harness, {"Proxy-Authorization": basic("alice", "no"),
                                                  "Authorization": basic("bob", "b:u:i:l:d")}))

    def test_hideCredentials(self) -> None:
        """
        C{hide_credentials} keeps the Authorization header from the service.
        """
        headers = self.seen(self.request(self.harness({"hide_credentials": True}),
                                         {"Authorization": basic("alice", "wonderland")}))
        self.assertNotIn("authorization", headers)
        self.assertEqual(headers["x-consumer-username"], ["alice"])

    def test_spoofedIdentity(self) -> None:
        """
        Identity headers the client sends are replaced.
        """
        headers = self.seen(self.request(self.harness(), {
            "Authorization": basic("bob", "b:u:i:l:d"), "X-Consumer-Username": "mallory",
            "X-Consumer-Custom-ID": "m", "X-Anonymous-Consumer": "true"}))
        self.assertEqual(headers["x-consumer-username"], ["bob"])
        self.assertNotIn("x-consumer-custom-id", headers)
        self.assertNotIn("x-anonymous-consumer", headers)

    def test_anonymous(self) -> None:
        """
        With C{anonymous}, a request that fails passes as that consumer,
        marked anonymous; a missing anonymous consumer is a 500.
        """
        harness = self.harness({"anonymous": BOB})
        for headers in ({}, {"Authorization": basic("alice", "nope")}):
            seen = self.seen(self.request(harness, headers))
            self.assertEqual((seen["x-consumer-username"], seen["x-anonymous-consumer"]), (["bob"], ["true"]),
                             f"row headers={headers!r}")
            self.assertNotIn("x-credential-identifier", seen, f"row headers={headers!r}")
        response = self.request(self.harness({"anonymous": "ghost"}))
        self.assertEqual((response.status, response.json()),
                         (500, {"message": "anonymous consumer ghost is configured but doesn't exist"}))

    def test_logicalOr(self) -> None:
        """
        With C{anonymous}, a request an earlier plugin authenticated is let
        through; without, basic-auth insists.
        """
        harness = self.harness({"anonymous": "bob"}, plugins=[PreAuth()], configs=[("pre-auth", {})])
        self.assertNotIn("x-consumer-username", self.seen(self.request(harness, {"X-Pre-Auth": "alice"})))
        harness = self.harness(plugins=[PreAuth()], configs=[("pre-auth", {})])
        self.assertRefused(self.request(harness, {"X-Pre-Auth": "alice"}))

    def test_consumerScopedConfig(self) -> None:
        """
        The authenticated consumer's configs of later plugins apply.
        """
        harness = self.harness(plugins=[Stamp()], configs=[("stamp", {}), ("stamp", {"value": "bob's"},
                                                                           {"consumer": BOB})])
        self.assertEqual(self.seen(self.request(harness, {"Authorization": basic("bob", "b:u:i:l:d")}))["x-stamp"],
                         ["bob's"])
        self.assertEqual(self.seen(self.request(harness, {"Authorization": basic("alice", "wonderland")}))["x-stamp"],
                         ["global"])

    def test_waitsForTheCheck(self) -> None:
        """
        The request waits for a check that answers later, then goes on.
        """
        pending: list[Deferred] = []

        def later(function: Callable[..., Any], *args: Any) -> Deferred:
            pending.append(Deferred())
            pending[-1].addCallback(lambda _: function(*args))
            return pending[-1]

        harness = self.harness(check=PasswordCheck(run=later, clock=Clock()))
        response = harness.request("GET", "/", headers={"Authorization": basic("alice", "wonderland")})
        self.assertNoResult(response)
        self.assertEqual(harness.upstream_requests, [])
        pending[0].callback(None)
        self.assertEqual(self.successResultOf(response).status, 200)

    def test_nextRequest(self) -> None:
        """
        A changed password applies from the next request on.
        """
        harness = self.harness()
        self.seen(self.request(harness, {"Authorization": basic("alice", "wonderland")}))
        harness.set_entities({"basicauth_credentials": [{"consumer": {"id": ALICE}, "username": "alice",
                                                         "password": "looking-glass"}]})
        self.assertRefused(self.request(harness, {"Authorization": basic("alice", "wonderland")}))
        self.seen(self.request(harness, {"Authorization": basic("alice", "looking-glass")}))


class BasicAuthEndToEndTests(AuthTestCase):
    """
    basic-auth in a running gateway (passwords checked in the thread pool).
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.consumer("alice")
        self.credential = await self.admin_ok("POST", "/consumers/alice/basic-auth", 201,
                                              data={"username": "alice", "password": "wonderland"})

    async def test_authenticate(self) -> None:
        """
        No header, a wrong password: 401 with the challenge; the right
        password: 200 and the upstream sees the consumer.
        """
        await self.plugin("basic-auth", {"realm": "mock"})
        self.assertRefused(await self.call(), 401, UNAUTHORIZED, 'Basic realm="mock"')
        self.assertRefused(await self.call(headers={"Authorization": basic("alice", "nope")}), 401,
                           UNAUTHORIZED, 'Basic realm="mock"')
        for _ in range(2):
            headers = self.seen_headers(await self.call(headers={"Authorization": basic("alice", "wonderland")}))
            self.assertEqual((headers["x-consumer-id"], headers["x-credential-identifier"]),
                             ([self.alice["id"]], ["alice"]))
        self.assertTrue(verify_password(self.credential["password"], "wonderland"))

    async def test_hideAndAnonymous(self) -> None:
        """
        With C{hide_credentials} the service never sees the password; with
        C{anonymous}, failures pass as the guest.
        """
        guest = await self.consumer("guest")
        await self.plugin("basic-auth", {"hide_credentials": True, "anonymous": guest["id"]})
        headers = self.seen_headers(await self.call(headers={"Authorization": basic("alice", "wonderland")}))
        self.assertNotIn("authorization", headers)
        headers = self.seen_headers(await self.call(headers={"Authorization": basic("alice", "nope")}))
        self.assertEqual((headers["x-consumer-username"], headers["x-anonymous-consumer"]), (["guest"], ["true"]))
        self.assertNotIn("authorization", headers)

    async def test_passwordChange(self) -> None:
        """
        A password changed through the Admin API applies to the next request.
        """
        await self.plugin("basic-auth")
        self.assertEqual((await self.call(headers={"Authorization": basic("alice", "wonderland")})).code, 200)
        await self.admin_ok("PATCH", "/consumers/alice/basic-auth/alice", json={"password": "looking-glass"})
        self.assertEqual((await self.call(headers={"Authorization": basic("alice", "wonderland")})).code, 401)
        self.assertEqual((await self.call(headers={"Authorization": basic("alice", "looking-glass")})).code, 200)
