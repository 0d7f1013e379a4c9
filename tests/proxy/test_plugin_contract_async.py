"""
The plugin contract, through L{echogate.testing.GatewayHarness}, for
asynchronous phases: a phase that returns a Deferred or is C{async def}
holds the request and the next plugin, and a client that goes away stops
the request (see L{tests.proxy.test_plugin_contract}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from echogate.testing import UpstreamRequestSeen
from tests.proxy.test_plugin_contract import (
    ChunkedUpstream,
    RawExchange,
    harness_of,
    make_plugin,
    recording_plugin,
    with_upstream,
)


class AsyncPhaseTests(SynchronousTestCase):
    """
    Every phase may return a Deferred or be C{async def}; the request waits
    for it, and the next plugin's phase runs only after it.
    """

    def check(self, phase: str, style: str) -> None:
        events: list = []
        gate: Deferred = Deferred()

        if style == "deferred":
            def waiting(self_: Any, ctx: Any, config: Any, *chunk: bytes) -> Deferred:
                events.append(("slow", phase))
                return gate.addCallback(lambda _: events.append(("slow", phase + " done")))
        else:
            async def waiting(self_: Any, ctx: Any, config: Any, *chunk: bytes) -> None:
                events.append(("slow", phase))
                await gate
                events.append(("slow", phase + " done"))

        harness = harness_of(make_plugin("slow", 20, **{phase: waiting}),
                             recording_plugin("next", events, 10))
        pending = harness.request("GET", "/")
        if phase != "log":
            self.assertNoResult(pending)
        names = [e[:2] for e in events]
        self.assertIn(("slow", phase), names)
        self.assertNotIn(("next", phase), names)
        gate.callback(None)
        response = self.successResultOf(pending)
        self.assertEqual(response.status, 200)
        names = [e[:2] for e in events]
        self.assertLess(names.index(("slow", phase + " done")), names.index(("next", phase)))
        self.assertIn(("next", "log"), names)

    def test_rewriteDeferred(self) -> None:
        """
        C{rewrite} returning a Deferred.
        """
        self.check("rewrite", "deferred")

    def test_rewriteCoroutine(self) -> None:
        """
        C{rewrite} as C{async def}.
        """
        self.check("rewrite", "coroutine")

    def test_accessDeferred(self) -> None:
        """
        C{access} returning a Deferred.
        """
        self.check("access", "deferred")

    def test_accessCoroutine(self) -> None:
        """
        C{access} as C{async def}.
        """
        self.check("access", "coroutine")

    def test_headerFilterDeferred(self) -> None:
        """
        C{header_filter} returning a Deferred.
        """
        self.check("header_filter", "deferred")

    def test_headerFilterCoroutine(self) -> None:
        """
        C{header_filter} as C{async def}.
        """
        self.check("header_filter", "coroutine")

    def test_bodyFilterDeferred(self) -> None:
        """
        C{body_filter} returning a Deferred (of C{None}: keep the chunk).
        """
        self.check("body_filter", "deferred")

    def test_bodyFilterCoroutine(self) -> None:
        """
        C{body_filter} as C{async def}.
        """
        self.check("body_filter", "coroutine")

    def test_logDeferred(self) -> None:
        """
        C{log} returning a Deferred: the response is already sent; the next
        plugin's C{log} waits for it.
        """
        self.check("log", "deferred")

    def test_logCoroutine(self) -> None:
        """
        C{log} as C{async def}.
        """
        self.check("log", "coroutine")

    def test_bodyFilterResult(self) -> None:
        """
        What an asynchronous C{body_filter} fires with is sent; it is called
        for one chunk at a time, in order, the eof call last.
        """
        gates: list[Deferred] = []
        calls: list = []

        def later(self_: Any, ctx: Any, config: Any, chunk: bytes) -> Deferred:
            eof = ctx.response.eof
            calls.append((chunk, eof, len(gates)))
            d: Deferred = Deferred()
            gates.append(d)
            return d.addCallback(lambda _: b"." if eof else chunk.upper())

        harness = with_upstream(harness_of(make_plugin("later", body_filter=later)),
                                ChunkedUpstream([b"a", b"b"]))
        pending = harness.request("GET", "/")
        fired = 0
        while fired < len(gates):
            self.assertNoResult(pending)
            self.assertEqual(len(gates), fired + 1, "a body_filter call started before the last one finished")
            gates[fired].callback(None)
            fired += 1
        self.assertEqual(calls, [(b"a", False, 0), (b"b", False, 1), (b"", True, 2)])
        self.assertEqual(self.successResultOf(pending).body, b"AB.")

    def test_asyncExitSkipsRemainingAccess(self) -> None:
        """
        An C{access} that answers after awaiting skips the remaining
        C{access} handlers and the upstream.
        """
        events: list = []
        gate: Deferred = Deferred()

        async def answer_later(self_: Any, ctx: Any, config: Any) -> None:
            await gate
            ctx.exit(401, {"message": "later"})

        harness = harness_of(make_plugin("gate", 20, access=answer_later), recording_plugin("after", events, 10))
        pending = harness.request("GET", "/")
        gate.callback(None)
        response = self.successResultOf(pending)
        self.assertEqual(response.status, 401)
        self.assertNotIn(("after", "access"), events)
        self.assertEqual(harness.upstream_requests, [])


class ClientGoneTests(SynchronousTestCase):
    """
    When the client goes away, the request stops, and C{log} still runs
    once.
    """

    def test_duringAsyncAccess(self) -> None:
        """
        A client that leaves while an C{access} phase waits: the upstream
        is not called, and every plugin's C{log} runs once.
        """
        events: list = []
        gate: Deferred = Deferred()

        def access(self_: Any, ctx: Any, config: Any) -> Deferred:
            return gate

        harness = harness_of(recording_plugin("slow", events, 20, access=access),
                             recording_plugin("other", events, 10))
        exchange = RawExchange(harness, "GET", "/")
        exchange.close()
        if not gate.called:
            gate.callback(None)
        self.assertEqual(harness.upstream_requests, [])
        self.assertEqual([n for n, p, *_ in events if p == "log"], ["slow", "other"])

    def test_whileUpstreamAnswers(self) -> None:
        """
        A client that leaves while the upstream has not answered: every
        plugin's C{log} runs once.
        """
        events: list = []
        waiting: list[Deferred] = []

        def upstream(request: UpstreamRequestSeen) -> Deferred:
            waiting.append(Deferred())
            return waiting[-1]

        harness = harness_of(recording_plugin("p", events), upstream=upstream)
        exchange = RawExchange(harness, "GET", "/")
        exchange.close()
        self.assertEqual([n for n, p, *_ in events if p == "log"], ["p"])
        self.assertEqual(len(waiting), 1)
