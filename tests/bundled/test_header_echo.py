"""
Tests for the bundled header-echo plugin (L{echogate.bundled.header_echo}),
including the property the Kong tutorial's version lacks: with many
requests in flight, every response echoes its own request's value.
"""
from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.header_echo import HeaderEcho
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from tests.proxy.test_plugin_contract import make_plugin

IN_FLIGHT = 500


class HeaderEchoTests(SynchronousTestCase):
    """
    header-echo copies a request header into a response header.
    """

    def request(self, config: dict | None = None, headers: dict[str, str] | None = None,
                harness: GatewayHarness | None = None) -> Any:
        harness = harness or GatewayHarness([HeaderEcho()], configs=[("header-echo", config or {})])
        return self.successResultOf(harness.request("GET", "/", headers=headers))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin}, with Kong's tutorial name and a
        priority.
        """
        echo = HeaderEcho()
        self.assertTrue(verifyObject(IGatewayPlugin, echo))
        self.assertEqual((echo.name, echo.version, echo.priority), ("header-echo", "1.0.0", 1000))

    def test_echo(self) -> None:
        """
        X-Request-Echo comes back as X-Response-Echo.
        """
        response = self.request(headers={"X-Request-Echo": "Hello, world"})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["x-response-echo"], ["Hello, world"])

    def test_absent(self) -> None:
        """
        No request header, no response header.
        """
        response = self.request()
        self.assertEqual(response.status, 200)
        self.assertNotIn("x-response-echo", response.headers)

    def test_notForwardedAsEcho(self) -> None:
        """
        The request header still goes upstream; the response header comes
        only from the plugin.
        """
        harness = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})])
        self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "v"}))
        self.assertEqual(harness.upstream_requests[0].header("x-request-echo"), "v")
        self.assertIsNone(harness.upstream_requests[0].header("x-response-echo"))

    def test_customNames(self) -> None:
        """
        The header names come from the config.
        """
        config = {"requestHeader": "X-In", "responseHeader": "X-Out"}
        response = self.request(config, {"X-In": "custom", "X-Request-Echo": "default"})
        self.assertEqual(response.header("x-out"), "custom")
        self.assertNotIn("x-response-echo", response.headers)

    def test_caseInsensitive(self) -> None:
        """
        The request header is found whatever its case.
        """
        response = self.request({"requestHeader": "x-in"}, {"X-IN": "v"})
        self.assertEqual(response.header("X-Response-Echo"), "v")

    def test_onlyFirstValue(self) -> None:
        """
        The first value of the request header is echoed.
        """
        harness = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})])
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "a, b"}))
        self.assertEqual(response.headers["x-response-echo"], ["a, b"])

    def test_replacesUpstreamHeader(self) -> None:
        """
        An upstream response header of the same name is replaced.
        """

        def upstream(request: UpstreamRequestSeen) -> UpstreamAnswer:
            return UpstreamAnswer(200, {"X-Response-Echo": "from upstream"}, b"")

        harness = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})], upstream=upstream)
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "mine"}))
        self.assertEqual(response.headers["x-response-echo"], ["mine"])

    def test_echoOnShortCircuit(self) -> None:
        """
        When a later plugin answers the request itself, the echo is still
        added.
        """

        def refuse(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(403, {"message": "no"})

        harness = GatewayHarness([HeaderEcho(), make_plugin("refuser", 10, access=refuse)],
                                 configs=[("header-echo", {}), ("refuser", {})])
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "v"}))
        self.assertEqual((response.status, response.header("x-response-echo")), (403, "v"))


class HeaderEchoSchemaTests(SynchronousTestCase):
    """
    header-echo's config schema.
    """

    schema = HeaderEcho.config_schema

    def violation(self, config: dict) -> SchemaViolation:
        return self.assertRaises(SchemaViolation, self.schema.validate, config)

    def test_defaults(self) -> None:
        """
        An empty config gets Kong's tutorial defaults.
        """
        self.assertEqual(self.schema.validate({}),
                         {"requestHeader": "X-Request-Echo", "responseHeader": "X-Response-Echo"})

    def test_partialDefaults(self) -> None:
        """
        A field left out gets its default.
        """
        self.assertEqual(self.schema.validate({"responseHeader": "X-Out"}),
                         {"requestHeader": "X-Request-Echo", "responseHeader": "X-Out"})

    def test_empty(self) -> None:
        """
        An empty header name is refused.
        """
        error = self.violation({"requestHeader": ""})
        self.assertEqual(error.fields, {"requestHeader": "length must be at least 1"})
        self.assertEqual(error.message, "schema violation (requestHeader: length must be at least 1)")

    def test_notAString(self) -> None:
        """
        A header name must be a string.
        """
        self.assertEqual(self.violation({"responseHeader": 5}).fields, {"responseHeader": "expected a string"})

    def test_null(self) -> None:
        """
        Null is refused: the fields are required.
        """
        self.assertEqual(self.violation({"requestHeader": None}).fields,
                         {"requestHeader": "required field missing"})

    def test_unknownField(self) -> None:
        """
        Unknown fields are refused, every bad field listed at once.
        """
        error = self.violation({"requestheader": "X", "responseHeader": ""})
        self.assertEqual(error.fields, {"requestheader": "unknown field",
                                        "responseHeader": "length must be at least 1"})
        self.assertEqual(error.status, 400)

    def test_harnessValidates(self) -> None:
        """
        The harness validates configs as the Admin API does.
        """
        self.assertRaises(SchemaViolation, GatewayHarness, [HeaderEcho()],
                          configs=[("header-echo", {"requestHeader": ""})])

    def test_describe(self) -> None:
        """
        The schema describes itself for C{GET /schemas/plugins/header-echo}.
        """
        fields = self.schema.describe()["fields"]
        self.assertEqual([list(f) for f in fields], [["requestHeader"], ["responseHeader"]])
        self.assertEqual(fields[0]["requestHeader"]["default"], "X-Request-Echo")
        self.assertEqual(fields[0]["requestHeader"]["type"], "string")
        self.assertTrue(fields[0]["requestHeader"]["required"])


def echo_under_load(case: SynchronousTestCase, plugin: Any, seed: int) -> list[tuple[str, str | None]]:
    """
    Send L{IN_FLIGHT} requests, each with its own X-Request-Echo, while the
    upstream holds every answer; release the answers in a shuffled order.

    @return: (sent value, echoed value) for every request.
    """
    pending: list[Deferred] = []

    def upstream(request: UpstreamRequestSeen) -> Deferred:
        d: Deferred = Deferred()
        pending.append(d)
        return d

    harness = GatewayHarness([plugin], configs=[(plugin.name, {})], upstream=upstream)
    values = [f"request-{i}" for i in range(IN_FLIGHT)]
    responses = [harness.request("GET", f"/{i}", headers={"X-Request-Echo": v}) for i, v in enumerate(values)]
    case.assertEqual(len(pending), IN_FLIGHT)
    for response in responses:
        case.assertNoResult(response)
    order = list(range(IN_FLIGHT))
    random.Random(seed).shuffle(order)
    for index in order:
        pending[index].callback(UpstreamAnswer(200, {}, b"%d" % index))
    results = []
    for value, response in zip(values, responses):
        got = case.successResultOf(response)
        results.append((value, got.header("x-response-echo")))
    return results


class ConcurrencyTests(SynchronousTestCase):
    """
    With hundreds of requests in flight, answered in any order, each
    response carries its own request's value.
    """

    def test_ownValue(self) -> None:
        """
        Every one of L{IN_FLIGHT} concurrent responses echoes its own
        request's value.
        """
        for seed in (0, 1, 2):
            results = echo_under_load(self, HeaderEcho(), seed)
            mismatched = [(sent, got) for sent, got in results if sent != got]
            self.assertEqual(mismatched, [], f"seed {seed}")

    def test_classicBugCaught(self) -> None:
        """
        The same check catches the tutorial's bug: a plugin that keeps the
        value on itself (forced past the immutability guard here) echoes
        other requests' values.
        """

        class TutorialEcho(HeaderEcho):
            name = "tutorial-echo"

            def access(self, ctx: Any, config: Any) -> None:
                object.__setattr__(self, "echo_string", ctx.request.get_header(config["requestHeader"]))

            def header_filter(self, ctx: Any, config: Any) -> None:
                ctx.response.set_header(config["responseHeader"], self.echo_string)

        results = echo_under_load(self, TutorialEcho(), 0)
        mismatched = [(sent, got) for sent, got in results if sent != got]
        self.assertGreater(len(mismatched), IN_FLIGHT // 2)
