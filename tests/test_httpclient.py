"""
Unit tests of the lean upstream client over a L{MemoryReactorClock} and
L{StringTransport}s: writing requests, strict response parsing, the
connection pool, deadlines, retries, cancellation and back-pressure.
"""
from __future__ import annotations

import gc
import platform
import weakref
from typing import Any
from unittest import SkipTest

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import FileBodyProducer, PotentialDataLoss, ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from echogate.config import ConfigError, resolve
from echogate.errors import ProxyError
from echogate.httpclient import LeanUpstreamClient, _Exchange
from echogate.streaming import RequestBody
from echogate.upstream import UpstreamClient

SERVICE = {"host": "127.0.0.1", "port": 8080, "protocol": "http", "connect_timeout": 1000,
           "read_timeout": 2000, "write_timeout": 3000, "retries": 2}


class Collector(Protocol):
    """
    Records a body's chunks and how it ended.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reason = reason


class CountingTransport(StringTransport):
    """
    A L{StringTransport} counting write calls.
    """

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.writes += 1
        super().write(b"".join(data))


class Harness:
    """
    A client on a memory reactor; C{connect()} completes the latest
    connection attempt with a L{StringTransport}.
    """

    def __init__(self, **kwargs: Any):
        self.reactor = MemoryReactorClock()
        self.client = LeanUpstreamClient(self.reactor, **kwargs)
        self.used = 0

    def request(self, method: bytes = b"GET", target: bytes = b"/x", body: Any = None,
                service: dict | None = None, headers: Headers | None = None) -> Deferred:
        if headers is None:
            headers = Headers({b"host": [b"upstream"]})
        return self.client.request(service or SERVICE, method, target, headers, body)

    def pending(self) -> int:
        return len(self.reactor.tcpClients) - self.used

    def connect(self) -> tuple[Any, StringTransport]:
        host, port, factory, timeout, _ = self.reactor.tcpClients[self.used]
        self.used += 1
        protocol = factory.buildProtocol(None)
        transport = CountingTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def refuse(self, error: Exception | None = None) -> None:
        _, _, factory, _, _ = self.reactor.tcpClients[self.used]
        self.used += 1
        factory.clientConnectionFailed(None, Failure(error or ierror.ConnectionRefusedError()))


def lose(protocol: Any, transport: StringTransport, reason: Exception | None = None) -> None:
    """
    The connection closes (as the reactor would report it).
    """
    transport.connected = False
    protocol.connectionLost(Failure(reason or ierror.ConnectionDone()))


class RequestWritingTests(SynchronousTestCase):
    def test_headWithoutBody(self) -> None:
        """
        A request without body is its request line and headers, in one write.
        """
        h = Harness()
        h.request(headers=Headers({b"host": [b"up"], b"x-a": [b"1", b"2"]}))
        _, t = h.connect()
        self.assertEqual(t.value(), b"GET /x HTTP/1.1\r\nHost: up\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
        self.assertEqual(t.writes, 1)

    def test_postWithoutBody(self) -> None:
        """
        A POST without body says Content-Length: 0.
        """
        h = Harness()
        h.request(b"POST")
        _, t = h.connect()
        self.assertIn(b"\r\nContent-Length: 0\r\n\r\n", t.value())

    def test_smallBodyOneWrite(self) -> None:
        """
        A body in memory goes with the head, Content-Length set, in one write.
        """
        h = Harness()
        h.request(b"POST", body=RequestBody(data=b"hello"))
        _, t = h.connect()
        self.assertTrue(t.value().endswith(b"\r\nContent-Length: 5\r\n\r\nhello"))
        self.assertEqual(t.writes, 1)

    def test_fileBodyStreamed(self) -> None:
        """
        A body from a file is written as its producer produces, after the
        head with its Content-Length.
        """
        import tempfile

        f = tempfile.TemporaryFile()
        f.write(b"x" * 10)
        f.flush()
        h = Harness()
        h.request(b"PUT", body=RequestBody(file=f))
        _, t = h.connect()
        self.assertTrue(t.value().endswith(b"Content-Length: 10\r\n\r\n"))
        self.assertIsInstance(t.producer, FileBodyProducer)
        t.producer._task._iterator.__next__()  # type: ignore[attr-defined]
        self.assertTrue(t.value().endswith(b"\r\n\r\n" + b"x" * 10))
        t.producer.stopProducing()
        f.close()

    def test_unknownLengthChunked(self) -> None:
        """
        A producer of unknown length is sent chunked.
        """

        class Unknown:
            length = UNKNOWN_LENGTH

            def startProducing(self, consumer: Any) -> Deferred:
                consumer.write(b"abc")
                d: Deferred = Deferred()
                d.callback(None)
                return d

            def stopProducing(self) -> None:
                pass

        class Body:
            def producer(self) -> Any:
                return Unknown()

        h = Harness()
        h.request(b"POST", body=Body())
        _, t = h.connect()
        self.assertTrue(t.value().endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))


def answered(raw: bytes, method: bytes = b"GET") -> tuple[Harness, Any, Any, StringTransport]:
    h = Harness()
    d = h.request(method)
    p, t = h.connect()
    p.dataReceived(raw)
    return h, d, p, t


class ParsingTests(SynchronousTestCase):
    def body_of(self, response: Any) -> Collector:
        c = Collector()
        response.deliverBody(c)
        return c

    def test_contentLength(self) -> None:
        """
        A Content-Length body: code, phrase, headers (without connection
        control ones), length, the body and ResponseDone.
        """
        h, d, p, t = answered(b"HTTP/1.1 201 Made\r\nContent-Length: 3\r\nX-A: b\r\nConnection: keep-alive\r\n\r\nabc")
        r = self.successResultOf(d)
        self.assertEqual((r.code, r.phrase, r.length, r.version), (201, b"Made", 3, (b"HTTP", 1, 1)))
        self.assertEqual(r.headers.getRawHeaders(b"x-a"), [b"b"])
        self.assertFalse(r.headers.hasHeader(b"content-length"))
        self.assertFalse(r.headers.hasHeader(b"connection"))
        c = self.body_of(r)
        self.assertEqual(b"".join(c.chunks), b"abc")
        self.assertTrue(c.reason.check(ResponseDone))

    def test_wholeAnswerInOneRead(self) -> None:
        """
        The response is handed over once the read that brought its head is
        parsed: an answer that came whole is complete when the caller gets
        it (body and end at once, the connection already back in the pool),
        so the caller need not wait, or time, the rest.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        seen: list[Any] = []

        def got(response: Any) -> None:
            c = self.body_of(response)
            seen.append((b"".join(c.chunks), c.reason, h.client.idle_count("127.0.0.1", 8080)))

        d.addCallback(got)
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        [(body, reason, idle)] = seen
        self.assertEqual(body, b"ok")
        self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(idle, 1)

    def test_endToEndHeaders(self) -> None:
        """
        C{headers} holds only end-to-end headers: hop-by-hop ones and the
        names the Connection header lists are left out; C{raw_headers}
        keeps every line as sent, in order.
        """
        head = (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x-private, Keep-Alive\r\n"
                b"X-Private: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: x-t\r\n"
                b"X-Public: p\r\nX-Public: q\r\n\r\n")
        h, d, p, t = answered(head)
        r = self.successResultOf(d)
        self.assertEqual(list(r.headers.getAllRawHeaders()), [(b"X-Public", [b"p", b"q"])])
        self.assertEqual([name for name, _ in r.raw_headers],
                         [b"Content-Length", b"Connection", b"X-Private", b"Keep-Alive", b"Proxy-Authenticate",
                          b"Trailer", b"X-Public", b"X-Public"])
        self.assertEqual(r.end_to_end, [(b"X-Public", b"p"), (b"X-Public", b"q")])
        self.assertFalse(r.via)

    def test_wholeBody(self) -> None:
        """
        A body that all came (and ended) before anything was asked of it is
        taken whole, once; the response then refuses C{deliverBody}.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        response = self.successResultOf(d)
        self.assertEqual(response.whole_body(), b"hello")
        self.assertIsNone(response.whole_body())
        self.assertRaises(RuntimeError, response.deliverBody, Collector())
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_wholeBodyEmpty(self) -> None:
        """
        An answer without a body (here to HEAD) has an empty whole body.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method=b"HEAD")
        self.assertEqual(self.successResultOf(d).whole_body(), b"")

    def test_noWholeBody(self) -> None:
        """
        No whole body while part of it is still to come (it is then
        delivered as usual), when the body ends with the connection, or
        after C{deliverBody}.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        response = self.successResultOf(d)
        self.assertIsNone(response.whole_body())
        c = self.body_of(response)
        p.dataReceived(b"cdef")
        self.assertEqual(b"".join(c.chunks), b"abcdef")
        self.assertTrue(c.reason.check(ResponseDone))

        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
        response = self.successResultOf(d)
        p.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertIsNone(response.whole_body())

        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        response = self.successResultOf(d)
        self.body_of(response)
        self.assertIsNone(response.whole_body())

    def test_noCycleWithTheBodyProtocol(self) -> None:
        """
        Once its body was delivered, a response no longer refers to the
        body's protocol (which holds the response as its transport), so
        reference counting frees both, and the request they reach, without
        the cyclic garbage collector: whether the body was all there when
        C{deliverBody} was called or came after.
        """
        if platform.python_implementation() != "CPython":
            raise SkipTest("reference counting frees the objects at once on CPython only")
        for parts in ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                      [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"ok"]):
            h, d, p, t = answered(parts[0])
            response = self.successResultOf(d)
            collector = self.body_of(response)
            for part in parts[1:]:
                p.dataReceived(part)
            self.assertTrue(collector.reason.check(ResponseDone))
            gone = weakref.ref(collector)
            gc.disable()
            try:
                del collector, response, d
                self.assertIsNone(gone(), parts)
            finally:
                gc.enable()

    def test_endToEndPairs(self) -> None:
        """
        C{end_to_end} holds the end-to-end lines as sent (names as written,
        in order); C{via} says whether a Via header is among them, unless
        the Connection header lists it.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-lower: 1\r\nVia: 1.0 cache\r\n"
                              b"X-Upper: 2\r\n\r\n")
        r = self.successResultOf(d)
        self.assertEqual(r.end_to_end, [(b"x-lower", b"1"), (b"Via", b"1.0 cache"), (b"X-Upper", b"2")])
        self.assertTrue(r.via)
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: via\r\nVia: 1.0 cache\r\n\r\n")
        r = self.successResultOf(d)
        self.assertEqual(r.end_to_end, [])
        self.assertFalse(r.via)

    def test_bodyInParts(self) -> None:
        """
        Body bytes arriving after deliverBody are passed on as they come.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        c = self.body_of(self.successResultOf(d))
        self.assertEqual(c.chunks, [b"ab"])
        self.assertIsNone(c.reason)
        p.dataReceived(b"cdef")
        self.assertEqual(c.chunks, [b"ab", b"cdef"])
        self.assertTrue(c.reason.check(ResponseDone))

    def test_headInParts(self) -> None:
        """
        A head split over several reads is parsed once complete.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nX-Lo")
        self.assertNoResult(d)
        p.dataReceived(b"ng: yes\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.successResultOf(d).headers.getRawHeaders(b"x-long"), [b"yes"])

    def test_chunked(self) -> None:
        """
        A chunked body is decoded; its length is unknown.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        r = self.successResultOf(d)
        self.assertIs(r.length, UNKNOWN_LENGTH)
        c = self.body_of(r)
        self.assertEqual(b"".join(c.chunks), b"abcde")
        self.assertTrue(c.reason.check(ResponseDone))

    def test_closeDelimited(self) -> None:
        """
        A body without length ends with the connection: PotentialDataLoss,
        and the connection is not kept.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\n\r\nsome")
        r = self.successResultOf(d)
        c = self.body_of(r)
        p.dataReceived(b" more")
        lose(p, t)
        self.assertEqual(b"".join(c.chunks), b"some more")
        self.assertTrue(c.reason.check(PotentialDataLoss))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_headResponse(self) -> None:
        """
        A response to HEAD has no body, whatever its Content-Length says,
        and its connection is reused.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", method=b"HEAD")
        r = self.successResultOf(d)
        c = self.body_of(r)
        self.assertEqual(c.chunks, [])
        self.assertTrue(c.reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_headResponseWithBytesAfter(self) -> None:
        """
        Bytes after a HEAD response's head make its connection unusable.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", method=b"HEAD")
        self.assertTrue(self.body_of(self.successResultOf(d)).reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertTrue(t.disconnecting)

    def test_noBodyCodes(self) -> None:
        """
        204 and 304 responses have no body.
        """
        for code in (b"204 No Content", b"304 Not Modified"):
            h, d, p, t = answered(b"HTTP/1.1 " + code + b"\r\nContent-Length: 10\r\n\r\n")
            r = self.successResultOf(d)
            self.assertEqual(r.length, 0)
            self.assertTrue(self.body_of(r).reason.check(ResponseDone))
            self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_interimSkipped(self) -> None:
        """
        1xx responses are skipped; the final response is the result.
        """
        h, d, p, t = answered(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        r = self.successResultOf(d)
        self.assertEqual(r.code, 200)
        self.assertFalse(r.headers.hasHeader(b"link"))
        self.assertEqual(self.body_of(r).chunks, [b"ok"])

    def test_http10(self) -> None:
        """
        An HTTP/1.0 response's connection is closed after it.
        """
        h, d, p, t = answered(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        r = self.successResultOf(d)
        self.assertEqual(r.version, (b"HTTP", 1, 0))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertTrue(t.disconnecting)


class StrictnessTests(SynchronousTestCase):
    def assertBadGateway(self, raw: bytes) -> None:
        h, d, p, t = answered(raw)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertTrue(t.disconnected or t.disconnecting)

    def assertBodyFails(self, raw: bytes) -> None:
        h, d, p, t = answered(raw)
        c = Collector()
        self.successResultOf(d).deliverBody(c)
        self.assertTrue(c.reason.check(ResponseFailed))
        self.assertTrue(t.disconnected or t.disconnecting)
        lose(p, t)  # the abort's report changes nothing
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_contentLengthAndChunked(self) -> None:
        """
        Content-Length together with Transfer-Encoding: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

    def test_conflictingContentLengths(self) -> None:
        """
        Two different Content-Lengths: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")

    def test_badContentLength(self) -> None:
        """
        A Content-Length that is not a number: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc")

    def test_badStatusLine(self) -> None:
        """
        A status line that is not HTTP: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 abc OK\r\n\r\n")
        self.assertBadGateway(b"SMTP ready\r\n\r\n")

    def test_badHeaderLine(self) -> None:
        """
        A header line without a colon: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")

    def test_switchingProtocols(self) -> None:
        """
        101 Switching Protocols (never asked for): 502.
        """
        self.assertBadGateway(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")

    def test_headTooLarge(self) -> None:
        """
        A head beyond 64 KiB: 502, even before it is complete.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000)

    def test_tooManyHeaders(self) -> None:
        """
        More than 100 header lines: 502.
        """
        self.assertBadGateway(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n")

    def test_badChunkSize(self) -> None:
        """
        A chunk size that is not hexadecimal fails the body.
        """
        self.assertBodyFails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")

    def test_chunkWithoutCRLF(self) -> None:
        """
        A chunk not followed by CRLF fails the body.
        """
        self.assertBodyFails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n")

    def test_truncatedBody(self) -> None:
        """
        A connection closed before Content-Length bytes fails the body.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        c = Collector()
        self.successResultOf(d).deliverBody(c)
        lose(p, t)
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_closedBeforeHead(self) -> None:
        """
        A fresh connection closed before any answer: 502, not retried.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)

    def test_unsolicitedBytes(self) -> None:
        """
        An idle connection that sends bytes is dropped.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        p.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(t.disconnected or t.disconnecting)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_bytesAfterResponse(self) -> None:
        """
        Bytes following a response in the same read make its connection unusable.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class PoolTests(SynchronousTestCase):
    def test_reused(self) -> None:
        """
        A kept-alive connection serves the next request: no new connection.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d).deliverBody(Collector())
        t.clear()
        d2 = h.request(target=b"/y")
        self.assertEqual(h.pending(), 0)
        self.assertTrue(t.value().startswith(b"GET /y HTTP/1.1\r\n"))
        p.dataReceived(OK)
        self.assertEqual(self.successResultOf(d2).code, 200)

    def test_notReusedBeforeBodyRead(self) -> None:
        """
        A connection whose body is still arriving is not lent to another request.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        h.request()
        self.assertEqual(h.pending(), 1)

    def test_connectionClose(self) -> None:
        """
        Connection: close in the response: the connection is closed, not kept.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_idleBound(self) -> None:
        """
        At most max_idle_per_host idle connections are kept; others are closed.
        """
        h = Harness(max_idle_per_host=1)
        h.request(), h.request()
        p1, t1 = h.connect()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        p2.dataReceived(OK)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        self.assertFalse(t1.disconnecting)
        self.assertTrue(t2.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        An idle connection is closed after idle_timeout seconds.
        """
        h = Harness(idle_timeout=5)
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        h.reactor.advance(4)
        self.assertFalse(t.disconnecting)
        h.reactor.advance(1)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_idleTimeoutEach(self) -> None:
        """
        Each idle connection gets its own idle_timeout from when it was
        released, whatever the others do; one taken again is not closed.
        """
        h = Harness(idle_timeout=5)
        first, second = h.request(), h.request()
        p1, t1 = h.connect()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        h.reactor.advance(1.5)
        p2.dataReceived(OK)
        self.successResultOf(first), self.successResultOf(second)
        h.reactor.advance(3.5)  # t=5: the first one is 5 s idle, the second 3.5 s
        self.assertTrue(t1.disconnecting)
        self.assertFalse(t2.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)
        h.reactor.advance(1)
        d = h.request()  # t=6: takes the second one again
        h.reactor.advance(1.5)
        self.assertFalse(t2.disconnecting)
        p2.dataReceived(OK)  # released again at t=7.5
        self.successResultOf(d)
        h.reactor.advance(4.9)
        self.assertFalse(t2.disconnecting)
        h.reactor.advance(0.1)
        self.assertTrue(t2.disconnecting)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_idleClosedByPeer(self) -> None:
        """
        An idle connection the upstream closes leaves the pool.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_close(self) -> None:
        """
        close() closes every idle connection and fires once they are closed.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        d = h.client.close()
        self.assertTrue(t.disconnecting)
        self.assertNoResult(d)
        lose(p, t)
        self.successResultOf(d)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_ipv6(self) -> None:
        """
        An IPv6 service is connected to by address.
        """
        h = Harness()
        h.request(service=dict(SERVICE, host="::1"))
        self.assertEqual(h.reactor.tcpClients[0][:2], ("::1", 8080))


class HttpsTests(SynchronousTestCase):
    def test_delegated(self) -> None:
        """
        https services go through an L{UpstreamClient} (Agent with TLS).
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, protocol="https", port=8443))
        self.assertIsInstance(h.client._tls, UpstreamClient)
        self.assertEqual(h.reactor.tcpClients[0][:2], ("127.0.0.1", 8443))
        d.cancel()
        self.failureResultOf(d)


class StaleConnectionTests(SynchronousTestCase):
    def kept(self) -> tuple[Harness, Any, StringTransport]:
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        return h, p, t

    def test_idempotentRetried(self) -> None:
        """
        A GET on a reused connection closed before answering is sent again
        on a fresh connection.
        """
        h, p, t = self.kept()
        d = h.request()
        lose(p, t)
        self.assertNoResult(d)
        p2, t2 = h.connect()
        self.assertTrue(t2.value().startswith(b"GET /x"))
        p2.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_retriedOnce(self) -> None:
        """
        The stale retry happens once: a fresh connection closing is a 502.
        """
        h, p, t = self.kept()
        d = h.request()
        lose(p, t)
        p2, t2 = h.connect()
        lose(p2, t2)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)

    def test_postNotRetried(self) -> None:
        """
        A POST on a stale connection is not replayed: 502.
        """
        h, p, t = self.kept()
        d = h.request(b"POST", body=RequestBody(data=b"x"))
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)

    def test_staleRetryIsNotAConnectRetry(self) -> None:
        """
        The stale retry does not use up the service's connection retries.
        """
        h, p, t = self.kept()
        d = h.request(service=dict(SERVICE, retries=1))
        lose(p, t)
        h.refuse()
        self.assertNoResult(d)
        p2, t2 = h.connect()
        p2.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_notRetriedAfterBytes(self) -> None:
        """
        A reused connection that sent part of an answer is not retried.
        """
        h, p, t = self.kept()
        d = h.request()
        p.dataReceived(b"HTTP/1.1 200")
        lose(p, t)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.pending(), 0)


class ExchangeTests(SynchronousTestCase):
    def test_refusedRetriedThen502(self) -> None:
        """
        Refused connections are retried up to retries times, then 502.
        """
        h = Harness()
        d = h.request()
        h.refuse()
        h.refuse()
        self.assertNoResult(d)
        h.refuse()
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 502)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_refusedThenConnected(self) -> None:
        """
        A retry that connects gives the response.
        """
        h = Harness()
        d = h.request()
        h.refuse()
        p, t = h.connect()
        p.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_connectTimeout(self) -> None:
        """
        Connect timeouts (after the retries): 504; the endpoint has the
        service's connect timeout.
        """
        h = Harness()
        d = h.request(service=dict(SERVICE, retries=0))
        self.assertEqual(h.reactor.tcpClients[0][3], 1.0)
        h.refuse(ierror.TimeoutError())
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_deadline(self) -> None:
        """
        No response head within read_timeout: 504, connection aborted.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        h.reactor.advance(1.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)
        self.assertTrue(t.disconnected)
        lose(p, t)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_deadlineWithBody(self) -> None:
        """
        With a body, the deadline is read_timeout + write_timeout.
        """
        h = Harness()
        d = h.request(b"POST", body=RequestBody(data=b"x"))
        h.connect()
        h.reactor.advance(4.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_headStopsDeadline(self) -> None:
        """
        Once the head arrived, the deadline no longer applies.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.successResultOf(d)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling while connecting stops the attempt; no retry.
        """
        h = Harness()
        d = h.request()
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(h.pending(), 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(len(h.reactor.tcpClients), 1)

    def test_cancelWhileWaiting(self) -> None:
        """
        Cancelling after the request was sent aborts its connection.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(t.disconnected)
        lose(p, t)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertEqual(h.reactor.getDelayedCalls(), [])


class DeadlineTests(SynchronousTestCase):
    """
    The requests' deadlines share one reactor call and each still expires
    at its own time.
    """

    def test_oneCallForMany(self) -> None:
        """
        Requests waiting at once have one reactor call between them.
        """
        h = Harness()
        for _ in range(3):
            h.request()
            h.reactor.advance(0.5)
        self.assertEqual(len(h.reactor.getDelayedCalls()), 1)

    def test_eachOnItsOwnTime(self) -> None:
        """
        A request sent after one that was answered times out read_timeout
        after it was sent, not with the first one's deadline.
        """
        h = Harness()
        first = h.request()
        p1, _ = h.connect()
        h.reactor.advance(1)
        second = h.request()
        p2, t2 = h.connect()
        p1.dataReceived(OK)
        self.successResultOf(first)
        h.reactor.advance(1)
        self.assertNoResult(second)
        h.reactor.advance(0.9)
        self.assertNoResult(second)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(second, ProxyError).value.status, 504)
        self.assertTrue(t2.disconnected)

    def test_waitingOnesTimeOutInOrder(self) -> None:
        """
        Requests left waiting time out one by one, each at its deadline.
        """
        h = Harness()
        first = h.request()
        h.connect()
        h.reactor.advance(1)
        second = h.request()
        h.connect()
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(first, ProxyError).value.status, 504)
        self.assertNoResult(second)
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(second, ProxyError).value.status, 504)

    def test_shorterTimeoutFirst(self) -> None:
        """
        A request to a service with a shorter read_timeout, sent later,
        times out first, at its own deadline.
        """
        h = Harness()
        slow = h.request()
        h.connect()
        h.reactor.advance(0.5)
        quick = h.request(service=dict(SERVICE, read_timeout=500))
        h.connect()
        h.reactor.advance(0.4)
        self.assertNoResult(quick)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(quick, ProxyError).value.status, 504)
        self.assertNoResult(slow)
        h.reactor.advance(1)
        self.assertEqual(self.failureResultOf(slow, ProxyError).value.status, 504)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_staleRetryNewDeadline(self) -> None:
        """
        The retry of a request whose kept-alive connection was stale gets
        a whole read_timeout from when it is sent again.
        """
        h = Harness()
        h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        d = h.request()
        h.reactor.advance(1.5)
        lose(p, t)
        h.connect()
        h.reactor.advance(1.9)
        self.assertNoResult(d)
        h.reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.status, 504)

    def test_answeredNotKept(self) -> None:
        """
        An answered request's deadline, left queued behind a waiting one,
        does not keep the request alive.
        """
        h = Harness()
        h.request()
        h.connect()
        d = h.request()
        p, _ = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d)
        del d
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, _Exchange) and o._client is h.client]
        self.assertEqual(len(kept), 1)

    def test_closeStopsDeadlines(self) -> None:
        """
        close() leaves no reactor call behind, even with a request waiting.
        """
        h = Harness()
        h.request()
        h.connect()
        self.successResultOf(h.client.close())
        self.assertEqual(h.reactor.getDelayedCalls(), [])


class BackPressureTests(SynchronousTestCase):
    def streaming(self) -> tuple[Any, StringTransport, Any]:
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        return p, t, self.successResultOf(d)

    def test_pauseResume(self) -> None:
        """
        The body protocol's transport pauses and resumes the connection.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.pauseProducing()
        self.assertEqual(t.producerState, "paused")
        c.transport.resumeProducing()
        self.assertEqual(t.producerState, "producing")

    def test_stopProducing(self) -> None:
        """
        stopProducing aborts the connection; the body fails, nothing is pooled.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.stopProducing()
        self.assertTrue(t.disconnected)
        lose(p, t, ierror.ConnectionAborted())
        self.assertTrue(c.reason.check(ResponseFailed))

    def test_bufferedUntilDelivered(self) -> None:
        """
        Body bytes before deliverBody are held (the connection paused past
        64 KiB) and delivered at once.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"a" * 65537)
        r = self.successResultOf(d)
        self.assertEqual(t.producerState, "paused")
        c = Collector()
        r.deliverBody(c)
        self.assertEqual(t.producerState, "producing")
        self.assertEqual(len(b"".join(c.chunks)), 65537)
        p.dataReceived(b"a" * 4463)
        self.assertTrue(c.reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_pausedConnectionResumedWhenPooled(self) -> None:
        """
        A connection paused by its body's reader is resumed when it goes
        back to the pool.
        """
        p, t, r = self.streaming()
        c = Collector()
        r.deliverBody(c)
        c.transport.pauseProducing()
        p.dataReceived(b"0123456789")
        self.assertEqual(t.producerState, "producing")
        c.transport.pauseProducing()  # after the end: no effect on the pooled connection
        self.assertEqual(t.producerState, "producing")


class SettingTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        upstream_client defaults to lean (on CPython) and shows in public().
        """
        self.patch(platform, "python_implementation", lambda: "CPython")
        settings = resolve({}, {}, None)
        self.assertEqual(settings.upstream_client, "lean")
        self.assertEqual(settings.public()["upstream_client"], "lean")
        self.assertEqual((settings.upstream_keepalive_pool_size, settings.upstream_keepalive_idle_timeout), (1000, 60))

    def test_autoOnPyPy(self) -> None:
        """
        On PyPy too, the default (auto) is lean (whose parser there is
        echogate's own); lean and agent still mean themselves.
        """
        self.patch(platform, "python_implementation", lambda: "PyPy")
        self.assertEqual(resolve({}, {}, None).upstream_client, "lean")
        self.assertEqual(resolve({"upstream_client": "Auto"}, {}, None).upstream_client, "lean")
        self.assertEqual(resolve({"upstream_client": "agent"}, {}, None).upstream_client, "agent")

    def test_autoOnCPython(self) -> None:
        """
        On CPython, auto is lean.
        """
        self.patch(platform, "python_implementation", lambda: "CPython")
        self.assertEqual(resolve({"upstream_client": "auto"}, {}, None).upstream_client, "lean")

    def test_agent(self) -> None:
        """
        upstream_client accepts agent (and LEAN, any case).
        """
        self.assertEqual(resolve({"upstream_client": "agent"}, {}, None).upstream_client, "agent")
        self.assertEqual(resolve({"upstream_client": "LEAN"}, {}, None).upstream_client, "lean")

    def test_serviceUsesIt(self) -> None:
        """
        The gateway's data path gets the client the setting names.
        """
        from echogate.service import GatewayService

        for value, kind in (("lean", LeanUpstreamClient), ("agent", UpstreamClient)):
            settings = resolve({"upstream_client": value, "proxy_listen": "tcp:0"}, {}, None)
            service = GatewayService(MemoryReactorClock(), settings, {})
            service.bind()
            self.assertIsInstance(service.upstream, kind)
            self.assertIs(service.gateway._upstream, service.upstream)

    def test_keepaliveSettings(self) -> None:
        """
        upstream_keepalive_pool_size and upstream_keepalive_idle_timeout
        reach either client; a pool size of 0 keeps no connection.
        """
        from echogate.service import GatewayService

        settings = resolve({"upstream_client": "lean", "upstream_keepalive_pool_size": "0",
                            "upstream_keepalive_idle_timeout": "7", "proxy_listen": "tcp:0"}, {}, None)
        service = GatewayService(MemoryReactorClock(), settings, {})
        service.bind()
        h = Harness()
        h.client = service.upstream
        h.reactor = service._reactor
        d = h.request()
        p, t = h.connect()
        p.dataReceived(OK)
        self.successResultOf(d)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        settings = resolve({"upstream_client": "agent", "upstream_keepalive_pool_size": "3",
                            "upstream_keepalive_idle_timeout": "7", "proxy_listen": "tcp:0"}, {}, None)
        service = GatewayService(MemoryReactorClock(), settings, {})
        service.bind()
        pool = service.upstream.pool
        self.assertEqual((pool.persistent, pool.maxPersistentPerHost, pool.cachedConnectionTimeout), (True, 3, 7.0))

    def test_bad(self) -> None:
        """
        Any other value is a ConfigError naming the setting and its choices.
        """
        e = self.assertRaises(ConfigError, resolve, {"upstream_client": "curl"}, {}, None)
        self.assertIn("upstream_client", str(e))
        self.assertIn("'auto', 'agent' or 'lean'", str(e))


class _PureParser:
    """
    Runs a test class with L{echogate.h1parse.ResponseParser}, the parser
    PyPy uses, in place of httptools.
    """

    def setUp(self) -> None:
        from echogate import h1parse, http11

        self.patch(http11, "PARSER", h1parse.ResponseParser)
        super().setUp()  # type: ignore[misc]


class PureParsingTests(_PureParser, ParsingTests):
    """
    L{ParsingTests} with echogate's own parser.
    """


class PureStrictnessTests(_PureParser, StrictnessTests):
    """
    L{StrictnessTests} with echogate's own parser.
    """


class PurePoolTests(_PureParser, PoolTests):
    """
    L{PoolTests} with echogate's own parser.
    """


class PureStaleConnectionTests(_PureParser, StaleConnectionTests):
    """
    L{StaleConnectionTests} with echogate's own parser.
    """


class SendTests(SynchronousTestCase):
    """
    C{send}: the client's interface without a Deferred (the gateway's data
    path), calling back with the caller's arguments.
    """

    def send(self, h: Harness, service: dict | None = None) -> tuple[Any, list]:
        calls: list = []
        handle = h.client.send(service or SERVICE, b"GET", b"/x", Headers({b"host": [b"u"]}), None,
                               lambda r, *a: calls.append(("response", r, a)),
                               lambda f, *a: calls.append(("failure", f, a)), ("one", 2))
        return handle, calls

    def test_callback(self) -> None:
        """
        The response goes to C{callback} with the arguments; C{called}
        says so.
        """
        h = Harness()
        handle, calls = self.send(h)
        self.assertFalse(handle.called)
        p, _ = h.connect()
        p.dataReceived(OK)
        [(kind, response, args)] = calls
        self.assertEqual((kind, response.code, args), ("response", 200, ("one", 2)))
        self.assertTrue(handle.called)

    def test_errback(self) -> None:
        """
        A failure goes to C{errback} as a L{ProxyError} failure, with the
        arguments.
        """
        h = Harness()
        handle, calls = self.send(h, dict(SERVICE, retries=0))
        h.refuse()
        [(kind, failure, args)] = calls
        self.assertEqual((kind, failure.value.status, args), ("failure", 502, ("one", 2)))
        self.assertIsInstance(failure, Failure)
        self.assertTrue(handle.called)

    def test_cancel(self) -> None:
        """
        C{cancel()} aborts the connection and nothing is called, then or
        later; no timer is left.
        """
        h = Harness()
        handle, calls = self.send(h)
        p, t = h.connect()
        handle.cancel()
        self.assertTrue(t.disconnected)
        lose(p, t)
        h.reactor.advance(10)
        self.assertEqual(calls, [])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_callbackRaises(self) -> None:
        """
        An exception from C{callback} is logged, and does not break the
        connection, which goes back to the pool.
        """
        h = Harness()
        h.client.send(SERVICE, b"GET", b"/x", Headers(), None, lambda r: 1 / 0, lambda f: None)
        p, t = h.connect()
        p.dataReceived(OK)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(t.disconnected)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_withRequestOnly(self) -> None:
        """
        L{send_with_request} gives a client that has only C{request} the
        same interface; its Deferred is the handle.
        """
        from echogate.upstream import send_with_request

        class OnlyRequest:
            def __init__(self) -> None:
                self.pending: Deferred = Deferred()

            def request(self, *a: Any) -> Deferred:
                return self.pending

        client = OnlyRequest()
        calls: list = []
        handle = send_with_request(client, SERVICE, b"GET", b"/", [], None,
                                   lambda r, *a: calls.append((r, a)), lambda f, *a: calls.append((f, a)), ("x",))
        self.assertIs(handle, client.pending)
        self.assertFalse(handle.called)
        client.pending.callback("response")
        self.assertEqual(calls, [("response", ("x",))])
