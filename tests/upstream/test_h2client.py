"""
echogate's HTTP/2 client for gRPC services (L{H2UpstreamClient}), against
real HTTP/2 servers on 127.0.0.1 (L{tests.h2.h2server}): h2c and TLS,
the request's header list, responses with trailers, flow control both
ways, multiplexing and the pool, timeouts, resets, GOAWAY and cancel.
"""
from __future__ import annotations

from typing import Any

from h2.errors import ErrorCodes
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from echogate.errors import ProxyError
from echogate.interfaces import IUpstreamClient, IUpstreamResponse
from echogate.proxy.streaming import RequestBody
from echogate.upstream.failures import describe
from echogate.upstream.h2client import H2UpstreamClient
from echogate.upstream.h2request import grpc_timeout, h2_headers
from echogate.upstream.tls import TLS_POLICY, TLSPolicy
from tests.certs import make_ca, make_leaf
from tests.h2.h2server import H2Server, ServerStream
from tests.waiting import until

CA = make_ca("h2 upstream CA")
LEAF = make_leaf(CA, ["upstream.test", "127.0.0.1"])
TRUSTED = TLSPolicy(ca_certificates=(CA.cert_pem.encode(),), server_name="upstream.test")
GRPC = [(b"content-type", b"application/grpc")]


class Collector(Protocol):
    """
    A response body's protocol that keeps what arrives and how it ended.
    """

    def __init__(self, pause_at: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        self.pause_at = pause_at
        self.ended: Deferred[list[Failure]] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.pause_at is not None and self.received >= self.pause_at:
            self.pause_at = None
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.ended.callback([reason])

    async def end(self) -> Failure:
        """
        How the body ended, once it did.
        """
        return (await self.ended)[0]


@implementer(IBodyProducer)
class StreamedProducer:
    """
    A request body producer the test writes through, as a client streams.
    """

    length = UNKNOWN_LENGTH

    def __init__(self) -> None:
        self.consumer: Any = None
        self.finished: Deferred[None] = Deferred()
        self.paused = False
        self.pauses = 0
        self.stopped = False

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self.consumer = consumer
        return self.finished

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class StreamedBody:
    """
    A request body (as L{RequestBody}) whose producers the test drives.
    """

    def __init__(self) -> None:
        self.producers: list[StreamedProducer] = []

    def producer(self) -> StreamedProducer:
        made = StreamedProducer()
        self.producers.append(made)
        return made


def grpc_handler(stream: ServerStream) -> None:
    """
    Answers once the request ends: its body echoed, then trailers.
    """
    def answer(_: object) -> None:
        if stream.reset_code is not None:
            return
        stream.respond(200, GRPC)
        stream.send(b"echo:" + stream.body).addCallback(
            lambda _: stream.trailers([(b"grpc-status", b"0"), (b"grpc-message", b"ok")]))
    stream.body_ended.addCallback(answer)


def hold(stream: ServerStream) -> None:
    """
    Answers nothing: the test does.
    """


class _H2TestCase(TestCase):
    #: (a call that never ends fails the test instead of hanging it)
    timeout = 30

    def server(self, handler: Any = grpc_handler, **options: Any) -> H2Server:
        server = H2Server(handler, **options)
        self.addCleanup(server.stop)
        return server

    def client(self, **options: Any) -> H2UpstreamClient:
        client = H2UpstreamClient(reactor, **options)
        self.addCleanup(client.close)
        return client

    def send(self, client: H2UpstreamClient, service: dict[str, Any], body: Any = None,
             headers: list[tuple[bytes, bytes]] = GRPC, target: bytes = b"/echo.Echo/Say") -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.handle = client.send(service, b"POST", target, headers, body, d.callback, d.errback)
        return d

    async def body(self, response: Any) -> bytes:
        whole = response.whole_body()
        if whole is not None:
            return bytes(whole)
        collector = Collector()
        response.deliverBody(collector)
        reason = await collector.end()
        reason.trap(ResponseDone)
        return b"".join(collector.chunks)

    async def failure(self, d: Deferred[Any]) -> ProxyError:
        try:
            result = await d
        except ProxyError as error:
            return error
        self.fail(f"answered {result!r}")


class ContractTests(SynchronousTestCase):
    """
    The client and its response provide the upstream interfaces.
    """

    def test_client(self) -> None:
        """
        L{H2UpstreamClient} provides L{IUpstreamClient}.
        """
        self.assertTrue(verifyObject(IUpstreamClient, H2UpstreamClient(MemoryReactorClock())))


class HeaderTests(SynchronousTestCase):
    """
    A request's HTTP/2 header list, and gRPC's timeout header.
    """

    def test_pseudo_and_lowercase(self) -> None:
        """
        The pseudo-header fields come first (C{:authority} from Host); the
        fields are lowercased; connection-specific ones (and those
        Connection names) are dropped; C{te: trailers} is sent.
        """
        fields, timeout = h2_headers(b"POST", b"/a.B/C?x", [
            (b"Host", b"svc.example:50051"), (b"Content-Type", b"application/grpc"), (b"Connection", b"x-hop"),
            (b"X-Hop", b"1"), (b"Keep-Alive", b"5"), (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"),
            (b"Proxy-Connection", b"x"), (b"TE", b"gzip"), (b"X-Id", b"7")], b"http", b"10.0.0.1:80")
        self.assertEqual(fields, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a.B/C?x"),
                                  (b":authority", b"svc.example:50051"), (b"content-type", b"application/grpc"),
                                  (b"x-id", b"7"), (b"te", b"trailers")])
        self.assertIsNone(timeout)

    def test_authority_without_host(self) -> None:
        """
        Without a Host field, C{:authority} is the given host:port.
        """
        fields, _ = h2_headers(b"GET", b"/", [], b"https", b"127.0.0.1:443")
        self.assertEqual(fields[:4], [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
                                      (b":authority", b"127.0.0.1:443")])

    def test_grpc_timeout_units(self) -> None:
        """
        Each unit of C{grpc-timeout} scales its digits.
        """
        self.assertEqual([grpc_timeout(v) for v in (b"2H", b"3M", b"5S", b"100m", b"7u", b"9n")],
                         [7200.0, 180.0, 5.0, 0.1, 7e-6, 9e-9])

    def test_grpc_timeout_invalid(self) -> None:
        """
        An invalid C{grpc-timeout} (no unit, an unknown unit, more than 8
        digits, a sign, nothing) says nothing.
        """
        for value in (b"100", b"5s", b"123456789S", b"-5S", b"S", b"", b"1.5S", b"\xd9\xa1S"):
            self.assertIsNone(grpc_timeout(value), value)

    def test_grpc_timeout_found(self) -> None:
        """
        The header list's C{grpc-timeout} is read.
        """
        _, timeout = h2_headers(b"POST", b"/", [(b"grpc-timeout", b"250m")], b"http", b"h:1")
        self.assertEqual(timeout, 0.25)


class UnaryTests(_H2TestCase):
    """
    One request, one response, over h2c.
    """

    async def test_response(self) -> None:
        """
        The response's status, headers (as received, and end-to-end without
        Content-Length, whose value is its C{length}), body and trailers.
        """
        def handler(stream: ServerStream) -> None:
            stream.respond(200, [*GRPC, (b"content-length", b"3"), (b"x-meta", b"a")])
            stream.send(b"abc")
            stream.trailers([(b"grpc-status", b"0"), (b"x-trailer", b"t")])
        server = self.server(handler)
        response = await self.send(self.client(), server.service())
        self.assertTrue(verifyObject(IUpstreamResponse, response))
        self.assertEqual((response.code, response.length, response.via), (200, 3, False))
        self.assertEqual(response.raw_headers, [*GRPC, (b"content-length", b"3"), (b"x-meta", b"a")])
        self.assertEqual(response.end_to_end, [*GRPC, (b"x-meta", b"a")])
        self.assertEqual(await self.body(response), b"abc")
        self.assertEqual(response.trailers, [(b"grpc-status", b"0"), (b"x-trailer", b"t")])

    async def test_request_sent(self) -> None:
        """
        The service gets the pseudo-header fields (C{:scheme} http), the
        fields lowercased, and the body, ended.
        """
        server = self.server()
        response = await self.send(self.client(), server.service(), RequestBody(b"hi"),
                                   [(b"Host", b"svc.test"), (b"Content-Type", b"application/grpc")])
        self.assertEqual(await self.body(response), b"echo:hi")
        stream = server.streams[0]
        self.assertEqual(stream.headers[:4], [(b":method", b"POST"), (b":scheme", b"http"),
                                              (b":path", b"/echo.Echo/Say"), (b":authority", b"svc.test")])
        self.assertEqual(stream.header(b"content-type"), b"application/grpc")
        self.assertTrue(stream.ended)

    async def test_trailers_before_end(self) -> None:
        """
        The trailers are set on the response before its body's end is
        delivered.
        """
        def handler(stream: ServerStream) -> None:
            stream.respond(200, GRPC)
            stream.send(b"x")
        server = self.server(handler)
        response = await self.send(self.client(), server.service())
        seen = []

        class Reader(Collector):
            def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
                seen.append(response.trailers)
                super().connectionLost(reason)
        reader = Reader()
        response.deliverBody(reader)
        server.streams[0].trailers([(b"grpc-status", b"5")])
        (await reader.end()).trap(ResponseDone)
        self.assertEqual(seen, [[(b"grpc-status", b"5")]])

    async def test_trailers_only(self) -> None:
        """
        A trailers-only answer (HEADERS ending the stream) is a response
        with an empty body; its fields are its headers.
        """
        server = self.server(lambda s: s.respond(200, [*GRPC, (b"grpc-status", b"12")], end=True))
        response = await self.send(self.client(), server.service())
        self.assertEqual(response.raw_headers, [*GRPC, (b"grpc-status", b"12")])
        self.assertEqual(await self.body(response), b"")
        self.assertIsNone(response.trailers)

    async def test_default_authority(self) -> None:
        """
        Without a Host header, C{:authority} is the service's host:port.
        """
        server = self.server()
        await self.body(await self.send(self.client(), server.service(), RequestBody(b"")))
        self.assertEqual(server.streams[0].header(b":authority"), b"127.0.0.1:%d" % server.port)


class TLSTests(_H2TestCase):
    """
    grpcs: TLS with ALPN h2, verified as the service's policy says.
    """

    async def test_verified(self) -> None:
        """
        A certificate the policy trusts: the request goes over TLS (ALPN
        h2), C{:scheme} https.
        """
        server = self.server(tls=LEAF)
        response = await self.send(self.client(), server.service(**{TLS_POLICY: TRUSTED}), RequestBody(b"s"))
        self.assertEqual(await self.body(response), b"echo:s")
        self.assertEqual(server.streams[0].header(b":scheme"), b"https")

    async def test_verify_failure(self) -> None:
        """
        A certificate of an unknown CA: 502, OpenSSL's reason in the log.
        """
        server = self.server(tls=LEAF)
        error = await self.failure(self.send(self.client(), server.service(**{TLS_POLICY: TLSPolicy(
            server_name="upstream.test", ca_certificates=(make_ca("other").cert_pem.encode(),))})))
        self.assertEqual(error.status, 502)
        self.assertTrue(describe(error.__cause__).startswith("certificate verify failed: "))
        self.assertIn("(server name upstream.test)", describe(error.__cause__))

    async def test_unusable_policy(self) -> None:
        """
        A service naming CA certificates nobody resolved: 502 at once, no
        connection made.
        """
        server = self.server(tls=LEAF)
        error = await self.failure(self.send(self.client(), server.service(ca_certificates=["some-id"])))
        self.assertEqual(error.status, 502)
        self.assertTrue(describe(error.__cause__).startswith("TLS setup failed"))
        self.assertEqual(server.connections, [])

    async def test_no_alpn(self) -> None:
        """
        A TLS server that does not select h2: 502.
        """
        server = self.server(tls=LEAF, alpn=False)
        error = await self.failure(self.send(self.client(), server.service(**{TLS_POLICY: TRUSTED})))
        self.assertEqual(error.status, 502)
        self.assertIn("did not select h2", describe(error.__cause__))


class FailureTests(_H2TestCase):
    """
    Failures before and after the response head.
    """

    async def test_refused(self) -> None:
        """
        Connection refused: 502, "connection refused".
        """
        server = self.server()
        service = server.service()
        await server.stop()
        error = await self.failure(self.send(self.client(), service))
        self.assertEqual((error.status, describe(error.__cause__)), (502, "connection refused"))

    async def test_reset_before_head(self) -> None:
        """
        The service resets the stream before answering: 502.
        """
        server = self.server(lambda s: s.reset(ErrorCodes.INTERNAL_ERROR))
        error = await self.failure(self.send(self.client(), server.service()))
        self.assertEqual(error.status, 502)
        self.assertIn("INTERNAL_ERROR", describe(error.__cause__))

    async def test_reset_after_head(self) -> None:
        """
        The service resets the stream after its head: the body ends with a
        failure, not L{ResponseDone}.
        """
        server = self.server(lambda s: (s.respond(200, GRPC), s.send(b"part")))
        response = await self.send(self.client(), server.service())
        collector = Collector()
        response.deliverBody(collector)
        server.streams[0].reset(ErrorCodes.INTERNAL_ERROR)
        reason = await collector.end()
        self.assertFalse(reason.check(ResponseDone))
        self.assertEqual(b"".join(collector.chunks), b"part")

    async def test_lost_before_head(self) -> None:
        """
        The connection drops before the head: 502.
        """
        server = self.server(lambda s: s.conn.transport.abortConnection())
        error = await self.failure(self.send(self.client(), server.service()))
        self.assertEqual(error.status, 502)

    async def test_lost_after_head(self) -> None:
        """
        The connection drops after the head: the body fails.
        """
        server = self.server(lambda s: (s.respond(200, GRPC), s.send(b"part")))
        response = await self.send(self.client(), server.service())
        collector = Collector()
        response.deliverBody(collector)
        server.connections[0].transport.abortConnection()  # type: ignore[union-attr]
        self.assertFalse((await collector.end()).check(ResponseDone))

    async def test_refused_stream_retried(self) -> None:
        """
        A stream the service refuses (REFUSED_STREAM) goes again.
        """
        def handler(stream: ServerStream) -> None:
            if len(stream.conn.server.streams) == 1:
                stream.reset(ErrorCodes.REFUSED_STREAM)
            else:
                grpc_handler(stream)
        server = self.server(handler)
        response = await self.send(self.client(), server.service(), RequestBody(b"again"))
        self.assertEqual(await self.body(response), b"echo:again")
        self.assertEqual(len(server.streams), 2)


class TimeoutTests(_H2TestCase):
    """
    gRPC's timeout bounds the whole call.
    """

    async def test_before_head(self) -> None:
        """
        No head within C{grpc-timeout}: 504, and the stream is reset
        (CANCEL).
        """
        server = self.server(hold)
        error = await self.failure(self.send(self.client(), server.service(read_timeout=600000), None,
                                             [*GRPC, (b"grpc-timeout", b"50m")]))
        self.assertEqual(error.status, 504)
        await until(lambda: server.streams[0].reset_code == ErrorCodes.CANCEL)

    async def test_after_head(self) -> None:
        """
        The head came, the body did not end within C{grpc-timeout}: the
        body fails, and the stream is reset (CANCEL).
        """
        server = self.server(lambda s: (s.respond(200, GRPC), s.send(b"x")))
        response = await self.send(self.client(), server.service(read_timeout=600000), None,
                                   [*GRPC, (b"grpc-timeout", b"100m")])
        collector = Collector()
        response.deliverBody(collector)
        reason = await collector.end()
        self.assertFalse(reason.check(ResponseDone))
        await until(lambda: server.streams[0].reset_code == ErrorCodes.CANCEL)

    async def test_invalid_ignored(self) -> None:
        """
        An invalid C{grpc-timeout} bounds nothing: the call ends well.
        """
        def handler(stream: ServerStream) -> None:
            stream.respond(200, GRPC)
            reactor.callLater(0.2, lambda: (stream.send(b"late"), stream.trailers([(b"grpc-status", b"0")])))
        server = self.server(handler)
        response = await self.send(self.client(), server.service(), None, [*GRPC, (b"grpc-timeout", b"1x")])
        self.assertEqual(await self.body(response), b"late")

    async def test_read_timeout(self) -> None:
        """
        No head within the service's read timeout: 504.
        """
        server = self.server(hold)
        error = await self.failure(self.send(self.client(), server.service(read_timeout=50)))
        self.assertEqual(error.status, 504)
        await until(lambda: server.streams[0].reset_code == ErrorCodes.CANCEL)


class FlowControlTests(_H2TestCase):
    """
    HTTP/2 flow control both ways: the request body waits for the
    service's window, and a paused reader closes the service's window.
    """

    async def test_request_body_waits_for_window(self) -> None:
        """
        A body larger than the window: the producer is paused once the
        window (65535 bytes) is used up, and resumed when the service opens
        it again; all of it arrives, then the stream ends.
        """
        server = self.server(acknowledge=False)
        body = StreamedBody()
        answered = self.send(self.client(), server.service(), body)
        await until(lambda: body.producers and body.producers[0].consumer is not None)
        producer = body.producers[0]
        chunk = b"x" * 50000
        for _ in range(4):
            producer.consumer.write(chunk)
        await until(lambda: server.streams and len(server.streams[0].body) == 65535)
        stream = server.streams[0]
        self.assertTrue(producer.paused)
        stream.release()
        await until(lambda: not producer.paused)
        producer.consumer.write(b"end")
        producer.finished.callback(None)
        response = await answered
        self.assertEqual(stream.body, chunk * 4 + b"end")
        self.assertEqual(await self.body(response), b"echo:" + stream.body)

    async def test_whole_body_beyond_window(self) -> None:
        """
        A body in memory larger than the window (from L{RequestBody}) goes
        whole.
        """
        server = self.server()
        data = bytes(range(256)) * 1000
        response = await self.send(self.client(), server.service(), RequestBody(data))
        self.assertEqual(await self.body(response), b"echo:" + data)

    async def test_paused_reader_stops_the_service(self) -> None:
        """
        A reader that pauses: the service's window closes (its send waits
        at 65535 bytes); resumed, the rest arrives.
        """
        big = b"y" * 200000
        sent: list[Deferred[None]] = []
        server = self.server(lambda s: (s.respond(200, GRPC), sent.append(s.send(big, end=True))))
        response = await self.send(self.client(), server.service())
        collector = Collector(pause_at=1)
        response.deliverBody(collector)
        await until(lambda: collector.received == 65535 and server.streams[0].blocked)
        await server.connections[0].ping()
        self.assertEqual((collector.received, server.streams[0].blocked), (65535, True))
        self.assertFalse(sent[0].called)
        collector.transport.resumeProducing()  # type: ignore[union-attr]
        (await collector.end()).trap(ResponseDone)
        self.assertEqual(b"".join(collector.chunks), big)

    async def test_unread_body_holds_the_window(self) -> None:
        """
        A body nobody reads yet is held up to the window, and the service
        waits; read later, it all arrives.
        """
        big = b"z" * 100000
        server = self.server(lambda s: (s.respond(200, GRPC), s.send(big, end=True)))
        response = await self.send(self.client(), server.service())
        await until(lambda: server.streams[0].blocked)
        await server.connections[0].ping()
        self.assertTrue(server.streams[0].blocked)
        self.assertIsNone(response.whole_body())
        self.assertEqual(await self.body(response), big)

    async def test_stop_resets(self) -> None:
        """
        A reader that stops: the stream is reset (CANCEL).
        """
        server = self.server(lambda s: (s.respond(200, GRPC), s.send(b"a")))
        response = await self.send(self.client(), server.service())
        collector = Collector()
        response.deliverBody(collector)
        collector.transport.stopProducing()  # type: ignore[union-attr]
        self.assertFalse((await collector.end()).check(ResponseDone))
        await until(lambda: server.streams[0].reset_code == ErrorCodes.CANCEL)


class StreamingTests(_H2TestCase):
    """
    gRPC's bidirectional streaming: the response head and body arrive while
    the request body still streams.
    """

    async def test_head_before_body_ends(self) -> None:
        """
        The service answers on the first message: the head is delivered,
        and each echo read, while the request stays open.
        """
        def handler(stream: ServerStream) -> None:
            stream.respond(200, GRPC)
            stream.on_data = lambda data: stream.send(b"re:" + data)
            stream.body_ended.addCallback(lambda _: stream.trailers([(b"grpc-status", b"0")]))
        server = self.server(handler)
        body = StreamedBody()
        answered = self.send(self.client(), server.service(), body)
        await until(lambda: body.producers and body.producers[0].consumer is not None)
        producer = body.producers[0]
        response = await answered
        collector = Collector()
        response.deliverBody(collector)
        producer.consumer.write(b"one")
        await until(lambda: b"".join(collector.chunks) == b"re:one")
        producer.consumer.write(b"two")
        await until(lambda: b"".join(collector.chunks) == b"re:onere:two")
        self.assertFalse(server.streams[0].ended)
        producer.finished.callback(None)
        (await collector.end()).trap(ResponseDone)
        self.assertEqual(response.trailers, [(b"grpc-status", b"0")])


class PoolTests(_H2TestCase):
    """
    Streams multiplexed on pooled connections.
    """

    async def test_multiplexed(self) -> None:
        """
        Many concurrent calls share one connection.
        """
        server = self.server(hold)
        client = self.client()
        calls = [self.send(client, server.service()) for _ in range(20)]
        await until(lambda: len(server.streams) == 20)
        for stream in server.streams:
            stream.respond(200, GRPC, end=True)
        for call in calls:
            await self.body(await call)
        self.assertEqual(len(server.connections), 1)

    async def test_reused(self) -> None:
        """
        Calls one after another use one connection.
        """
        server = self.server()
        client = self.client()
        for _ in range(3):
            await self.body(await self.send(client, server.service(), RequestBody(b"x")))
        self.assertEqual(len(server.connections), 1)

    async def test_second_connection_when_full(self) -> None:
        """
        A connection at the service's MAX_CONCURRENT_STREAMS takes no more:
        the next call opens a second one.
        """
        server = self.server(hold, max_concurrent_streams=2)
        client = self.client()
        calls = [self.send(client, server.service()) for _ in range(3)]
        await until(lambda: len(server.streams) == 3)
        self.assertEqual(len(server.connections), 2)
        self.assertEqual([s.conn for s in server.streams[:2]], [server.connections[0]] * 2)
        for stream in server.streams:
            stream.respond(200, GRPC, end=True)
        for call in calls:
            await self.body(await call)

    async def test_goaway(self) -> None:
        """
        GOAWAY: a stream above its last stream id goes again on a new
        connection; one below it still ends well; new calls use the new
        connection.
        """
        server = self.server(hold)
        client = self.client()
        first = self.send(client, server.service())
        second = self.send(client, server.service())
        await until(lambda: len(server.streams) == 2)
        old = server.connections[0]
        old.send_goaway(last_stream_id=server.streams[0].id)
        await until(lambda: len(server.streams) == 3)
        self.assertIs(server.streams[2].conn, server.connections[1])
        server.streams[2].respond(200, GRPC, end=True)
        await self.body(await second)
        server.streams[0].respond(200, GRPC)
        server.streams[0].send(b"still", end=True)
        self.assertEqual(await self.body(await first), b"still")
        await old.lost
        third = self.send(client, server.service())
        await until(lambda: len(server.streams) == 4)
        self.assertIs(server.streams[3].conn, server.connections[1])
        server.streams[3].respond(200, GRPC, end=True)
        await self.body(await third)

    async def test_idle_closed(self) -> None:
        """
        A connection left without streams is closed after the idle timeout.
        """
        server = self.server()
        client = self.client(idle_timeout=0.05)
        await self.body(await self.send(client, server.service(), RequestBody(b"x")))
        await server.connections[0].lost
        self.assertEqual(client.connection_count("127.0.0.1", server.port), 0)

    async def test_close(self) -> None:
        """
        C{close()} closes the idle connections.
        """
        server = self.server()
        client = self.client()
        await self.body(await self.send(client, server.service(), RequestBody(b"x")))
        await client.close()
        await server.connections[0].lost


class CancelTests(_H2TestCase):
    """
    Giving a call up.
    """

    async def test_cancel(self) -> None:
        """
        C{cancel()} before the head resets the stream (CANCEL); neither
        callback is called.
        """
        server = self.server(hold)
        outcomes: list[Any] = []
        handle = self.client().send(server.service(), b"POST", b"/a/b", GRPC, None, outcomes.append,
                                    outcomes.append)
        await until(lambda: server.streams)
        handle.cancel()
        await until(lambda: server.streams[0].reset_code == ErrorCodes.CANCEL)
        self.assertEqual((outcomes, handle.called), ([], False))

    async def test_cancel_while_connecting(self) -> None:
        """
        C{cancel()} before the connection is ready: no stream is opened.
        """
        server = self.server()
        outcomes: list[Any] = []
        client = self.client()
        handle = client.send(server.service(), b"POST", b"/a/b", GRPC, None, outcomes.append, outcomes.append)
        handle.cancel()
        await self.body(await self.send(client, server.service(), RequestBody(b"later")))
        self.assertEqual((outcomes, len(server.streams)), ([], 1))
