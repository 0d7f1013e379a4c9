"""
Tests for the bundled ip-restriction plugin
(L{echogate.bundled.ip_restriction}): through L{GatewayHarness}, and end
to end through running gateways with and without C{trusted_ips}.
"""
from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.ip_restriction import AddressSet, IPRestriction, client_address, parse_ip_or_cidr
from echogate.bundled.key_auth import KeyAuth
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, HarnessResponse
from tests.admin.test_credentials_api import AuthTestCase
from tests.entities.test_credentials import ALICE, BOB, people


class AddressTests(SynchronousTestCase):
    """
    Parsing and matching addresses and ranges.
    """

    def test_parse(self) -> None:
        """
        Addresses are one-address networks; host bits of a range may be set.
        """
        self.assertEqual(parse_ip_or_cidr("10.1.2.3"), ipaddress.ip_network("10.1.2.3/32"))
        self.assertEqual(parse_ip_or_cidr("10.1.2.3/8"), ipaddress.ip_network("10.0.0.0/8"))
        self.assertEqual(parse_ip_or_cidr("2001:db8::1/32"), ipaddress.ip_network("2001:db8::/32"))
        for bad in ("10.0.0.0/33", "10.0.0.0/", "10.0.0.0/a", "::/129", "1.2.3", "host", "10.0.0.0/255.0.0.0",
                    "10.0.0.0/+8"):
            self.assertRaises(ValueError, parse_ip_or_cidr, bad)

    def test_match(self) -> None:
        """
        An L{AddressSet} holds its addresses and ranges, of either version.
        """
        addresses = AddressSet.of(["10.0.0.1", "192.168.0.0/16", "2001:db8::/32", "::1"])
        for inside in ("10.0.0.1", "192.168.7.7", "2001:db8:1::5", "::1"):
            self.assertIn(ipaddress.ip_address(inside), addresses, f"row inside={inside!r}")
        for outside in ("10.0.0.2", "192.169.0.1", "2001:db9::1", "::2"):
            self.assertNotIn(ipaddress.ip_address(outside), addresses, f"row outside={outside!r}")

    def test_clientAddress(self) -> None:
        """
        An IPv4-mapped IPv6 client is its IPv4 address; junk is nothing.
        """
        self.assertEqual(client_address("::ffff:10.0.0.1"), ipaddress.ip_address("10.0.0.1"))
        self.assertEqual(client_address("[::1]"), ipaddress.ip_address("::1"))
        self.assertEqual(client_address("fe80::1%eth0"), ipaddress.ip_address("fe80::1"))
        for junk in ("", None, "nope", "1.2.3.4.5"):
            self.assertIsNone(client_address(junk), f"row junk={junk!r}")


class IPRestrictionTests(SynchronousTestCase):
    """
    ip-restriction through the harness (the client's address is the
    harness connection's peer).
    """

    def request(self, config: dict, client_ip: str = "127.0.0.1", headers: dict | None = None,
                harness: GatewayHarness | None = None) -> HarnessResponse:
        harness = harness or GatewayHarness([IPRestriction()], [("ip-restriction", config)])
        return self.successResultOf(harness.request("GET", "/", headers=headers, client_ip=client_ip))

    def assertAllowed(self, response: HarnessResponse) -> None:
        self.assertEqual(response.status, 200, response.body)

    def assertDenied(self, response: HarnessResponse, message: str, status: int = 403) -> None:
        self.assertEqual((response.status, response.json()), (status, {"message": message}))

    def test_provides(self) -> None:
        """
        It is Kong's ip-restriction (priority 990); it may be scoped to a
        consumer.
        """
        plugin = IPRestriction()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority, getattr(plugin, "no_consumer", False)),
                         ("ip-restriction", 990, False))

    def test_config(self) -> None:
        """
        At least one of allow and deny; addresses and ranges are checked;
        the status is an HTTP status.
        """
        self.assertEqual(IPRestriction.config_schema.validate({"deny": ["::1"]}),
                         {"allow": None, "deny": ["::1"], "status": None, "message": None})
        for config, fields in [
            ({}, {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]}),
            ({"allow": [], "deny": []},
             {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]}),
            ({"allow": ["10.0.0.0/33", "1.1.1.1"], "deny": ["host"], "status": 99, "message": ""},
             {"allow": {"1": "invalid ip or cidr range: '10.0.0.0/33'"},
              "deny": {"1": "invalid ip or cidr range: 'host'"},
              "status": "value should be between 100 and 599", "message": "length must be at least 1"}),
            ({"allow": "1.1.1.1", "deny": [5], "status": "403", "message": 1},
             {"allow": "expected an array", "deny": {"1": "expected a string"},
              "status": "expected an integer", "message": "expected a string"}),
        ]:
            with self.assertRaises(SchemaViolation) as caught:
                IPRestriction.config_schema.validate(config)
            self.assertEqual(caught.exception.fields, fields, config)

    def test_deny(self) -> None:
        """
        A denied address or range: 403 naming the address; others pass.
        """
        config = {"deny": ["10.0.0.1", "192.168.0.0/16"]}
        self.assertDenied(self.request(config, "10.0.0.1"), "IP address not allowed: 10.0.0.1")
        self.assertDenied(self.request(config, "192.168.3.4"), "IP address not allowed: 192.168.3.4")
        self.assertAllowed(self.request(config, "10.0.0.2"))

    def test_allow(self) -> None:
        """
        With allow, only the listed addresses pass.
        """
        config = {"allow": ["10.0.0.0/8"]}
        self.assertAllowed(self.request(config, "10.200.0.1"))
        self.assertDenied(self.request(config, "11.0.0.1"), "IP address not allowed: 11.0.0.1")

    def test_denyFirst(self) -> None:
        """
        With both lists, deny wins.
        """
        config = {"allow": ["10.0.0.0/8"], "deny": ["10.0.0.5"]}
        self.assertDenied(self.request(config, "10.0.0.5"), "IP address not allowed: 10.0.0.5")
        self.assertAllowed(self.request(config, "10.0.0.6"))

    def test_ipv6(self) -> None:
        """
        IPv6 addresses and ranges; an IPv4-mapped client matches its IPv4
        entries.
        """
        config = {"allow": ["2001:db8::/32", "10.0.0.1"]}
        self.assertAllowed(self.request(config, "2001:db8::7"))
        self.assertAllowed(self.request(config, "::ffff:10.0.0.1"))
        self.assertDenied(self.request(config, "2001:db9::7"), "IP address not allowed: 2001:db9::7")

    def test_statusAndMessage(self) -> None:
        """
        The status and message are configurable.
        """
        self.assertDenied(self.request({"deny": ["127.0.0.1"], "status": 401, "message": "go away"}),
                          "go away", 401)

    def test_unknownClient(self) -> None:
        """
        A client address that is not an IP address is refused.
        """
        self.assertDenied(self.request({"deny": ["10.0.0.1"], "message": "m"}, "not-an-ip"),
                          "Cannot identify the client IP address")

    def test_spoofedForwardedFor(self) -> None:
        """
        X-Forwarded-For and X-Real-IP from an untrusted peer change nothing.
        """
        spoof = {"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1"}
        self.assertDenied(self.request({"allow": ["10.0.0.1"]}, "11.0.0.1", spoof), "IP address not allowed: 11.0.0.1")
        self.assertDenied(self.request({"deny": ["11.0.0.1"]}, "11.0.0.1", spoof), "IP address not allowed: 11.0.0.1")

    def test_consumerScoped(self) -> None:
        """
        A consumer's own config applies once key-auth identified it.
        """
        harness = GatewayHarness([KeyAuth(), IPRestriction()], [
            ("key-auth", {}), ("ip-restriction", {"allow": ["10.0.0.0/8"]}),
            ("ip-restriction", {"allow": ["127.0.0.1"]}, {"consumer": ALICE})],
            entities=people({"keyauth_credentials": [{"consumer": {"id": ALICE}, "key": "a"},
                                                     {"consumer": {"id": BOB}, "key": "b"}]}))
        self.assertAllowed(self.request({}, headers={"apikey": "a"}, harness=harness))
        self.assertDenied(self.request({}, headers={"apikey": "b"}, harness=harness),
                          "IP address not allowed: 127.0.0.1")


class UntrustedEndToEndTests(AuthTestCase):
    """
    ip-restriction in a running gateway that trusts no peer.
    """

    async def test_deny(self) -> None:
        """
        The peer's address is judged; X-Forwarded-For and X-Real-IP sent by
        the (untrusted) client change nothing.
        """
        await self.plugin("ip-restriction", {"deny": ["127.0.0.1"]}, path="/services/mock-service/plugins")
        for headers in ({}, {"X-Forwarded-For": "10.0.0.1"}, {"X-Real-IP": "10.0.0.1"}):
            self.assertRefused(await self.call(headers=headers), 403,
                               {"message": "IP address not allowed: 127.0.0.1"})

    async def test_allow(self) -> None:
        """
        Only the allowed address passes, whatever the client claims; a
        change of the plugin's config applies to the next request.
        """
        plugin = await self.plugin("ip-restriction", {"allow": ["10.0.0.1"], "status": 401, "message": "no"})
        self.assertRefused(await self.call(headers={"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1"}),
                           401, {"message": "no"})
        await self.admin_ok("PATCH", f"/plugins/{plugin['id']}", json={"config": {"allow": ["127.0.0.0/8"]}})
        self.assertEqual((await self.call()).code, 200)


class TrustedEndToEndTests(AuthTestCase):
    """
    ip-restriction in a running gateway whose C{trusted_ips} include the
    test client (a load balancer in front of it).
    """

    settings = {"trusted_ips": "127.0.0.1"}

    async def test_forwardedAddress(self) -> None:
        """
        From a trusted peer, the address in real_ip_header (X-Real-IP by
        default, as Kong) is the client's; X-Forwarded-For is not read.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"], "deny": ["10.6.6.6"]})
        self.assertEqual((await self.call(headers={"X-Real-IP": "10.1.1.1"})).code, 200)
        self.assertRefused(await self.call(headers={"X-Real-IP": "10.6.6.6"}), 403,
                           {"message": "IP address not allowed: 10.6.6.6"})
        self.assertRefused(await self.call(headers={"X-Forwarded-For": "10.1.1.1"}), 403,
                           {"message": "IP address not allowed: 127.0.0.1"})
        self.assertRefused(await self.call(), 403, {"message": "IP address not allowed: 127.0.0.1"})

    async def test_garbageIgnored(self) -> None:
        """
        A real_ip_header value that is not an address leaves the client at
        the peer's address.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"]})
        self.assertRefused(await self.call(headers={"X-Real-IP": "10.1.1.1 or 1=1"}), 403,
                           {"message": "IP address not allowed: 127.0.0.1"})


class ForwardedForEndToEndTests(AuthTestCase):
    """
    A trusted load balancer that appends to X-Forwarded-For
    (real_ip_header = X-Forwarded-For, real_ip_recursive = on): a
    client-sent X-Real-IP no longer names the client (it opened allow
    lists: the LB passes it through untouched).
    """

    settings = {"trusted_ips": "127.0.0.1", "real_ip_header": "X-Forwarded-For", "real_ip_recursive": "on"}

    async def test_realIpHeaderIgnored(self) -> None:
        """
        An attacker's own X-Real-IP, next to the X-Forwarded-For the load
        balancer wrote, does not open the allow list.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"]})
        self.assertRefused(await self.call(headers={"X-Real-IP": "10.1.1.1", "X-Forwarded-For": "203.0.113.9"}),
                           403, {"message": "IP address not allowed: 203.0.113.9"})

    async def test_lastUntrusted(self) -> None:
        """
        Recursive: trusted hops at the end of the list are skipped; what
        the client wrote at its start is not believed.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"]})
        self.assertEqual((await self.call(headers={"X-Forwarded-For": "203.0.113.9, 10.1.1.1, 127.0.0.1"})).code,
                         200)
        self.assertRefused(await self.call(headers={"X-Forwarded-For": "10.1.1.1, 203.0.113.9"}), 403,
                           {"message": "IP address not allowed: 203.0.113.9"})


class NotRecursiveEndToEndTests(AuthTestCase):
    """
    real_ip_recursive = off: the last address of the list, trusted or not.
    """

    settings = {"trusted_ips": "127.0.0.1", "real_ip_header": "X-Forwarded-For"}

    async def test_lastAddress(self) -> None:
        """
        The last hop is the client even when it is a trusted address.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"]})
        self.assertRefused(await self.call(headers={"X-Forwarded-For": "10.1.1.1, 127.0.0.1"}), 403,
                           {"message": "IP address not allowed: 127.0.0.1"})
        self.assertEqual((await self.call(headers={"X-Forwarded-For": "203.0.113.9, 10.1.1.1"})).code, 200)


class OtherTrustedEndToEndTests(AuthTestCase):
    """
    ip-restriction in a running gateway that trusts another network only.
    """

    settings = {"trusted_ips": "192.168.0.0/16"}

    async def test_spoofed(self) -> None:
        """
        The test client is not trusted: its X-Forwarded-For is ignored.
        """
        await self.plugin("ip-restriction", {"allow": ["10.0.0.0/8"]})
        self.assertRefused(await self.call(headers={"X-Forwarded-For": "10.1.1.1", "X-Real-IP": "10.1.1.1"}),
                           403, {"message": "IP address not allowed: 127.0.0.1"})
