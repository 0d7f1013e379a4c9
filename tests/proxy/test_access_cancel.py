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
