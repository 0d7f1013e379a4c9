"""
Tests for L{echogate.testing}: the socket-free gateway that plugin authors
test with.
"""
from __future__ import annotations

import gc
from typing import Any, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone
from zope.interface import implementer
from zope.interface.verify import verifyObject

from echogate.bundled.header_echo import HeaderEcho
from echogate.entities.writes import prepare_insert
from echogate.errors import ProxyError, SchemaViolation
from echogate.interfaces import IStore
from echogate.registry import PluginLoadError
from echogate.schema import Record
from echogate.schema.fields import Integer, String
from echogate.store.data import ConfigurationData
from echogate.testing import (
    ROUTE_ID,
    SERVICE_ID,
    GatewayHarness,
    HarnessResponse,
    MemoryStore,
    UpstreamAnswer,
    UpstreamRequestSeen,
    _FakeResponse,
    echo_upstream,
)
from tests.proxy.test_plugin_contract import Explosion, make_plugin, recording_plugin


class EchoUpstreamTests(SynchronousTestCase):
    """
    L{echo_upstream} answers with what it received.
    """

    def test_answer(self) -> None:
        """
        200, JSON, with the method, target, headers and body it saw.
        """
        seen = UpstreamRequestSeen("PUT", "/a?b=1", {"x-a": ["1", "2"]}, b"body \xff")
        answer = echo_upstream(seen)
        self.assertEqual((answer.status, answer.headers), (200, {"Content-Type": "application/json"}))
        response = HarnessResponse(200, {}, answer.body)
        self.assertEqual(response.json(), {"method": "PUT", "path": "/a?b=1", "headers": {"x-a": ["1", "2"]},
                                           "body": "body \ufffd"})


class ValueTests(SynchronousTestCase):
    """
    The harness's request and response values.
    """

    def test_seenHeader(self) -> None:
        """
        L{UpstreamRequestSeen.header}: the first value, any case, or
        C{None}.
        """
        seen = UpstreamRequestSeen("GET", "/", {"x-a": ["1", "2"]}, b"")
        self.assertEqual(seen.header("X-A"), "1")
        self.assertIsNone(seen.header("x-b"))

    def test_responseHeader(self) -> None:
        """
        L{HarnessResponse.header}: the first value, any case, or C{None}.
        """
        response = HarnessResponse(200, {"x-a": ["1", "2"]}, b"[1]")
        self.assertEqual(response.header("X-a"), "1")
        self.assertIsNone(response.header("x-b"))
        self.assertEqual(response.json(), [1])

    def test_answerDefaults(self) -> None:
        """
        L{UpstreamAnswer} defaults to an empty 200.
        """
        self.assertEqual(UpstreamAnswer(), UpstreamAnswer(200, {}, b""))


class GatewayHarnessTests(SynchronousTestCase):
    """
    L{GatewayHarness} runs requests through a whole gateway in memory.
    """

    def test_defaultRouteAndService(self) -> None:
        """
        Any path is routed to the service C{http://upstream.test}, path and
        query unchanged.
        """
        harness = GatewayHarness([])
        response = self.successResultOf(harness.request("GET", "/any/path?x=1"))
        self.assertEqual(response.status, 200)
        body = response.json()
        self.assertEqual((body["method"], body["path"]), ("GET", "/any/path?x=1"))
        self.assertEqual(body["headers"]["host"], ["upstream.test"])
        self.assertEqual(body["headers"]["x-forwarded-host"], ["gateway.test"])

    def test_upstreamRequests(self) -> None:
        """
        Every request the upstream received is recorded, oldest first.
        """
        harness = GatewayHarness([])
        self.successResultOf(harness.request("GET", "/1"))
        self.successResultOf(harness.request("DELETE", "/2"))
        self.assertEqual([(r.method, r.path) for r in harness.upstream_requests], [("GET", "/1"), ("DELETE", "/2")])

    def test_body(self) -> None:
        """
        A request body reaches the upstream.
        """
        harness = GatewayHarness([])
        self.successResultOf(harness.request("POST", "/", headers={"Content-Type": "text/plain"}, body=b"data"))
        (seen,) = harness.upstream_requests
        self.assertEqual((seen.body, seen.header("content-type")), (b"data", "text/plain"))

    def test_headers(self) -> None:
        """
        Request headers reach the upstream; a Host header replaces the
        default one.
        """
        harness = GatewayHarness([], route={"preserve_host": True})
        self.successResultOf(harness.request("GET", "/", headers={"Host": "api.test", "X-A": "1"}))
        (seen,) = harness.upstream_requests
        self.assertEqual((seen.header("host"), seen.header("x-a")), ("api.test", "1"))

    def test_clientIp(self) -> None:
        """
        The request comes from C{client_ip}.
        """
        harness = GatewayHarness([])
        self.successResultOf(harness.request("GET", "/", client_ip="192.0.2.1"))
        self.assertEqual(harness.upstream_requests[0].header("x-real-ip"), "192.0.2.1")

    def test_route(self) -> None:
        """
        Route fields replace the default route's.
        """
        harness = GatewayHarness([], route={"paths": ["/api"], "strip_path": True})
        self.successResultOf(harness.request("GET", "/api/x"))
        self.assertEqual(harness.upstream_requests[0].path, "/x")
        self.assertEqual(self.successResultOf(harness.request("GET", "/other")).status, 404)

    def test_service(self) -> None:
        """
        Service fields replace the default service's.
        """
        harness = GatewayHarness([], service={"path": "/base", "host": "backend.test", "port": 8080})
        self.successResultOf(harness.request("GET", "/x"))
        (seen,) = harness.upstream_requests
        self.assertEqual((seen.path, seen.header("host")), ("/base/x", "backend.test:8080"))

    def test_answer(self) -> None:
        """
        The upstream handler's status, headers and body reach the client.
        """
        harness = GatewayHarness([], upstream=lambda r: UpstreamAnswer(201, {"X-Up": "1"}, b"made"))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((response.status, response.header("x-up"), response.body), (201, "1", b"made"))
        self.assertEqual(response.header("content-length"), "4")

    def test_deferredAnswer(self) -> None:
        """
        The handler may answer later with a Deferred.
        """
        later: Deferred = Deferred()
        harness = GatewayHarness([], upstream=lambda r: later)
        pending = harness.request("GET", "/")
        self.assertNoResult(pending)
        later.callback(UpstreamAnswer(202))
        self.assertEqual(self.successResultOf(pending).status, 202)

    def test_handlerRaises(self) -> None:
        """
        A handler that raises makes the gateway answer 502, as a broken
        upstream would.
        """

        def broken(request: UpstreamRequestSeen) -> UpstreamAnswer:
            raise ConnectionRefusedError()

        response = self.successResultOf(GatewayHarness([], upstream=broken).request("GET", "/"))
        self.assertEqual((response.status, response.json()),
                         (502, {"message": "An invalid response was received from the upstream server"}))

    def test_handlerProxyError(self) -> None:
        """
        A handler that fails with a L{ProxyError} gets that answer.
        """
        harness = GatewayHarness([], upstream=lambda r: fail(ProxyError(504, "The upstream server is timing out")))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((response.status, response.json()), (504, {"message": "The upstream server is timing out"}))

    def test_configsValidated(self) -> None:
        """
        Configs are validated and completed with the plugin's schema.
        """
        seen = []

        def access(self_: Any, ctx: Any, config: Any) -> None:
            seen.append(dict(config))

        plugin = make_plugin("p", schema=Record({"n": Integer(default=3), "s": String(default="x")}), access=access)
        harness = GatewayHarness([plugin], configs=[("p", {"n": 5.0})])
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [{"n": 5, "s": "x"}])

    def test_scopes(self) -> None:
        """
        A config may name the default route or service.
        """
        events: list = []
        plugins = [recording_plugin("on-route", events), recording_plugin("elsewhere", events)]
        harness = GatewayHarness(plugins, configs=[
            ("on-route", {}, {"route": ROUTE_ID}),
            ("elsewhere", {}, {"service": "00000000-0000-4000-8000-00000000dead"})])
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual({name for name, *_ in events}, {"on-route"})
        self.assertNotEqual(ROUTE_ID, SERVICE_ID)

    def test_unknownPluginConfig(self) -> None:
        """
        A config for a plugin that was not given is refused.
        """
        error = self.assertRaises(ValueError, GatewayHarness, [], configs=[("header-echo", {})])
        self.assertEqual(str(error), "plugin 'header-echo' is not among the harness's plugins")

    def test_pluginsChecked(self) -> None:
        """
        Plugins get the start-up checks: a bad one is refused as start-up
        would refuse it.
        """
        bad = type("Bad", (HeaderEcho,), {"version": "1"})()
        error = self.assertRaises(PluginLoadError, GatewayHarness, [bad])
        self.assertEqual(str(error), "plugin 'header-echo': version must read x.y.z")

    def test_chunkedResponse(self) -> None:
        """
        A response sent chunked (a C{body_filter} changes the length, so its
        C{header_filter} removes Content-Length) is read back whole.
        """

        def double(self_: Any, ctx: Any, config: Any, chunk: bytes) -> bytes:
            return chunk * 2

        def unsized(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.remove_header("Content-Length")

        harness = GatewayHarness([make_plugin("p", body_filter=double, header_filter=unsized)],
                                 configs=[("p", {})],
                                 upstream=lambda r: UpstreamAnswer(200, {}, b"ab"))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"abab")

    def test_clock(self) -> None:
        """
        The gateway's clock is the harness's (a L{Clock} unless given).
        """
        self.assertIsInstance(GatewayHarness([]).clock, Clock)
        clock = Clock()
        self.assertIs(GatewayHarness([], clock=clock).clock, clock)

    def test_latencyFromClock(self) -> None:
        """
        Latencies are measured on the harness's clock.
        """
        clock = Clock()
        later: Deferred = Deferred()
        harness = GatewayHarness([], upstream=lambda r: later, clock=clock)
        pending = harness.request("GET", "/")
        clock.advance(0.25)
        later.callback(UpstreamAnswer())
        self.assertEqual(self.successResultOf(pending).header("x-echogate-upstream-latency"), "250")

    def test_unparsable(self) -> None:
        """
        A request the HTTP parser refuses is reported at once (an error, or
        the parser's 400), never left waiting.
        """
        harness = GatewayHarness([])
        for path in ("/a b", "/\x00"):
            try:
                pending = harness.request("GET", path)
            except ValueError:
                continue
            self.assertEqual(self.successResultOf(pending).status, 400)

    def test_failingBodyFilterCalledOnce(self) -> None:
        """
        Once a C{body_filter} has raised, the gateway stops the upstream
        body, so the filter is not called again (for eof): the harness's
        upstream stops delivering when stopped, as a real connection does.
        """
        calls: list = []

        def fragile(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
            calls.append(chunk)
            if chunk:
                raise Explosion("first chunk")

        def cleanup() -> None:
            # Finishing a request after cutting its connection (what the
            # eof call leads to) fails on the harness's transport.
            gc.collect()
            self.flushLoggedErrors(RuntimeError)

        self.addCleanup(cleanup)
        harness = GatewayHarness([make_plugin("fragile", body_filter=fragile)], configs=[("fragile", {})],
                                 upstream=lambda r: UpstreamAnswer(200, {}, b"body"))
        self.failureResultOf(harness.request("GET", "/"), ConnectionLost)
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)
        self.assertEqual(calls, [b"body"])


class AsyncStyleTests(TestCase):
    """
    The module docstring's style works: an C{async def} test awaiting
    C{harness.request}.
    """

    async def test_echo(self) -> None:
        """
        Awaiting a request through the harness.
        """
        gateway = GatewayHarness([HeaderEcho()], configs=[("header-echo", {})])
        response = await gateway.request("GET", "/x", headers={"X-Request-Echo": "hi"})
        self.assertEqual(response.header("X-Response-Echo"), "hi")


class EntityValidationTests(SynchronousTestCase):
    """
    The harness's route and service are completed and validated as the
    Admin API completes and validates a POSTed one.
    """

    def test_routeFieldRefused(self) -> None:
        """
        A route field the Admin API would refuse raises L{SchemaViolation}
        naming it.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], route={"strip_path": "yes"})
        self.assertEqual(error.fields, {"strip_path": "expected a boolean"})
        self.assertEqual(str(error), "harness route: schema violation (strip_path: expected a boolean)")

    def test_routeUnknownField(self) -> None:
        """
        A misspelt route field is refused, not ignored.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], route={"strip_paths": False})
        self.assertEqual(error.fields, {"strip_paths": "unknown field"})

    def test_routeBadPath(self) -> None:
        """
        A route path the Admin API refuses (not starting with a slash) is
        refused.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], route={"paths": ["api"]})
        self.assertIn("paths", error.fields)

    def test_routeWithoutMatcher(self) -> None:
        """
        A route left with nothing to match on is refused, as the Admin API
        refuses it.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], route={"paths": None})
        self.assertEqual(error.fields, {"@entity": [("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis'"
                                                    " when 'protocols' is 'https'")]})

    def test_serviceFieldRefused(self) -> None:
        """
        A service field the Admin API would refuse raises
        L{SchemaViolation} naming it.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], service={"port": 70000})
        self.assertEqual(list(error.fields), ["port"])
        self.assertTrue(str(error).startswith("harness service: schema violation (port: "), str(error))

    def test_notARecord(self) -> None:
        """
        Route fields that are not a mapping are refused.
        """
        error = self.assertRaises(SchemaViolation, GatewayHarness, [], route=[("paths", ["/"])])
        self.assertEqual(str(error), "harness route: expected a record")

    def test_stripPathByDefault(self) -> None:
        """
        The route strips its matched prefix unless told otherwise, as a
        route made through the Admin API does.
        """
        harness = GatewayHarness([], route={"paths": ["/api"]})
        self.successResultOf(harness.request("GET", "/api/x?y=1"))
        self.assertEqual(harness.upstream_requests[0].path, "/x?y=1")

    def test_stripPathOff(self) -> None:
        """
        C{strip_path: False} keeps the matched prefix.
        """
        harness = GatewayHarness([], route={"paths": ["/api"], "strip_path": False})
        self.successResultOf(harness.request("GET", "/api/x"))
        self.assertEqual(harness.upstream_requests[0].path, "/api/x")

    def test_adminDefaults(self) -> None:
        """
        The stored route and service are what the Admin API would store for
        the same fields: every default filled in.
        """
        harness = GatewayHarness([])
        (route,), (service,) = harness._data.routes, harness._data.services
        self.assertEqual(route, prepare_insert("routes", {"id": ROUTE_ID, "name": "default", "paths": ["/"],
                                                          "service": {"id": SERVICE_ID}},
                                               plugins={}, now=1, new_id="unused"))
        self.assertEqual(service, prepare_insert("services", {"id": SERVICE_ID, "name": "upstream",
                                                              "host": "upstream.test"},
                                                 plugins={}, now=1, new_id="unused"))

    def test_serviceCompleted(self) -> None:
        """
        Service fields are completed as the Admin API completes them: a
        C{url} stands for protocol, host, port and path, and https defaults
        to port 443.
        """
        harness = GatewayHarness([], service={"url": "https://backend.test/base"})
        (service,) = harness._data.services
        self.assertEqual((service["protocol"], service["host"], service["port"], service["path"]),
                         ("https", "backend.test", 443, "/base"))


class StreamedAnswerTests(SynchronousTestCase):
    """
    An L{UpstreamAnswer} with C{chunks} streams its body to the gateway
    piece by piece, with back-pressure.
    """

    def harness(self, chunks: Any, body_filter: Any = None, headers: Any = None) -> GatewayHarness:
        plugins, configs = [], []
        if body_filter is not None:
            plugins.append(make_plugin("filter", body_filter=body_filter))
            configs.append(("filter", {}))
        return GatewayHarness(plugins, configs=configs,
                              upstream=lambda r: UpstreamAnswer(200, headers or {}, chunks=chunks))

    def test_bothRefused(self) -> None:
        """
        An answer has a body or chunks, not both.
        """
        self.assertRaises(ValueError, UpstreamAnswer, body=b"a", chunks=[b"b"])

    def test_chunksToClient(self) -> None:
        """
        The pieces reach the client, of unknown length, so chunked.
        """
        response = self.successResultOf(self.harness([b"ab", b"cd", b"e"]).request("GET", "/"))
        self.assertEqual((response.status, response.body), (200, b"abcde"))
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertIsNone(response.header("content-length"))

    def test_declaredLength(self) -> None:
        """
        A Content-Length among the answer's headers is the body's length,
        as a real upstream announces it.
        """
        response = self.successResultOf(self.harness([b"ab", b"cd"], headers={"Content-Length": "4"})
                                        .request("GET", "/"))
        self.assertEqual((response.header("content-length"), response.body), ("4", b"abcd"))

    def test_oneByOne(self) -> None:
        """
        The C{body_filter} sees each piece apart, then the end.
        """
        seen: list = []

        def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
            seen.append((chunk, ctx.response.eof))

        self.successResultOf(self.harness([b"ab", b"cd"], body_filter).request("GET", "/"))
        self.assertEqual(seen, [(b"ab", False), (b"cd", False), (b"", True)])

    def test_laterPiece(self) -> None:
        """
        A Deferred piece comes when it fires; the response waits for it.
        """
        later: Deferred = Deferred()
        pending = self.harness([b"now ", later]).request("GET", "/")
        self.assertNoResult(pending)
        later.callback(b"later")
        self.assertEqual(self.successResultOf(pending).body, b"now later")

    def test_pausedWhileFilterWorks(self) -> None:
        """
        While an asynchronous C{body_filter} works, the gateway pauses the
        upstream: no next piece is taken until the filter's Deferred fires.
        """
        pulled: list = []
        working: list[Deferred] = []

        def pieces() -> Any:
            for piece in (b"1", b"2", b"3"):
                pulled.append(piece)
                yield piece

        def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> Any:
            if chunk:
                working.append(Deferred())
                return working[-1].addCallback(lambda _: chunk.upper())
            return None

        pending = self.harness(pieces(), body_filter).request("GET", "/")
        self.assertEqual(pulled, [b"1"])
        working[0].callback(None)
        self.assertEqual(pulled, [b"1", b"2"])
        working[1].callback(None)
        working[2].callback(None)
        self.assertEqual(self.successResultOf(pending).body, b"123")

    def test_arrivedWhilePaused(self) -> None:
        """
        A Deferred piece that fires while an asynchronous C{body_filter}
        works reaches the filter after the piece before it, in order.
        """
        later: Deferred = Deferred()
        working: list[Deferred] = []
        seen: list = []

        def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> Any:
            seen.append(chunk)
            if chunk == b"first":
                working.append(Deferred())
                return working[-1]
            return None

        pending = self.harness([b"first", later], body_filter).request("GET", "/")
        later.callback(b"second")
        self.assertEqual(seen, [b"first"])
        working[0].callback(b"FIRST")
        self.assertEqual(seen, [b"first", b"second", b""])
        self.assertEqual(self.successResultOf(pending).body, b"FIRSTsecond")

    def test_stoppedNotPulled(self) -> None:
        """
        Once the gateway stops the upstream (a C{body_filter} raised), no
        further piece is taken.
        """
        pulled: list = []

        def pieces() -> Any:
            for piece in (b"1", b"2"):
                pulled.append(piece)
                yield piece

        def fragile(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
            raise Explosion("no")

        def cleanup() -> None:
            gc.collect()
            self.flushLoggedErrors(RuntimeError)

        self.addCleanup(cleanup)
        self.failureResultOf(self.harness(pieces(), fragile).request("GET", "/"), ConnectionLost)
        self.assertEqual(len(self.flushLoggedErrors(Explosion)), 1)
        self.assertEqual(pulled, [b"1"])

    def test_brokenOff(self) -> None:
        """
        A piece that fails is an upstream breaking off mid-body: the gateway
        cuts the client's connection, and the request fails.
        """
        later: Deferred = Deferred()
        pending = self.harness([b"part", later]).request("GET", "/")
        later.errback(ConnectionLost("upstream went away"))
        self.failureResultOf(pending, ConnectionLost)

    def test_readTimeout(self) -> None:
        """
        A piece that never comes: the gateway's read timeout (the service's
        C{read_timeout}, on the harness's clock) stops the upstream.
        """
        clock = Clock()
        never: Deferred = Deferred()
        harness = GatewayHarness([], clock=clock, service={"read_timeout": 1000},
                                 upstream=lambda r: UpstreamAnswer(chunks=[b"a", never]))
        pending = harness.request("GET", "/")
        clock.advance(0.5)
        self.assertNoResult(pending)
        clock.advance(0.5)
        self.failureResultOf(pending, ConnectionLost)

    def test_bodyAnswerUnchanged(self) -> None:
        """
        An answer with C{body} still reaches a C{body_filter} in one piece.
        """
        seen: list = []

        def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
            seen.append(chunk)

        harness = GatewayHarness([make_plugin("filter", body_filter=body_filter)], configs=[("filter", {})],
                                 upstream=lambda r: UpstreamAnswer(200, {}, b"whole"))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((seen, response.header("content-length")), ([b"whole", b""], "5"))


class _BodyRecorder:
    """
    A body protocol recording what the fake upstream connection delivers,
    optionally calling C{on_data(transport, data)} on each piece.
    """

    def __init__(self, on_data: Any = None) -> None:
        self.events: list = []
        self.transport: Any = None
        self._on_data = on_data

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.events.append(data)
        if self._on_data is not None:
            self._on_data(self.transport, data)
        self.events.append(("returned", data))

    def connectionLost(self, reason: Any) -> None:
        self.events.append(type(reason.value))


class BodyProducerTests(SynchronousTestCase):
    """
    The fake upstream connection behind a streamed answer treats the
    gateway's producer calls as a real connection does.
    """

    def deliver(self, chunks: Any, on_data: Any = None) -> _BodyRecorder:
        recorder = _BodyRecorder(on_data)
        _FakeResponse(UpstreamAnswer(chunks=chunks)).deliverBody(recorder)
        return recorder

    def test_heldWhilePaused(self) -> None:
        """
        A piece that arrives while paused is delivered only on resume.
        """
        later: Deferred = Deferred()
        recorder = self.deliver([later])
        recorder.transport.pauseProducing()
        later.callback(b"late")
        self.assertEqual(recorder.events, [])
        recorder.transport.resumeProducing()
        self.assertEqual(recorder.events, [b"late", ("returned", b"late"), ResponseDone])

    def test_stopReportedAfterDelivery(self) -> None:
        """
        Stopped while a piece is being handled, the connection is reported
        lost once that handling returned, not inside it.
        """
        recorder = self.deliver([b"a", b"b"], on_data=lambda transport, data: transport.stopProducing())
        self.assertEqual(recorder.events, [b"a", ("returned", b"a"), ConnectionLost])


@implementer(IStore)
class _HeldStore:
    """
    An L{IStore} double that answers nothing until the test says so: it
    records the writes, and each C{load()} is a Deferred the test fires
    with the L{ConfigurationData} it wants.
    """

    def __init__(self) -> None:
        self.writes: list[list[tuple[str, str, Any]]] = []
        self.loads: list[Deferred[ConfigurationData]] = []
        self.subscribers: list[Callable[[int | None], object]] = []

    def write(self, operations: list[tuple[str, str, Mapping[str, Any]]]) -> Deferred[list[dict[str, Any]]]:
        self.writes.append(list(operations))
        return succeed([dict(record) for _, _, record in operations])

    def load(self) -> Deferred[ConfigurationData]:
        d: Deferred[ConfigurationData] = Deferred()
        self.loads.append(d)
        return d

    def subscribe(self, callback: Callable[[int | None], object]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def notify(self, version: int | None) -> None:
        for callback in list(self.subscribers):
            callback(version)

    def insert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        raise NotImplementedError()

    update = upsert = insert

    def delete(self, entity: str, id: str) -> Deferred[bool]:
        raise NotImplementedError()

    def get(self, entity: str, key: str) -> Deferred[dict[str, Any] | None]:
        raise NotImplementedError()

    def page(self, entity: str, size: int, offset: str | None = None, tags: Iterable[str] | None = None,
             tags_any: bool = False, where: Mapping[str, Any] | None = None,
             ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        raise NotImplementedError()

    def tagged(self, tag: str | None, size: int, offset: str | None = None,
               ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        raise NotImplementedError()

    def version(self) -> Deferred[int]:
        raise NotImplementedError()


def _echoed(harness: GatewayHarness) -> str | None:
    """
    What the harness answers in X-Response-Echo to a request with
    C{X-Request-Echo: hi} (C{None} when the header-echo plugin did not run).
    """
    response: HarnessResponse = TestCase().successResultOf(
        harness.request("GET", "/", headers={"X-Request-Echo": "hi"}))
    return response.header("X-Response-Echo")


class HarnessStoreTests(SynchronousTestCase):
    """
    L{GatewayHarness} with C{store=} keeps its configuration in that store
    and serves what the store loads.
    """

    def test_doubleProvidesIStore(self) -> None:
        """
        The store double of these tests provides L{IStore}.
        """
        verifyObject(IStore, _HeldStore())

    def test_recordsWritten(self) -> None:
        """
        The harness writes its service, route, entities and plugin
        configs into a L{MemoryStore}, which validates them.
        """
        store = MemoryStore()
        GatewayHarness([HeaderEcho()], configs=[("header-echo", {})], store=store,
                       entities={"consumers": [{"username": "alice"}]})
        self.assertEqual(list(store.tables["services"]), [SERVICE_ID])
        self.assertEqual(list(store.tables["routes"]), [ROUTE_ID])
        self.assertEqual([p["name"] for p in store.tables["plugins"].values()], ["header-echo"])
        self.assertEqual([c["username"] for c in store.tables["consumers"].values()], ["alice"])

    def test_servesLoaded(self) -> None:
        """
        Requests see what C{store.load()} returned: a plugin config
        written into the store by the test applies from the next request.
        """
        store = MemoryStore()
        harness = GatewayHarness([HeaderEcho()], store=store)
        self.assertIsNone(_echoed(harness))
        record = harness.stored("plugins", {"name": "header-echo", "config": {}})
        self.successResultOf(store.insert("plugins", record))
        self.assertEqual(_echoed(harness), "hi")
        self.assertEqual(harness.snapshot, harness.snapshot)
        self.successResultOf(store.delete("plugins", record["id"]))
        self.assertIsNone(_echoed(harness))

    def test_setEntitiesWritesToStore(self) -> None:
        """
        L{GatewayHarness.set_entities} replaces the collection's earlier
        records in the store.
        """
        store = MemoryStore()
        harness = GatewayHarness([], store=store, entities={"consumers": [{"username": "alice"}]})
        harness.set_entities({"consumers": [{"username": "bob"}]})
        self.assertEqual([c["username"] for c in store.tables["consumers"].values()], ["bob"])
        consumers = harness.snapshot.credentials.consumers
        self.assertEqual((consumers.get("alice"), consumers.get("bob")["username"]), (None, "bob"))

    def test_waitsForLoad(self) -> None:
        """
        Until the store's first load answers, the harness serves its own
        records; then it serves the loaded ones.
        """
        store = _HeldStore()
        harness = GatewayHarness([HeaderEcho()], store=store)
        self.assertEqual([[(op, entity) for op, entity, _ in ops] for ops in store.writes],
                         [[("upsert", "services"), ("upsert", "routes")]])
        self.assertNoResult(harness.loading)
        self.assertIsNone(_echoed(harness))
        [load] = store.loads
        load.callback(self.data(harness, version=3, echo=True))
        self.successResultOf(harness.loading)
        self.assertEqual(_echoed(harness), "hi")

    def test_reloadsOnNotification(self) -> None:
        """
        Each call of the store's C{subscribe} callback loads again; a load
        that answers after a newer one is not served.
        """
        store = _HeldStore()
        harness = GatewayHarness([HeaderEcho()], store=store)
        store.loads[0].callback(self.data(harness, version=1, echo=False))
        store.notify(2)
        store.notify(None)
        self.assertEqual(len(store.loads), 3)
        store.loads[2].callback(self.data(harness, version=3, echo=True))
        self.assertEqual(_echoed(harness), "hi")
        store.loads[1].callback(self.data(harness, version=2, echo=False))
        self.assertEqual(_echoed(harness), "hi")

    def test_stopUnsubscribes(self) -> None:
        """
        L{GatewayHarness.stop} stops following the store.
        """
        store = _HeldStore()
        harness = GatewayHarness([], store=store)
        self.successResultOf(harness.stop())
        self.assertEqual(store.subscribers, [])

    def test_failedLoadLogged(self) -> None:
        """
        A load that fails is logged (so trial fails the test that made it).
        """
        store = _HeldStore()
        harness = GatewayHarness([], store=store)
        store.loads[0].errback(RuntimeError("database gone"))
        self.successResultOf(harness.loading)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def data(self, harness: GatewayHarness, version: int, echo: bool) -> ConfigurationData:
        """
        The harness's service and route as a store would load them, with
        a global header-echo config if C{echo}.
        """
        service, route = (ops[2] for ops in store_writes(harness))
        plugins = (harness.stored("plugins", {"name": "header-echo", "config": {}}),) if echo else ()
        return ConfigurationData(version=version, services=(service,), routes=(route,), plugins=plugins)


def store_writes(harness: GatewayHarness) -> list[tuple[str, str, Mapping[str, Any]]]:
    """
    The operations of the harness's first write to its L{_HeldStore}.
    """
    store = harness._store
    assert isinstance(store, _HeldStore)
    return store.writes[0]


class HarnessPluginEntityTests(SynchronousTestCase):
    """
    A plugin's own entities in the harness: served from the snapshot
    without a store, and kept in a given store without declaring its
    storage by hand (the harness does it, as a node does).
    """

    def harness(self, store: Any = None) -> Any:
        from tests.examples import example_module

        tokens = example_module("entity-plugin", "tokens_plugin")
        plugin = tokens.TokenAuth()
        harness = GatewayHarness([plugin], configs=[("token-auth", {})], store=store)
        harness.set_entities({
            "consumers": [{"id": "11111111-1111-4111-8111-111111111111", "username": "alice"}],
            tokens.TOKENS.name: [{"token": "t-alice", "consumer": {"id": "11111111-1111-4111-8111-111111111111"}}],
        })
        return harness

    def test_withoutStore(self) -> None:
        """The token record is found by the plugin's phase."""
        response = self.successResultOf(self.harness().request("GET", "/", headers={"X-Token": "t-alice"}))
        self.assertEqual(response.status, 200)

    def test_withStore(self) -> None:
        """In a MemoryStore, with no declare_storage call by the test."""
        from echogate.store.memory import MemoryStore

        response = self.successResultOf(self.harness(MemoryStore()).request("GET", "/", headers={"X-Token": "t-alice"}))
        self.assertEqual(response.status, 200)
