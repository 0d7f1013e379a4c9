"""
A client that leaves while a plugin's C{access} waits cancels what it
waits on (a queued password check, a round trip to a rate-limit store),
quietly.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.proxy.test_plugin_contract import RawExchange, harness_of, recording_plugin


class AccessCancelledTests(SynchronousTestCase):
    """
    The access phase's Deferred is cancelled when the client goes away.
    """

    def test_cancelled(self) -> None:
        """
        The waiting Deferred's canceller runs, nothing is logged as an
        error, the upstream is not called and every plugin's log runs once.
        """
        events: list = []
        cancelled: list[Deferred] = []
        gate: Deferred = Deferred(cancelled.append)

        def access(self_: Any, ctx: Any, config: Any) -> Deferred:
            return gate

        harness = harness_of(recording_plugin("slow", events, 20, access=access),
                             recording_plugin("other", events, 10))
        exchange = RawExchange(harness, "GET", "/")
        exchange.close()
        self.assertEqual(cancelled, [gate])
        self.assertEqual(self.flushLoggedErrors(CancelledError), [])
        self.assertEqual(harness.upstream_requests, [])
        self.assertEqual([n for n, p, *_ in events if p == "log"], ["slow", "other"])

    def test_failureAfterLeavingReported(self) -> None:
        """
        A phase that fails for another reason after the client left is
        still reported.
        """
        events: list = []
        gate: Deferred = Deferred(lambda d: d.errback(ValueError("broken")))

        def access(self_: Any, ctx: Any, config: Any) -> Deferred:
            return gate

        harness = harness_of(recording_plugin("slow", events, 20, access=access))
        exchange = RawExchange(harness, "GET", "/")
        exchange.close()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ReadsBodyDeclarationTests(SynchronousTestCase):
    """
    How the gateway reads a plugin's C{reads_body} (L{_reads_body}).
    """

    def step(self, plugin: Any, config: Any = None, by_consumer: bool = False) -> Any:
        from echogate.proxy.plan import PluginEntry, Step

        entry = PluginEntry(plugin=plugin, id="p", config=config or {}, route=None, service=None, consumer=None)
        return Step(name="p", plugin=plugin, entry=entry, by_consumer=by_consumer, rewrite=None, access=None,
                    header_filter=None, body_filter=None, log=None)

    def test_undeclaredObjectReads(self) -> None:
        """
        A plugin object that is not a GatewayPlugin and says nothing is
        taken to read the body (as before bodies came after access).
        """
        from echogate.proxy.admitting import _reads_body

        self.assertTrue(_reads_body(self.step(object()), None))

    def test_gatewayPluginDoesNot(self) -> None:
        """
        A GatewayPlugin's default is not to read it.
        """
        from echogate.plugin import GatewayPlugin
        from echogate.proxy.admitting import _reads_body

        self.assertFalse(_reads_body(self.step(GatewayPlugin()), None))

    def test_methodPerConfig(self) -> None:
        """
        A method is asked with the config (and a consumer-scoped step,
        whose config is not known yet, is taken to read it).
        """
        from echogate.proxy.admitting import _reads_body

        class Plugin:
            def reads_body(self, config: Any, request: Any) -> bool:
                return config["read"]

        class Context:
            request = None

        self.assertTrue(_reads_body(self.step(Plugin(), {"read": True}), Context()))
        self.assertFalse(_reads_body(self.step(Plugin(), {"read": False}), Context()))
        self.assertTrue(_reads_body(self.step(Plugin(), {"read": False}, by_consumer=True), Context()))
