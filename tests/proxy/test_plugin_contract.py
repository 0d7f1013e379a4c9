"""
The plugin contract, through L{echogate.testing.GatewayHarness}: the order
of the phases and short-circuits. What a failing plugin does to a request
is in L{tests.proxy.test_plugin_contract_errors}; asynchronous phases and
clients that go away in L{tests.proxy.test_plugin_contract_async}.

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

from echogate.plugin import GatewayPlugin
from echogate.proxy.gateway import Gateway, GatewayResource
from echogate.proxy.site import GatewaySite
from echogate.schema import Record
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from tests import requestonly


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

    send = requestonly.send

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
