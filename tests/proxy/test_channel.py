"""
Unit tests for L{echogate.proxy.channel}: its timers on a L{Clock}, and
the head checks on their own.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from echogate.proxy.heads import HeadLimits, head_error
from echogate.proxy.site import GatewaySite


class _Silent(Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        return NOT_DONE_YET


def connect(limits: HeadLimits, resource: Resource | None = None) -> tuple[Any, StringTransport, Clock]:
    """
    A channel of a site of C{resource} (one that answers nothing by
    default), connected to a L{StringTransport}, on a L{Clock}.
    """
    clock = Clock()
    site = GatewaySite(resource if resource is not None else _Silent(), reactor=clock)
    site.head_limits = limits
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    channel.callLater = clock.callLater
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, clock


class SendTimeoutTests(SynchronousTestCase):
    """
    A client that reads nothing of a response for send_timeout is cut off.
    """

    def test_stalledReaderCut(self) -> None:
        """
        The transport says its buffer is full and never drains: the
        connection is aborted after send_timeout.
        """
        channel, transport, clock = connect(HeadLimits(send_timeout=5))
        channel.pauseProducing()
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnected)

    def test_drainedReaderKept(self) -> None:
        """
        A client that reads again in time keeps its connection.
        """
        channel, transport, clock = connect(HeadLimits(send_timeout=5))
        channel.pauseProducing()
        clock.advance(4)
        channel.resumeProducing()
        clock.advance(10)
        self.assertFalse(transport.disconnected)


class HeadTimeoutTests(SynchronousTestCase):
    """
    client_header_timeout is a total for the head, whatever arrives.
    """

    def test_dripResetsNothing(self) -> None:
        """
        Bytes arriving every second do not keep a head open past the
        deadline: 408 at the deadline.
        """
        channel, transport, clock = connect(HeadLimits(header_timeout=10))
        for byte in b"GET / HTTP/1.1\r\nHost: x":
            channel.dataReceived(bytes([byte]))
            clock.advance(1)
            if transport.value():
                break
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"), transport.value())
        self.assertTrue(transport.disconnecting)

    def test_noTimerBetweenRequests(self) -> None:
        """
        A connection with nothing sent has no head timer running.
        """
        channel, transport, clock = connect(HeadLimits(header_timeout=10))
        self.assertIsNone(channel._head_call)
        clock.advance(30)
        self.assertEqual(transport.value(), b"")


class BodyTimeoutTests(SynchronousTestCase):
    """
    client_body_timeout runs between reads of a body.
    """

    def test_resetByEachRead(self) -> None:
        """
        A body that keeps coming within the timeout is not cut; one that
        stops is answered 408.
        """
        channel, transport, clock = connect(HeadLimits(body_timeout=5))
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(5):
            clock.advance(4)
            channel.dataReceived(b"a" * 10)
        self.assertEqual(transport.value(), b"")
        clock.advance(5)
        self.assertIn(b" 408 ", transport.value().split(b"\r\n")[0])


class HeadErrorTests(SynchronousTestCase):
    """
    L{head_error} on requests made by hand.
    """

    def request(self, method: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        from twisted.web.http_headers import Headers

        class _R:
            pass

        r = _R()
        r.method = method
        r.requestHeaders = Headers()
        for name, value in headers:
            r.requestHeaders.addRawHeader(name, value)
        return r

    def test_hosts(self) -> None:
        """
        Valid hosts pass; invalid ones are 400.
        """
        for host in (b"h.test", b"h.test:8000", b"[::1]", b"[::1]:1", b"127.0.0.1:65535", b"xn--bcher-kva.test"):
            self.assertIsNone(head_error(self.request(b"GET", [(b"Host", host)]), b"HTTP/1.1"), host)
        for host in (b"", b"h.test:65536", b"h.test:", b":80", b"h test", b"h/x", b"[::1", b"h.test:1:2"):
            self.assertEqual(head_error(self.request(b"GET", [(b"Host", host)]), b"HTTP/1.1"), 400, host)

    def test_chunkedOnly(self) -> None:
        """
        One C{chunked} coding (any case) in HTTP/1.1 is the only one taken.
        """
        host = (b"Host", b"h")
        self.assertIsNone(head_error(self.request(b"POST", [host, (b"Transfer-Encoding", b"Chunked")]),
                                     b"HTTP/1.1"))
        for coding in (b"gzip, chunked", b"identity", b"chunked, chunked"):
            self.assertEqual(head_error(self.request(b"POST", [host, (b"Transfer-Encoding", coding)]),
                                        b"HTTP/1.1"), 400, coding)


class _Holding(Resource):
    """
    A resource that takes heads first and never lets the body be read
    (access still running).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.heads: list[Any] = []

    def head(self, request: Any) -> None:
        self.heads.append(request)

    def render(self, request: Any) -> Any:
        raise AssertionError("rendered before its head was let through")


class HeldBodyTimeoutTests(SynchronousTestCase):
    """
    client_body_timeout does not run while the gateway holds the body (its
    own access phase is the slow one).
    """

    def test_notWhileHeld(self) -> None:
        """
        Body bytes that came with the head, then a slow access phase: no
        408 and no idle close however long it takes; the body timer starts
        once the body is let through.
        """
        clock = Clock()
        resource = _Holding()
        site = GatewaySite(resource, reactor=clock)
        site.head_limits = HeadLimits(body_timeout=5)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        channel.callLater = clock.callLater
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
        self.assertEqual(len(resource.heads), 1)
        clock.advance(3600)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        resource.heads[0].continue_body()
        clock.advance(5.1)
        self.assertIn(b" 408 ", transport.value().split(b"\r\n")[0])


class _Answering(_Holding):
    def render(self, request: Any) -> Any:
        return b"ok"


class HeldIdleTimeoutTests(SynchronousTestCase):
    """
    The idle (keep-alive) timer is back once a held request is answered.
    """

    def test_restoredAfterWholeBody(self) -> None:
        """
        A body that came whole with its head, held, then answered: the
        connection is closed after keepalive_timeout of idleness, as after
        any request.
        """
        clock = Clock()
        resource = _Answering()
        site = GatewaySite(resource, reactor=clock, timeout=75)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        channel.callLater = clock.callLater
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        clock.advance(100)
        self.assertFalse(transport.disconnecting)
        resource.heads[0].continue_body()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), transport.value())
        clock.advance(76)
        self.assertTrue(transport.disconnecting)
