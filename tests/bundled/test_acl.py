"""
Tests for the bundled acl plugin (L{echogate.bundled.acl}): through
L{GatewayHarness} behind key-auth, and end to end through a running
gateway.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.acl import ACL
from echogate.bundled.key_auth import KeyAuth
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase
from tests.entities.test_credentials import ALICE, BOB

CAROL = "00000000-0000-4000-8000-00000000000c"
FORBIDDEN = {"message": "You cannot consume this service"}
UNAUTHORIZED = {"message": "Unauthorized"}
ENTITIES = {
    "consumers": [{"id": ALICE, "username": "alice"}, {"id": BOB, "username": "bob"},
                  {"id": CAROL, "username": "carol"}],
    "keyauth_credentials": [{"consumer": {"id": c}, "key": k} for c, k in ((ALICE, "a"), (BOB, "b"), (CAROL, "c"))],
    "acls": [{"consumer": {"id": ALICE}, "group": "gold"}, {"consumer": {"id": ALICE}, "group": "admin"},
             {"consumer": {"id": BOB}, "group": "silver"}],
}


class _Groups(GatewayPlugin):
    """
    Leaves the groups named by X-Groups in C{ctx.shared}, as an LDAP or
    OAuth plugin would.
    """

    name = "groups"
    priority = 2000
    config_schema = Record({})

    def access(self, ctx: Any, config: Any) -> None:
        groups = ctx.request.get_header("x-groups")
        if groups is not None:
            ctx.shared["authenticated_groups"] = [g for g in groups.split(",") if g]


class ACLTests(SynchronousTestCase):
    """
    acl through the harness.
    """

    def harness(self, config: dict, key_auth: dict | None = None, groups: bool = False) -> GatewayHarness:
        plugins: list[Any] = [ACL()]
        configs: list[tuple] = [("acl", config)]
        if key_auth is not None:
            plugins.append(KeyAuth())
            configs.append(("key-auth", key_auth))
        if groups:
            plugins.append(_Groups())
            configs.append(("groups", {}))
        return GatewayHarness(plugins, configs, entities=ENTITIES)

    def request(self, harness: GatewayHarness, key: str | None = None, headers: dict | None = None
                ) -> HarnessResponse:
        headers = dict(headers or {})
        if key is not None:
            headers["apikey"] = key
        return self.successResultOf(harness.request("GET", "/", headers=headers))

    def seen(self, response: HarnessResponse) -> dict[str, list[str]]:
        self.assertEqual(response.status, 200, response.body)
        return response.json()["headers"]

    def assertRefused(self, response: HarnessResponse, status: int, body: dict) -> None:
        self.assertEqual((response.status, response.json()), (status, body))

    def test_provides(self) -> None:
        """
        It is Kong's acl: name, priority, not scoped to consumers.
        """
        plugin = ACL()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority, plugin.no_consumer), ("acl", 950, True))

    def test_config(self) -> None:
        """
        Exactly one of allow and deny; every field checks its value.
        """
        self.assertEqual(ACL.config_schema.validate({"allow": ["a"]}), {
            "allow": ["a"], "deny": None, "hide_groups_header": False, "always_use_authenticated_groups": False})
        for config, fields in [
            ({}, {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]}),
            ({"allow": [], "deny": []},
             {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]}),
            ({"allow": ["a"], "deny": ["b"]},
             {"@entity": ["exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"]}),
            ({"allow": "a", "deny": [1], "hide_groups_header": "no", "always_use_authenticated_groups": None},
             {"allow": "expected an array", "deny": {"1": "expected a string"},
              "hide_groups_header": "expected a boolean", "always_use_authenticated_groups": "required field missing"}),
        ]:
            with self.assertRaises(SchemaViolation) as caught:
                ACL.config_schema.validate(config)
            self.assertEqual(caught.exception.fields, fields, config)

    def test_allow(self) -> None:
        """
        allow: a consumer in a listed group passes, and the service learns
        its groups; others get 403, with or without groups.
        """
        harness = self.harness({"allow": ["gold", "bronze"]}, key_auth={})
        self.assertEqual(self.seen(self.request(harness, "a"))["x-consumer-groups"], ["gold, admin"])
        self.assertRefused(self.request(harness, "b"), 403, FORBIDDEN)
        self.assertRefused(self.request(harness, "c"), 403, FORBIDDEN)

    def test_deny(self) -> None:
        """
        deny: a consumer in a listed group gets 403; others pass, a
        consumer without groups too.
        """
        harness = self.harness({"deny": ["gold"]}, key_auth={})
        self.assertRefused(self.request(harness, "a"), 403, FORBIDDEN)
        self.assertEqual(self.seen(self.request(harness, "b"))["x-consumer-groups"], ["silver"])
        self.assertNotIn("x-consumer-groups", self.seen(self.request(harness, "c")))

    def test_noConsumer(self) -> None:
        """
        Nobody authenticated: 401.
        """
        self.assertRefused(self.request(self.harness({"allow": ["gold"]})), 401, UNAUTHORIZED)
        self.assertRefused(self.request(self.harness({"deny": ["gold"]})), 401, UNAUTHORIZED)

    def test_anonymous(self) -> None:
        """
        An anonymous consumer is judged by its groups; without any, allow
        answers 401 (nobody really authenticated).
        """
        harness = self.harness({"allow": ["silver"]}, key_auth={"anonymous": "bob"})
        self.assertEqual(self.seen(self.request(harness))["x-consumer-groups"], ["silver"])
        self.assertRefused(self.request(harness, "a"), 403, FORBIDDEN)
        harness = self.harness({"allow": ["gold"]}, key_auth={"anonymous": "carol"})
        self.assertRefused(self.request(harness), 401, UNAUTHORIZED)

    def test_hideGroupsHeader(self) -> None:
        """
        C{hide_groups_header}: the service does not learn the groups; a
        client-sent groups header never reaches it.
        """
        spoof = {"X-Consumer-Groups": "gold", "X-Authenticated-Groups": "gold"}
        seen = self.seen(self.request(self.harness({"allow": ["gold"], "hide_groups_header": True}, {}), "a", spoof))
        self.assertNotIn("x-consumer-groups", seen)
        self.assertNotIn("x-authenticated-groups", seen)
        seen = self.seen(self.request(self.harness({"deny": ["gold"]}, {}), "c", spoof))
        self.assertNotIn("x-consumer-groups", seen)
        self.assertNotIn("x-authenticated-groups", seen)

    def test_authenticatedGroups(self) -> None:
        """
        Groups an earlier plugin authenticated judge a request without a
        consumer (sent as X-Authenticated-Groups), an anonymous one, or any
        with C{always_use_authenticated_groups}.
        """
        harness = self.harness({"allow": ["gold"]}, groups=True)
        self.assertEqual(self.seen(self.request(harness, headers={"X-Groups": "x,gold"}))["x-authenticated-groups"],
                         ["x, gold"])
        self.assertRefused(self.request(harness, headers={"X-Groups": "x"}), 403, FORBIDDEN)
        anonymous = self.harness({"allow": ["gold"]}, key_auth={"anonymous": "bob"}, groups=True)
        self.seen(self.request(anonymous, headers={"X-Groups": "gold"}))
        plain = self.harness({"allow": ["gold"]}, key_auth={}, groups=True)
        self.assertRefused(self.request(plain, "b", {"X-Groups": "gold"}), 403, FORBIDDEN)
        always = self.harness({"allow": ["gold"], "always_use_authenticated_groups": True}, key_auth={}, groups=True)
        self.seen(self.request(always, "b", {"X-Groups": "gold"}))
        self.assertRefused(self.request(always, "a", {"X-Groups": "none"}), 403, FORBIDDEN)
        self.seen(self.request(always, "a"))

    def test_nextRequest(self) -> None:
        """
        Changed groups apply from the next request on.
        """
        harness = self.harness({"allow": ["gold"]}, key_auth={})
        self.assertRefused(self.request(harness, "b"), 403, FORBIDDEN)
        harness.set_entities({"acls": [{"consumer": {"id": BOB}, "group": "gold"}]})
        self.seen(self.request(harness, "b"))
        self.assertRefused(self.request(harness, "a"), 403, FORBIDDEN)


class ACLEndToEndTests(AuthTestCase):
    """
    acl behind key-auth in a running gateway.
    """

    async def test_groups(self) -> None:
        """
        Only the allowed group passes; group changes through the Admin API
        apply to the next request; no key is key-auth's 401.
        """
        await self.plugin("key-auth")
        await self.plugin("acl", {"allow": ["gold"]}, path="/routes/mock/plugins")
        for name in ("alice", "bob"):
            await self.consumer(name)
            await self.admin_ok("POST", f"/consumers/{name}/key-auth", 201, json={"key": name})
        await self.admin_ok("POST", "/consumers/alice/acls", 201, data={"group": "gold"})
        headers = self.seen_headers(await self.call(headers={"apikey": "alice", "X-Consumer-Groups": "x"}))
        self.assertEqual(headers["x-consumer-groups"], ["gold"])
        self.assertRefused(await self.call(headers={"apikey": "bob", "X-Consumer-Groups": "gold"}), 403, FORBIDDEN)
        await self.admin_ok("POST", "/consumers/bob/acls", 201, json={"group": "gold"})
        self.assertEqual((await self.call(headers={"apikey": "bob"})).code, 200)
        await self.admin_ok("DELETE", "/consumers/bob/acls/gold", 204)
        self.assertRefused(await self.call(headers={"apikey": "bob"}), 403, FORBIDDEN)
        self.assertRefused(await self.call(), 401, {"message": "No API key found in request"}, "Key")

    async def test_withoutAuthentication(self) -> None:
        """
        acl without an auth plugin: 401.
        """
        await self.plugin("acl", {"deny": ["x"]})
        self.assertRefused(await self.call(), 401, UNAUTHORIZED)
