"""
Tests for the bundled cors plugin (L{echogate.bundled.cors}).
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.cors import ALL_METHODS, Cors, normalize_origin
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, UpstreamAnswer
from tests.proxy.test_plugin_contract import make_plugin

NAME = "cors"

#: (configured origins, request origin, expected Access-Control-Allow-Origin or None).
ORIGIN_CASES = [
    # One plain entry is sent as configured, whatever the request's origin.
    (["foo.test"], "http://evil.test", "foo.test"),
    (["https://bar.test:1234"], "http://foo.test", "https://bar.test:1234"),
    # A regex without ":" matches the host, anchored at both ends.
    (["foo\\.test"], "http://foo.test", "http://foo.test"),
    (["foo\\.test"], "http://foo.test:80", "http://foo.test"),
    (["foo\\.test"], "https://foo.test:8000", "https://foo.test:8000"),
    (["foo\\.test"], "http://foo.test.evil.test", None),
    (["foo\\.test"], "http://evilfoo.test", None),
    (["foo\\.test"], "http://foobtest", None),
    (["(.*[./])?foo\\.test"], "http://something.foo.test", "http://something.foo.test"),
    (["(.*[./])?foo\\.test"], "http://evilfoo.test", None),
    # A regex with ":" matches scheme://host[:port].
    (["(.*[./])?foo\\.test:8000"], "https://foo.test:8000", "https://foo.test:8000"),
    (["(.*[./])?foo\\.test:8000"], "http://foo.test", None),
    (["https://(.*[.])?foo\\.test:8000"], "http://foo.test:8000", None),
    (["https://(.*[.])?foo\\.test:8000"], "https://a.foo.test:8000", "https://a.foo.test:8000"),
    # Explicit anchors are accepted.
    (["^http://(.*[.])?foo\\.test(:(80|90))?$"], "http://foo.test:90", "http://foo.test:90"),
    (["^http://(.*[.])?foo\\.test(:(80|90))?$"], "http://foo.test:80", "http://foo.test"),
    (["^http://(.*[.])?foo\\.test(:(80|90))?$"], "http://foo.test:8000", None),
    # Several plain entries compare whole normalised origins.
    (["foo.test", "bar.test"], "http://foo.test", None),
    (["foo.test", "bar.test"], "foo.test", "foo.test"),
    (["http://foo.test", "https://bar.test:1234"], "http://foo.test:80", "http://foo.test"),
    (["http://foo.test", "https://bar.test:1234"], "https://bar.test:1234", "https://bar.test:1234"),
    (["http://foo.test", "https://bar.test:1234"], "http://foo.test:8000", None),
    (["http://foo.test", "https://bar.test:1234"], "https://foo.test", None),
    (["bar.test", "(.*\\.)?foo\\.test"], "http://something.foo.test", "http://something.foo.test"),
    (["bar.test", "(.*\\.)?foo\\.test"], "http://foo.test.evil.test", None),
    # "*" among others allows all.
    (["foo.bar", "*"], "http://x.test", "*"),
]


def harness(upstream: Any = None, **config: Any) -> GatewayHarness:
    kw = {"upstream": upstream} if upstream is not None else {}
    return GatewayHarness([Cors()], configs=[(NAME, config)], **kw)


def preflight(gateway: GatewayHarness, origin: str = "http://example.test", **headers: str) -> Any:
    sent = {"Origin": origin, "Access-Control-Request-Method": "GET"}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return gateway.request("OPTIONS", "/", headers=sent)


class CorsPreflightTests(SynchronousTestCase):
    """
    Preflight requests are answered by the gateway.
    """

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        plugin = Cors()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 2000))

    def test_defaults(self) -> None:
        """
        With the defaults: 200, every origin, every method, nothing else,
        and the service is not called.
        """
        gateway = harness()
        response = self.successResultOf(preflight(gateway))
        self.assertEqual((response.status, response.body), (200, b""))
        self.assertEqual(response.header("access-control-allow-origin"), "*")
        self.assertEqual(response.header("access-control-allow-methods"), ALL_METHODS)
        for name in ("allow-headers", "expose-headers", "allow-credentials", "max-age"):
            self.assertIsNone(response.header(f"access-control-{name}"), name)
        self.assertIsNone(response.header("vary"))
        self.assertEqual(gateway.upstream_requests, [])

    def test_options(self) -> None:
        """
        Configured headers, methods, max age and credentials are sent.
        """
        gateway = harness(origins=["http://example.test"], headers=["x-a", "x-b"], methods=["GET", "POST"],
                          max_age=3600, credentials=True, exposed_headers=["x-e"])
        response = self.successResultOf(preflight(gateway, "http://example.test"))
        self.assertEqual(response.header("access-control-allow-origin"), "http://example.test")
        self.assertEqual(response.header("access-control-allow-headers"), "x-a,x-b")
        self.assertEqual(response.header("access-control-allow-methods"), "GET,POST")
        self.assertEqual(response.header("access-control-max-age"), "3600")
        self.assertEqual(response.header("access-control-allow-credentials"), "true")
        self.assertEqual(response.header("vary"), "Origin")
        self.assertIsNone(response.header("access-control-expose-headers"))

    def test_fractionalMaxAge(self) -> None:
        """
        C{max_age} is a number; a fraction is sent as one.
        """
        response = self.successResultOf(preflight(harness(max_age=1.5)))
        self.assertEqual(response.header("access-control-max-age"), "1.5")

    def test_requestedHeadersEchoed(self) -> None:
        """
        Without configured headers, the requested ones are allowed.
        """
        response = self.successResultOf(preflight(harness(), Access_Control_Request_Headers="x-one, x-two"))
        self.assertEqual(response.header("access-control-allow-headers"), "x-one, x-two")

    def test_nullMethods(self) -> None:
        """
        Null C{methods} allows every method.
        """
        response = self.successResultOf(preflight(harness(methods=None)))
        self.assertEqual(response.header("access-control-allow-methods"), ALL_METHODS)

    def test_origins(self) -> None:
        """
        Origins match exactly (default ports ignored) or as anchored
        regexes, against the host when the entry has no C{:}.
        """
        for origins, origin, expected in ORIGIN_CASES:
            response = self.successResultOf(preflight(harness(origins=origins), origin))
            self.assertEqual((origins, origin, response.status, response.header("access-control-allow-origin")),
                             (origins, origin, 200, expected),
                             f"row origins={origins!r} origin={origin!r} expected={expected!r}")

    def test_credentialsWithAllOrigins(self) -> None:
        """
        With every origin allowed and credentials, the request's origin is
        echoed (browsers refuse C{*} with credentials) and Vary is set.
        """
        response = self.successResultOf(preflight(harness(credentials=True), "http://a.test:8080"))
        self.assertEqual(response.header("access-control-allow-origin"), "http://a.test:8080")
        self.assertEqual(response.header("access-control-allow-credentials"), "true")
        self.assertEqual(response.header("vary"), "Origin")

    def test_privateNetwork(self) -> None:
        """
        C{private_network} answers a private network request.
        """
        gateway = harness(private_network=True)
        asked = self.successResultOf(preflight(gateway, Access_Control_Request_Private_Network="true"))
        self.assertEqual(asked.header("access-control-allow-private-network"), "true")
        unasked = self.successResultOf(preflight(gateway))
        self.assertIsNone(unasked.header("access-control-allow-private-network"))
        off = self.successResultOf(preflight(harness(), Access_Control_Request_Private_Network="true"))
        self.assertIsNone(off.header("access-control-allow-private-network"))

    def test_preflightContinue(self) -> None:
        """
        With C{preflight_continue} the preflight goes to the service, and
        the plugin adds nothing to its answer.
        """
        gateway = harness(preflight_continue=True)
        response = self.successResultOf(preflight(gateway))
        self.assertEqual(response.status, 200)
        self.assertEqual(gateway.upstream_requests[0].method, "OPTIONS")
        self.assertIsNone(response.header("access-control-allow-origin"))
        self.assertIsNone(response.header("access-control-allow-methods"))

    def test_optionsWithoutRequestMethod(self) -> None:
        """
        OPTIONS without C{Access-Control-Request-Method} is not a preflight:
        it goes to the service, and gets the normal response headers.
        """
        gateway = harness()
        response = self.successResultOf(gateway.request("OPTIONS", "/", headers={"Origin": "http://a.test"}))
        self.assertEqual(len(gateway.upstream_requests), 1)
        self.assertEqual(response.header("access-control-allow-origin"), "*")
        self.assertIsNone(response.header("access-control-allow-methods"))

    def test_optionsWithoutOrigin(self) -> None:
        """
        OPTIONS without Origin is not a preflight either.
        """
        gateway = harness()
        self.successResultOf(gateway.request("OPTIONS", "/", headers={"Access-Control-Request-Method": "GET"}))
        self.assertEqual(len(gateway.upstream_requests), 1)

    def test_beforeAuthentication(self) -> None:
        """
        Its priority runs it before authentication plugins (here one of
        priority 1250 that refuses everything), so preflights succeed.
        """

        def refuse(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(401, {"message": "Unauthorized"})

        gateway = GatewayHarness([Cors(), make_plugin("key-auth-like", 1250, access=refuse)],
                                 configs=[(NAME, {}), ("key-auth-like", {})])
        self.assertEqual(self.successResultOf(preflight(gateway)).status, 200)
        refused = self.successResultOf(gateway.request("GET", "/", headers={"Origin": "http://a.test"}))
        self.assertEqual((refused.status, refused.header("access-control-allow-origin")), (401, "*"))


class CorsResponseTests(SynchronousTestCase):
    """
    Other responses get the CORS headers in C{header_filter}.
    """

    def get(self, gateway: GatewayHarness, origin: str | None = "http://example.test") -> Any:
        headers = {"Origin": origin} if origin is not None else {}
        return self.successResultOf(gateway.request("GET", "/", headers=headers))

    def test_defaults(self) -> None:
        """
        By default C{*}, and nothing else.
        """
        response = self.get(harness())
        self.assertEqual((response.status, response.header("access-control-allow-origin")), (200, "*"))
        for name in ("allow-methods", "allow-headers", "expose-headers", "allow-credentials", "max-age"):
            self.assertIsNone(response.header(f"access-control-{name}"), name)
        self.assertIsNone(response.header("vary"))

    def test_options(self) -> None:
        """
        Exposed headers and credentials are sent; preflight-only headers are not.
        """
        gateway = harness(origins=["http://example.test"], exposed_headers=["x-a", "x-b"], credentials=True,
                          headers=["x-h"], max_age=10)
        response = self.get(gateway)
        self.assertEqual(response.header("access-control-allow-origin"), "http://example.test")
        self.assertEqual(response.header("access-control-expose-headers"), "x-a,x-b")
        self.assertEqual(response.header("access-control-allow-credentials"), "true")
        self.assertIsNone(response.header("access-control-allow-headers"))
        self.assertIsNone(response.header("access-control-max-age"))

    def test_origins(self) -> None:
        """
        Origins are matched as for preflights.
        """
        for origins, origin, expected in ORIGIN_CASES:
            response = self.get(harness(origins=origins), origin)
            self.assertEqual((origins, origin, response.header("access-control-allow-origin")),
                             (origins, origin, expected),
                             f"row origins={origins!r} origin={origin!r} expected={expected!r}")

    def test_varyAdded(self) -> None:
        """
        Vary: Origin is added to the service's Vary, not in its place.
        """

        def upstream(request: Any) -> UpstreamAnswer:
            return UpstreamAnswer(200, {"Vary": "Accept-Encoding"}, b"")

        response = self.get(harness(upstream, origins=["a\\.test"]), "http://a.test")
        self.assertEqual(response.headers["vary"], ["Accept-Encoding", "Origin"])

    def test_serviceHeaderRemovedWithoutMatch(self) -> None:
        """
        The service's own Access-Control-Allow-Origin is removed when the
        origin is not allowed, and replaced when it is.
        """

        def upstream(request: Any) -> UpstreamAnswer:
            return UpstreamAnswer(200, {"Access-Control-Allow-Origin": "*"}, b"")

        gateway = harness(upstream, origins=["http://a.test", "http://b.test"])
        self.assertIsNone(self.get(gateway, "http://evil.test").header("access-control-allow-origin"))
        self.assertEqual(self.get(gateway, "http://b.test").headers["access-control-allow-origin"],
                         ["http://b.test"])

    def test_credentialsWithAllOrigins(self) -> None:
        """
        Credentials with every origin allowed echo the origin, with Vary.
        """
        response = self.get(harness(credentials=True), "http://x.test")
        self.assertEqual(response.header("access-control-allow-origin"), "http://x.test")
        self.assertEqual(response.header("access-control-allow-credentials"), "true")
        self.assertEqual(response.header("vary"), "Origin")

    def test_credentialsWithoutOrigin(self) -> None:
        """
        Without an Origin, credentials with every origin allowed add nothing
        but C{*}.
        """
        response = self.get(harness(credentials=True), None)
        self.assertEqual(response.header("access-control-allow-origin"), "*")
        self.assertIsNone(response.header("access-control-allow-credentials"))

    def test_originAbsent(self) -> None:
        """
        Without Origin the headers are still added, unless
        C{allow_origin_absent} is false.
        """
        self.assertEqual(self.get(harness(), None).header("access-control-allow-origin"), "*")
        off = self.get(harness(allow_origin_absent=False, exposed_headers=["x-a"]), None)
        self.assertIsNone(off.header("access-control-allow-origin"))
        self.assertIsNone(off.header("access-control-expose-headers"))

    def test_originAbsentWithRegexes(self) -> None:
        """
        Without Origin, configured regexes cannot match: no header.
        """
        self.assertIsNone(self.get(harness(origins=["a\\.test", "b\\.test"]), None)
                          .header("access-control-allow-origin"))

    def test_errorResponses(self) -> None:
        """
        Responses the gateway makes itself (here: the service is down) get
        the headers too.
        """

        def upstream(request: Any) -> UpstreamAnswer:
            raise ConnectionRefusedError()

        response = self.get(harness(upstream))
        self.assertEqual((response.status, response.header("access-control-allow-origin")), (502, "*"))


class NormalizeOriginTests(SynchronousTestCase):
    """
    L{normalize_origin} gives C{(scheme://host[:port], host)}.
    """

    def test_defaultPorts(self) -> None:
        """
        The scheme's default port is dropped; others are kept.
        """
        self.assertEqual(normalize_origin("http://a.test:80"), ("http://a.test", "a.test"))
        self.assertEqual(normalize_origin("https://a.test:443"), ("https://a.test", "a.test"))
        self.assertEqual(normalize_origin("http://a.test:443"), ("http://a.test:443", "a.test"))

    def test_pathAndUser(self) -> None:
        """
        A path and user information are not part of the origin.
        """
        self.assertEqual(normalize_origin("http://u:p@a.test:81/x/y"), ("http://a.test:81", "a.test"))

    def test_ipv6(self) -> None:
        """
        A bracketed IPv6 host keeps its brackets.
        """
        self.assertEqual(normalize_origin("http://[::1]:8080"), ("http://[::1]:8080", "[::1]"))
        self.assertEqual(normalize_origin("http://[::1]"), ("http://[::1]", "[::1]"))

    def test_noHost(self) -> None:
        """
        Without C{//} there is no host: the value is used as it is.
        """
        self.assertEqual(normalize_origin("a.test"), ("a.test", "a.test"))
        self.assertEqual(normalize_origin("null"), ("null", "null"))
        self.assertEqual(normalize_origin("http://"), ("http://", "http://"))


class CorsSchemaTests(SynchronousTestCase):
    """
    cors's config schema.
    """

    schema = Cors.config_schema

    def violation(self, config: dict) -> dict:
        return self.assertRaises(SchemaViolation, self.schema.validate, config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults.
        """
        self.assertEqual(self.schema.validate({}), {
            "origins": None, "headers": None, "exposed_headers": None, "methods": list(ALL_METHODS.split(",")),
            "max_age": None, "credentials": False, "private_network": False, "preflight_continue": False,
            "allow_origin_absent": True})

    def test_origins(self) -> None:
        """
        Origins are C{*} or valid regexes.
        """
        self.assertEqual(self.schema.validate({"origins": ["*", "a.test", "(.*\\.)?a\\.test"]})["origins"],
                         ["*", "a.test", "(.*\\.)?a\\.test"])
        self.assertEqual(self.violation({"origins": ["a.test", "*.a.test"]}),
                         {"origins": {"2": "'*.a.test' is not a valid regex"}})
        self.assertEqual(self.violation({"origins": "a.test"}), {"origins": "expected an array"})

    def test_stringArrays(self) -> None:
        """
        C{headers} and C{exposed_headers} are arrays of strings.
        """
        for field in ("headers", "exposed_headers"):
            self.assertEqual(self.violation({field: [1]}), {field: {"1": "expected a string"}}, f"row field={field!r}")
            self.assertEqual(self.violation({field: "x"}), {field: "expected an array"}, f"row field={field!r}")

    def test_methods(self) -> None:
        """
        C{methods} are among the nine HTTP methods.
        """
        self.assertEqual(self.violation({"methods": ["GET", "get"]}),
                         {"methods": {"2": "expected one of: " + ", ".join(ALL_METHODS.split(","))}})

    def test_maxAge(self) -> None:
        """
        C{max_age} is a number.
        """
        self.assertEqual(self.violation({"max_age": "10"}), {"max_age": "expected a number"})

    def test_booleans(self) -> None:
        """
        The four flags are booleans, never null.
        """
        for field in ("credentials", "private_network", "preflight_continue", "allow_origin_absent"):
            self.assertEqual(self.violation({field: "true"}), {field: "expected a boolean"}, f"row field={field!r}")
            self.assertEqual(self.violation({field: None}), {field: "required field missing"}, f"row field={field!r}")
