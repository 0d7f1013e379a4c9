"""
The plugin contract, through L{echogate.testing.GatewayHarness}, when a
plugin fails: an exception in any phase, synchronous or not, and a phase
that tries to keep state on the shared plugin object (see
L{tests.proxy.test_plugin_contract}).
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from echogate.plugin import ImmutablePluginError
from echogate.testing import GatewayHarness
from tests.proxy.test_plugin_contract import (
    UNEXPECTED,
    ChunkedUpstream,
    Explosion,
    RawExchange,
    capture_log,
    harness_of,
    make_plugin,
    recording_plugin,
    with_upstream,
)


def plugin_failures(events: list[dict]) -> list[dict]:
    """
    The events that report a plugin's failure.
    """
    return [e for e in events if e.get("log_failure") is not None and e.get("plugin") is not None]


def explode(self: Any, ctx: Any, config: Any, *chunk: bytes) -> None:
    """
    A phase that raises when the request asks for it.
    """
    if ctx.request.get_header("X-Explode"):
        raise Explosion("on purpose")


class PhaseErrorTests(SynchronousTestCase):
    """
    An exception in a phase answers 500 (or cuts the connection once the
    response has started), is logged with the plugin's name and
    traceback, and leaves other requests alone.
    """

    def request(self, phase: str, harness: GatewayHarness | None = None) -> Any:
        self.log = capture_log(self)
        self.events: list = []
        if harness is None:
            harness = harness_of(recording_plugin("fragile", self.events, 10, **{phase: explode}),
                                 recording_plugin("other", self.events, 5))
        self.harness = harness
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Explode": "1"}))
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)
        return response

    def assertLogged(self, phase: str) -> None:
        (event,) = plugin_failures(self.log)
        self.assertEqual((event["plugin"], event["phase"]), ("fragile", phase))
        self.assertIsInstance(event["log_failure"].value, Explosion)
        self.assertIn("in explode", event["log_failure"].getTraceback())
        from twisted.logger import formatEvent

        self.assertIn("fragile", formatEvent(event))

    def assertOthersUnaffected(self) -> None:
        response = self.successResultOf(self.harness.request("GET", "/"))
        self.assertEqual(response.status, 200)

    def test_rewrite(self) -> None:
        """
        C{rewrite} raising: 500, the upstream is not called, C{log} runs.
        """
        response = self.request("rewrite")
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(self.harness.upstream_requests, [])
        self.assertIn(("other", "log"), self.events)
        self.assertLogged("rewrite")
        self.assertOthersUnaffected()

    def test_access(self) -> None:
        """
        C{access} raising: 500, the upstream is not called, the remaining
        C{access} handlers are skipped, C{log} runs.
        """
        response = self.request("access")
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(self.harness.upstream_requests, [])
        self.assertNotIn(("other", "access"), self.events)
        self.assertIn(("other", "log"), self.events)
        self.assertLogged("access")
        self.assertOthersUnaffected()

    def test_headerFilter(self) -> None:
        """
        C{header_filter} raising: 500 instead of the upstream's answer.
        """
        response = self.request("header_filter")
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.harness.upstream_requests), 1)
        self.assertIn(("other", "log"), self.events)
        self.assertLogged("header_filter")
        self.assertOthersUnaffected()

    def test_bodyFilterOnExit(self) -> None:
        """
        C{body_filter} raising on a plugin's own answer (nothing sent yet):
        500.
        """

        def answer(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(200, "fine")

        events: list = []
        harness = harness_of(recording_plugin("fragile", events, 10, body_filter=explode),
                             recording_plugin("answering", events, 5, access=answer))
        response = self.request("body_filter", harness)
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertLogged("body_filter")
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).body, b"fine")

    def test_bodyFilterWhileStreaming(self) -> None:
        """
        C{body_filter} raising while the upstream's body streams: the status
        and headers are committed, so the connection is cut and no complete
        response reaches the client; the error is logged.
        """
        log = capture_log(self)
        events: list = []
        harness = with_upstream(harness_of(recording_plugin("fragile", events, body_filter=explode)),
                                ChunkedUpstream([b"a", b"b"]))
        exchange = RawExchange(harness, "GET", "/", {"X-Explode": "1"})
        self.addCleanup(exchange.close)
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)
        self.assertTrue(exchange.transport.disconnecting)
        self.assertNotIn(b"HTTP/1.1 500", exchange.transport.value())
        self.log, self.harness = log, harness
        self.assertLogged("body_filter")
        self.assertOthersUnaffected()

    def test_log(self) -> None:
        """
        C{log} raising: the client already has its answer; the error is
        logged and the other plugins' C{log} still ran before it.
        """
        response = self.request("log")
        self.assertEqual(response.status, 200)
        self.assertLogged("log")
        self.assertOthersUnaffected()

    def test_asynchronousFailure(self) -> None:
        """
        A phase whose Deferred fails is handled like one that raises.
        """
        gate: Deferred = Deferred()

        def access(self_: Any, ctx: Any, config: Any) -> Deferred:
            return gate

        log = capture_log(self)
        harness = harness_of(make_plugin("fragile", access=access))
        pending = harness.request("GET", "/")
        self.assertNoResult(pending)
        gate.errback(Explosion("later"))
        response = self.successResultOf(pending)
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)
        (event,) = plugin_failures(log)
        self.assertEqual((event["plugin"], event["phase"]), ("fragile", "access"))

    def test_coroutineFailure(self) -> None:
        """
        An C{async def} phase that raises after awaiting is handled like
        one that raises.
        """
        gate: Deferred = Deferred()

        async def header_filter(self_: Any, ctx: Any, config: Any) -> None:
            await gate
            raise Explosion("after await")

        harness = harness_of(make_plugin("fragile", header_filter=header_filter))
        pending = harness.request("GET", "/")
        gate.callback(None)
        response = self.successResultOf(pending)
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)


class ImmutabilityTests(SynchronousTestCase):
    """
    A phase that tries to keep state on the shared plugin object fails
    loudly.
    """

    def check(self, **phases: Callable) -> None:
        log = capture_log(self)
        harness = harness_of(make_plugin("classic-bug", **phases))
        response = self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "hi"}))
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.flushLoggedErrors(ImmutablePluginError)), 1)
        (event,) = plugin_failures(log)
        self.assertEqual(event["plugin"], "classic-bug")
        self.assertIn("plugin 'classic-bug' is shared by every request", str(event["log_failure"].value))

    def test_assign(self) -> None:
        """
        Assigning an attribute on C{self} in C{access}: 500, logged.
        """

        def access(self: Any, ctx: Any, config: Any) -> None:
            self.echo_string = ctx.request.get_header("X-Request-Echo")

        self.check(access=access)

    def test_assignExisting(self) -> None:
        """
        Replacing one of the plugin's own attributes fails as well.
        """

        def header_filter(self: Any, ctx: Any, config: Any) -> None:
            self.priority = 1

        self.check(header_filter=header_filter)

    def test_delete(self) -> None:
        """
        Deleting an attribute fails as well.
        """

        def access(self: Any, ctx: Any, config: Any) -> None:
            del self.version

        self.check(access=access)
