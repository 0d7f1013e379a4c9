"""
Unit tests of the lean upstream client over a L{MemoryReactorClock} and
L{StringTransport}s: writing requests and C{send}, the interface without
a Deferred; with the harness the other C{test_httpclient_*} modules use.
Parsing, strictness, the pool, exchanges and deadlines, back-pressure and
the settings are tested in L{tests.upstream.test_lean_parsing},
L{tests.upstream.test_lean_strictness}, L{tests.upstream.test_lean_pool},
L{tests.upstream.test_lean_exchange}, L{tests.upstream.test_lean_backpressure}
and L{tests.upstream.test_lean_settings}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from echogate.proxy.streaming import RequestBody
from echogate.upstream.lean import LeanUpstreamClient

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

    def assert_no_timers(self, case: SynchronousTestCase) -> None:
        """
        Nothing is timed any more: no deadline is pending, and the one
        reactor call left, if any, is the deadline queue's (left armed
        after its last deadline), which runs nothing and arms nothing when
        it fires.
        """
        queue = self.client._deadlines
        case.assertEqual(queue.pending, 0)
        calls = self.reactor.getDelayedCalls()
        case.assertEqual([call.func for call in calls], [queue._expire] * len(calls))
        for call in calls:
            self.reactor.advance(max(0.0, call.getTime() - self.reactor.seconds()))
        case.assertEqual(self.reactor.getDelayedCalls(), [])


def lose(protocol: Any, transport: StringTransport, reason: Exception | None = None) -> None:
    """
    The connection closes (as the reactor would report it).
    """
    transport.connected = False
    protocol.connectionLost(Failure(reason or ierror.ConnectionDone()))


def answered(raw: bytes, method: bytes = b"GET") -> tuple[Harness, Any, Any, StringTransport]:
    h = Harness()
    d = h.request(method)
    p, t = h.connect()
    p.dataReceived(raw)
    return h, d, p, t


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _PureParser:
    """
    Runs a test class with L{echogate.upstream.h1parse.ResponseParser}, the parser
    PyPy uses, in place of httptools.
    """

    def setUp(self) -> None:
        from echogate.upstream import connection as http11
        from echogate.upstream import h1parse

        self.patch(http11, "PARSER", h1parse.ResponseParser)
        super().setUp()  # type: ignore[misc]


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

    def test_producerStopFailsLogged(self) -> None:
        """
        A body's producer that raises when the answer stops it (the answer
        came before the body was written) is logged; the response is still
        delivered.
        """

        class Unstoppable:
            length = UNKNOWN_LENGTH

            def startProducing(self, consumer: Any) -> Deferred:
                return Deferred()

            def stopProducing(self) -> None:
                raise RuntimeError("cannot stop")

        class Body:
            def producer(self) -> Any:
                return Unstoppable()

        h = Harness()
        d = h.request(b"POST", body=Body())
        p, t = h.connect()
        p.dataReceived(OK)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertTrue(t.disconnecting)


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
