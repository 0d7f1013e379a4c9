"""
The plugin contract, through L{echogate.testing.GatewayHarness}: the order
of the phases, short-circuits, what a failing plugin does to a request,
asynchronous phases, immutability, and consumer-scoped configs.

The helpers at the top (plugins made from functions, a chunked fake
upstream, a log capture) are shared with the other plugin test modules.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from echogate.plugin import GatewayPlugin, ImmutablePluginError
from echogate.proxy import Gateway, GatewayResource
from echogate.site import GatewaySite
from echogate.schema import Record
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen


class Explosion(Exception):
    """
    What test plugins raise on purpose.
    """


def make_plugin(name: str, priority: int = 0, schema: Record | None = None, **phases: Callable) -> GatewayPlugin:
    """
    A L{GatewayPlugin} called C{name} whose phases are the given functions
    (each taking C{self} first, like a method).
    """
    attributes: dict[str, Any] = {"name": name, "version": "1.0.0", "priority": priority,
                                  "config_schema": schema if schema is not None else Record({})}
    attributes.update(phases)
    return type(f"Plugin_{name.replace('-', '_')}", (GatewayPlugin,), attributes)()


def recording_plugin(name: str, events: list, priority: int = 0, **overrides: Callable) -> GatewayPlugin:
    """
    A plugin that appends C{(name, phase)} to C{events} in every phase
    (C{(name, "body_filter", chunk, eof)} for the body), unless a phase is
    given in C{overrides}.
    """

    def phase(which: str) -> Callable:
        def run(self: Any, ctx: Any, config: Any) -> None:
            events.append((name, which))

        return run

    def body_filter(self: Any, ctx: Any, config: Any, chunk: bytes) -> None:
        events.append((name, "body_filter", chunk, ctx.response.eof))

    phases: dict[str, Callable] = {p: phase(p) for p in ("rewrite", "access", "header_filter", "log")}
    phases["body_filter"] = body_filter
    phases.update(overrides)
    return make_plugin(name, priority, **phases)


def capture_log(case: SynchronousTestCase) -> list[dict]:
    """
    Every log event emitted until the test ends.
    """
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def plugin_failures(events: list[dict]) -> list[dict]:
    """
    The events that report a plugin's failure.
    """
    return [e for e in events if e.get("log_failure") is not None and e.get("plugin") is not None]


class _Transport:
    def __init__(self) -> None:
        self.paused = 0
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.paused -= 1

    def stopProducing(self) -> None:
        self.stopped = True


class _ChunkedResponse:
    def __init__(self, status: int, headers: dict[str, str], chunks: Sequence[bytes]):
        self.code = status
        self.phrase = b"OK"
        self.version = (b"HTTP", 1, 1)
        self.headers = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        self.length = sum(len(c) for c in chunks)
        self.headers.setRawHeaders(b"content-length", [b"%d" % self.length])
        self._chunks = chunks
        self.transport = _Transport()

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(self.transport)
        for chunk in self._chunks:
            if self.transport.stopped:
                protocol.connectionLost(Failure(ConnectionLost()))
                return
            protocol.dataReceived(chunk)
        protocol.connectionLost(Failure(ResponseDone()))


class ChunkedUpstream:
    """
    An upstream that answers every request with C{status}, C{headers} and
    a body delivered as the given chunks (the harness's own fake upstream
    delivers a body in one chunk); like a real connection, it stops
    delivering once the gateway stops it.
    """

    def __init__(self, chunks: Sequence[bytes], status: int = 200, headers: dict[str, str] | None = None):
        self._chunks = chunks
        self._status = status
        self._headers = headers or {"Content-Type": "text/plain"}
        self.seen: list[bytes] = []

    def request(self, service: dict, method: bytes, target: bytes, headers: Headers,
                body_factory: Any = None) -> Deferred:
        self.seen.append(target)
        return succeed(_ChunkedResponse(self._status, self._headers, self._chunks))

    def close(self) -> Deferred:
        return succeed(None)


def with_upstream(harness: GatewayHarness, upstream: Any) -> GatewayHarness:
    """
    Put C{upstream} (any object with the upstream client's C{request}
    method) behind C{harness}'s gateway instead of the function upstream.
    """
    harness.gateway = Gateway(clock=harness.clock, snapshot=lambda: harness.snapshot, upstream=upstream)
    harness.site = GatewaySite(GatewayResource(harness.gateway), reactor=harness.clock)
    return harness


class _TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, like a TCP transport, accepts losing the
    connection twice.
    """

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class RawExchange:
    """
    One request sent to a harness's site over a transport the test can
    inspect, for responses the harness cannot wait for (a connection the
    gateway cuts).
    """

    def __init__(self, harness: GatewayHarness, method: str, path: str, headers: dict[str, str] | None = None):
        self.transport = _TCPLikeTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001),
                                         hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        self.protocol = harness.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        self.protocol.makeConnection(self.transport)
        lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def close(self) -> None:
        """
        The client side notices the connection is gone.
        """
        self.protocol.connectionLost(Failure(ConnectionError("closed")))


def upstream_answer(status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"ok") -> Callable:
    """
    A fake upstream handler that always gives the same answer.
    """

    def handler(request: UpstreamRequestSeen) -> UpstreamAnswer:
        return UpstreamAnswer(status, headers or {"Content-Type": "text/plain"}, body)

    return handler


GLOBAL = {}
UNEXPECTED = {"message": "An unexpected error occurred"}


def harness_of(*plugins: GatewayPlugin, upstream: Callable | None = None, **kw: Any) -> GatewayHarness:
    """
    A harness with every plugin enabled and configured globally.
    """
    extra = {"upstream": upstream} if upstream is not None else {}
    return GatewayHarness(plugins, configs=[(p.name, {}) for p in plugins], **extra, **kw)


class PhaseOrderTests(SynchronousTestCase):
    """
    Phases run in Kong's order, higher priority first within each phase.
    """

    def test_order(self) -> None:
        """
        rewrite, access, header_filter, body_filter (each chunk, then once
        more with eof), log; within each, higher priority first.
        """
        events: list = []
        harness = harness_of(recording_plugin("low", events, 10), recording_plugin("high", events, 20),
                             upstream=upstream_answer(body=b"ok"))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.body, b"ok")
        self.assertEqual(events, [
            ("high", "rewrite"), ("low", "rewrite"),
            ("high", "access"), ("low", "access"),
            ("high", "header_filter"), ("low", "header_filter"),
            ("high", "body_filter", b"ok", False), ("low", "body_filter", b"ok", False),
            ("high", "body_filter", b"", True), ("low", "body_filter", b"", True),
            ("high", "log"), ("low", "log"),
        ])

    def test_tiesByName(self) -> None:
        """
        Plugins of equal priority run in name order.
        """
        events: list = []
        harness = harness_of(recording_plugin("b", events, 5), recording_plugin("a", events, 5),
                             recording_plugin("c", events, 5))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual([name for name, phase, *_ in events if phase == "access"], ["a", "b", "c"])

    def test_bodyFilterPerChunk(self) -> None:
        """
        C{body_filter} runs for every chunk the upstream sends, then once
        with C{b""} and C{ctx.response.eof} true.
        """
        events: list = []
        harness = with_upstream(harness_of(recording_plugin("p", events)), ChunkedUpstream([b"a", b"b", b"c"]))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.body, b"abc")
        self.assertEqual([e[2:] for e in events if e[1] == "body_filter"],
                         [(b"a", False), (b"b", False), (b"c", False), (b"", True)])

    def test_bodyFilterChains(self) -> None:
        """
        Each C{body_filter} receives what the one before it returned; what
        the last returns is sent, also at eof.
        """

        def upper(self: Any, ctx: Any, config: Any, chunk: bytes) -> bytes:
            return chunk.upper()

        def bang(self: Any, ctx: Any, config: Any, chunk: bytes) -> bytes:
            return chunk + b"!" if ctx.response.eof else b"[" + chunk + b"]"

        def unsized(self: Any, ctx: Any, config: Any) -> None:
            ctx.response.remove_header("Content-Length")

        harness = with_upstream(
            harness_of(make_plugin("upper", 20, body_filter=upper),
                       make_plugin("bang", 10, body_filter=bang, header_filter=unsized)),
            ChunkedUpstream([b"ab", b"cd"]))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.body, b"[AB][CD]!")
        self.assertIsNone(response.header("content-length"))

    def test_bodyFilterKeepsContentLength(self) -> None:
        """
        A C{body_filter} that leaves the length alone keeps the upstream's
        Content-Length (as in Kong, only a plugin that changes the length
        removes it).
        """

        def upper(self: Any, ctx: Any, config: Any, chunk: bytes) -> bytes:
            return chunk.upper()

        harness = with_upstream(harness_of(make_plugin("upper", 20, body_filter=upper)),
                                ChunkedUpstream([b"ab", b"cd"]))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.body, b"ABCD")
        self.assertEqual(response.header("content-length"), "4")

    def test_bodyFilterDropsAndKeeps(self) -> None:
        """
        Returning C{b""} drops a chunk; returning C{None} keeps it.
        """

        def drop_b(self: Any, ctx: Any, config: Any, chunk: bytes) -> bytes | None:
            return b"" if chunk == b"b" else None

        harness = with_upstream(harness_of(make_plugin("drop", body_filter=drop_b)),
                                ChunkedUpstream([b"a", b"b", b"c"]))
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).body, b"ac")

    def test_bodyFilterOnExit(self) -> None:
        """
        A plugin's own answer goes through C{body_filter} too: whole, then
        eof.
        """
        events: list = []

        def answer(self: Any, ctx: Any, config: Any) -> None:
            ctx.exit(200, b"local")

        harness = harness_of(recording_plugin("p", events, access=answer))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.body, b"local")
        self.assertEqual([e[2:] for e in events if e[1] == "body_filter"], [(b"local", False), (b"", True)])

    def test_rewriteOnlyGlobal(self) -> None:
        """
        C{rewrite} runs for global configs only; a plugin configured on the
        service or route runs its other phases but not C{rewrite}.
        """
        from echogate.testing import ROUTE_ID, SERVICE_ID

        events: list = []
        plugins = [recording_plugin("global", events), recording_plugin("on-service", events),
                   recording_plugin("on-route", events)]
        harness = GatewayHarness(plugins, configs=[("global", {}), ("on-service", {}, {"service": SERVICE_ID}),
                                                   ("on-route", {}, {"route": ROUTE_ID})])
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual([name for name, phase, *_ in events if phase == "rewrite"], ["global"])
        self.assertEqual(sorted(name for name, phase, *_ in events if phase == "access"),
                         ["global", "on-route", "on-service"])

    def test_rewriteBeforeRouting(self) -> None:
        """
        In C{rewrite} there is no route, service or upstream request yet.
        """
        seen = []

        def rewrite(self: Any, ctx: Any, config: Any) -> None:
            seen.append((ctx.route, ctx.service, ctx.upstream))

        harness = harness_of(make_plugin("p", rewrite=rewrite))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [(None, None, None)])

    def test_noRoute(self) -> None:
        """
        When no route matches, global plugins still run C{rewrite},
        C{header_filter} and C{log} (not C{access}) around the 404.
        """
        events: list = []
        harness = harness_of(recording_plugin("p", events), route={"paths": ["/api"]})
        response = self.successResultOf(harness.request("GET", "/elsewhere"))
        self.assertEqual(response.status, 404)
        self.assertEqual(response.json(), {"message": "no Route matched with those values"})
        self.assertEqual([e[1] for e in events],
                         ["rewrite", "header_filter", "body_filter", "body_filter", "log"])

    def test_noPhases(self) -> None:
        """
        A plugin that defines no phase at all is harmless.
        """
        harness = harness_of(make_plugin("idle"))
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).status, 200)


class ShortCircuitTests(SynchronousTestCase):
    """
    A plugin may answer the request itself with C{ctx.exit}.
    """

    def setUp(self) -> None:
        self.events: list = []

        def refuse(self_: Any, ctx: Any, config: Any) -> None:
            self.events.append(("gate", "access"))
            ctx.exit(403, {"message": "go away"}, {"X-Why": "test"})

        self.harness = harness_of(recording_plugin("first", self.events, 30),
                                  recording_plugin("gate", self.events, 20, access=refuse),
                                  recording_plugin("after", self.events, 10))
        self.response = self.successResultOf(self.harness.request("GET", "/"))

    def test_answer(self) -> None:
        """
        The client gets the plugin's status, JSON body and headers.
        """
        self.assertEqual(self.response.status, 403)
        self.assertEqual(self.response.json(), {"message": "go away"})
        self.assertEqual(self.response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(self.response.header("x-why"), "test")

    def test_upstreamNotCalled(self) -> None:
        """
        The upstream is not called.
        """
        self.assertEqual(self.harness.upstream_requests, [])

    def test_remainingAccessSkipped(self) -> None:
        """
        The C{access} handlers after the answering one are skipped; those
        before it ran.
        """
        self.assertEqual([n for n, phase, *_ in self.events if phase == "access"], ["first", "gate"])

    def test_laterPhasesRunForEveryPlugin(self) -> None:
        """
        C{header_filter}, C{body_filter} and C{log} still run for every
        plugin, including those whose C{access} was skipped.
        """
        for phase in ("header_filter", "log"):
            self.assertEqual([n for n, p, *_ in self.events if p == phase], ["first", "gate", "after"])
        self.assertEqual([n for n, p, *_ in self.events if p == "body_filter"],
                         ["first", "gate", "after"] * 2)


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
