"""
Tests for what a request's context holds across plugins and phases, through
L{echogate.testing.GatewayHarness}: the consumer a plugin identified (and
the configs scoped to it), C{ctx.plugin} and C{ctx.shared}.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from echogate.schema import Record
from echogate.schema.fields import String
from echogate.testing import ROUTE_ID, GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from tests.proxy.test_plugin_contract import harness_of, make_plugin


class ConsumerScopeTests(SynchronousTestCase):
    """
    Consumer-scoped configs apply once a plugin has identified the consumer
    with C{ctx.authenticate}.
    """

    CONSUMER = "00000000-0000-4000-8000-0000000000c1"

    def setUp(self) -> None:
        self.logged: list = []
        consumer_id = self.CONSUMER

        def authenticate(self_: Any, ctx: Any, config: Any) -> None:
            if ctx.request.get_header("apikey") == "secret":
                ctx.authenticate({"id": consumer_id, "username": "alice"}, {"id": "credential-1"})

        def tag(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Tag", config["value"])
            if ctx.consumer is not None:
                ctx.response.set_header("X-Consumer", ctx.consumer["username"])
                ctx.response.set_header("X-Credential", ctx.credential["id"])

        def log(self_: Any, ctx: Any, config: Any) -> None:
            self.logged.append(config["value"])

        self.auth = make_plugin("auth", 1000, access=authenticate)
        self.tagger = make_plugin("tagger", 10, Record({"value": String(required=True)}),
                                  header_filter=tag, log=log)

    def harness(self, *configs: tuple) -> GatewayHarness:
        return GatewayHarness([self.auth, self.tagger], configs=[("auth", {}), *configs])

    def test_consumerConfig(self) -> None:
        """
        An authenticated request gets the consumer's config in every later
        phase.
        """
        harness = self.harness(("tagger", {"value": "global"}),
                               ("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        response = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(response.header("x-tag"), "alice's")
        self.assertEqual(response.header("x-consumer"), "alice")
        self.assertEqual(response.header("x-credential"), "credential-1")
        self.assertEqual(self.logged, ["alice's"])

    def test_anonymous(self) -> None:
        """
        Without a consumer, the consumer's config does not apply.
        """
        harness = self.harness(("tagger", {"value": "global"}),
                               ("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.header("x-tag"), "global")
        self.assertIsNone(response.header("x-consumer"))
        self.assertEqual(self.logged, ["global"])

    def test_consumerOnly(self) -> None:
        """
        A plugin configured only for a consumer runs only for that
        consumer's requests.
        """
        harness = self.harness(("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        anonymous = self.successResultOf(harness.request("GET", "/"))
        self.assertIsNone(anonymous.header("x-tag"))
        alice = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(alice.header("x-tag"), "alice's")
        self.assertEqual(self.logged, ["alice's"])

    def test_consumerAndRoute(self) -> None:
        """
        A route+consumer config wins over a consumer config.
        """
        harness = self.harness(("tagger", {"value": "consumer"}, {"consumer": self.CONSUMER}),
                               ("tagger", {"value": "route+consumer"},
                                {"consumer": self.CONSUMER, "route": ROUTE_ID}),
                               ("tagger", {"value": "route"}, {"route": ROUTE_ID}))
        response = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(response.header("x-tag"), "route+consumer")
        anonymous = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(anonymous.header("x-tag"), "route")


class RequestStateTests(SynchronousTestCase):
    """
    C{ctx.plugin} belongs to one plugin and one request; C{ctx.shared} to
    one request, for every plugin.
    """

    def test_pluginStatePerPlugin(self) -> None:
        """
        Each plugin sees only its own C{ctx.plugin}.
        """
        seen = []

        def writer(self: Any, ctx: Any, config: Any) -> None:
            ctx.plugin["value"] = "writer's"

        def reader(self: Any, ctx: Any, config: Any) -> None:
            seen.append(dict(ctx.plugin))

        harness = harness_of(make_plugin("writer", 20, access=writer), make_plugin("reader", 10, access=reader))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [{}])

    def test_pluginStateAcrossPhases(self) -> None:
        """
        A plugin's C{ctx.plugin} is the same from C{rewrite} to C{log}.
        """
        seen = []

        def rewrite(self: Any, ctx: Any, config: Any) -> None:
            ctx.plugin["phases"] = ["rewrite"]

        def add(phase: str) -> Callable:
            def run(self: Any, ctx: Any, config: Any, *chunk: bytes) -> None:
                ctx.plugin["phases"].append(phase)

            return run

        def log(self: Any, ctx: Any, config: Any) -> None:
            seen.append(ctx.plugin["phases"])

        harness = harness_of(make_plugin("p", rewrite=rewrite, access=add("access"),
                                         header_filter=add("header_filter"), body_filter=add("body_filter"),
                                         log=log))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [["rewrite", "access", "header_filter", "body_filter", "body_filter"]])

    def test_pluginStatePerRequest(self) -> None:
        """
        Every request starts with an empty C{ctx.plugin}, also while other
        requests are in flight.
        """
        seen = []
        gates: list[Deferred] = []

        def access(self: Any, ctx: Any, config: Any) -> None:
            seen.append(dict(ctx.plugin))
            ctx.plugin["path"] = ctx.request.path

        def header_filter(self: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Path", ctx.plugin["path"])

        def upstream(request: UpstreamRequestSeen) -> Deferred:
            gates.append(Deferred())
            return gates[-1].addCallback(lambda _: UpstreamAnswer())

        harness = harness_of(make_plugin("p", access=access, header_filter=header_filter), upstream=upstream)
        first = harness.request("GET", "/first")
        second = harness.request("GET", "/second")
        for gate in reversed(gates):
            gate.callback(None)
        self.assertEqual(seen, [{}, {}])
        self.assertEqual(self.successResultOf(first).header("x-path"), "/first")
        self.assertEqual(self.successResultOf(second).header("x-path"), "/second")

    def test_shared(self) -> None:
        """
        C{ctx.shared} is one dict for every plugin of a request, and a new
        one for each request.
        """
        seen = []

        def writer(self: Any, ctx: Any, config: Any) -> None:
            seen.append(("writer", dict(ctx.shared)))
            ctx.shared["user"] = ctx.request.get_header("X-User")

        def reader(self: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Seen-User", ctx.shared["user"])

        harness = harness_of(make_plugin("writer", 20, access=writer),
                             make_plugin("reader", 10, header_filter=reader))
        one = self.successResultOf(harness.request("GET", "/", headers={"X-User": "ann"}))
        two = self.successResultOf(harness.request("GET", "/", headers={"X-User": "bob"}))
        self.assertEqual((one.header("x-seen-user"), two.header("x-seen-user")), ("ann", "bob"))
        self.assertEqual(seen, [("writer", {}), ("writer", {})])
