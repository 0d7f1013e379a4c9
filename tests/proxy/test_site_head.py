"""
The proxy listener reading a simple request head in one step
(L{echogate.proxy.channel.simple_head}, L{echogate.proxy.channel.GatewayChannel}), checked
against Twisted's line by line reading, over Twisted's test doubles.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from echogate.proxy.channel import GatewayChannel
from echogate.proxy.heads import simple_head
from echogate.proxy.site import GatewaySite
from tests.proxy.test_site import _Pending


class SimpleHeadTests(SynchronousTestCase):
    """
    L{simple_head} takes a whole, bodiless request head that Twisted would
    accept as it is, and declines everything else.
    """

    def test_simple(self) -> None:
        """
        The request line's parts, and each header's name and raw value.
        """
        self.assertEqual(
            simple_head(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two:  v w \t\r\nEmpty:\r\n\r\n", 16384, 500),
            (b"GET", b"/a?b=c", b"HTTP/1.1", [(b"Host", b" x"), (b"X-Two", b"  v w \t"), (b"Empty", b"")]))

    def test_noHeaders(self) -> None:
        self.assertEqual(simple_head(b"OPTIONS * HTTP/1.0\r\n\r\n", 16384, 500), (b"OPTIONS", b"*", b"HTTP/1.0", []))

    def test_declined(self) -> None:
        """
        Heads with a body, an expectation, a folded line, anything after the
        blank line, a missing blank line, or anything Twisted would reject or
        treat specially are declined.
        """
        for head in [
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nHost: x\ny\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / x HTTP/1.1\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nName : x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"",
        ]:
            self.assertIsNone(simple_head(head, 16384, 500), head)

    def test_limits(self) -> None:
        """
        A head over the size limit, or with more header lines than allowed,
        is declined (and so left to Twisted's own limits).
        """
        head = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3 + b"\r\n"
        self.assertIsNotNone(simple_head(head, len(head), 3))
        self.assertIsNone(simple_head(head, len(head) - 1, 3))
        self.assertIsNone(simple_head(head, len(head), 2))


class _Recorder(Resource):
    """
    Answers every request at once with what the request was made of.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def render(self, request: Any) -> bytes:
        self.seen.append((request.method, request.uri, request.path, request.clientproto, request.args,
                          sorted(request.requestHeaders.getAllRawHeaders()), request.received_cookies,
                          request.content.read(), request.channel.persistent))
        return b"ok"


class _LineByLine(GatewayChannel):
    """
    The channel reading every head line by line (Twisted's reading, with
    the channel's edge checks): the reference.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self._fast_size = -1


def _without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.lower().startswith(b"date:"))


class HeadFastPathTests(SynchronousTestCase):
    """
    L{GatewayChannel} takes a simple request head in one step; the
    requests it makes, and what the client gets, are what Twisted's line by
    line reading gives.
    """

    def connect(self, channel_class: type, resource: Resource) -> tuple[Any, StringTransport]:
        site = GatewaySite(resource, reactor=Clock())
        site.protocol = channel_class
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def both(self, *chunks: bytes) -> tuple[list, bytes]:
        """
        Feed C{chunks} to a L{GatewayChannel} and to the reference, assert
        that both made the same requests and wrote the same bytes, and
        return those.
        """
        results = []
        for channel_class in (GatewayChannel, _LineByLine):
            recorder = _Recorder()
            channel, transport = self.connect(channel_class, recorder)
            for chunk in chunks:
                channel.dataReceived(chunk)
            results.append((recorder.seen, _without_date(transport.value()), transport.disconnecting))
        self.assertEqual(results[0], results[1], chunks)
        return results[0][0], results[0][1]

    SIMPLE = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /p/q?x=1&y=2&x=3 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
        b"DELETE /d HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=d\r\nCookie: e=f\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Spaces: \t v  w \t \r\nx-lower: 1\r\nX-LOWER: 2\r\nEmpty:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Bytes: \xff\xfe\x01\r\nwww-authenticate: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(99)) + b"\r\n",
    ]

    def test_simpleHeadsInOneStep(self) -> None:
        """
        Simple heads are not read line by line, and make the same requests
        and answers as Twisted's reading.
        """
        for head in self.SIMPLE:
            recorder = _Recorder()
            channel, _ = self.connect(GatewayChannel, recorder)
            channel.lineReceived = lambda line, head=head: self.fail(f"read line by line: {head!r}")
            channel.dataReceived(head)
            self.assertEqual(len(recorder.seen), 1, head)
            seen, _ = self.both(head)
            self.assertEqual(len(seen), 1)

    def test_sameAsTwisted(self) -> None:
        """
        Whatever arrives, and however it is split, the requests made and the
        bytes written are those of Twisted's line by line reading.
        """
        cases: list[tuple[bytes, ...]] = [(head,) for head in self.SIMPLE]
        cases += [
            (b"POST /f HTTP/1.1\r\nContent-Length: 3\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\na=b",),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",),
            (b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"ok"),
            (b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nHo", b"st: a\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n", b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            # a whole head's look-alike completing a partial line, or inside
            # a head being read
            (b"X", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\n", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"GET / HTTP/1.0\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\nHost: a\n\n",),
            (b"GET / HTTP/2.0\r\n\r\n",),
            (b"G@T / HTTP/1.1\r\n\r\n",),
            (b"GET /\x7f\x80 HTTP/1.1\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",),
            (b"GET / HTTP/1.1\r\n" + b"H: v\r\n" * 501 + b"\r\n",),
            (b"GET / HTTP/1.1\r\nX: " + b"v" * 16400 + b"\r\n\r\n",),
            (b"GET / HTTP/1.1\r\n" + b"X: " + b"v" * 8000 + b"\r\n" + b"Y: " + b"v" * 8000 + b"\r\n\r\n",),
        ]
        for chunks in cases:
            self.both(*chunks)

    def test_whileHandlingBuffered(self) -> None:
        """
        A head that arrives while a request is in hand waits, as Twisted
        makes it wait, and is taken when that request is finished.
        """
        resource = _Pending()
        channel, transport = self.connect(GatewayChannel, resource)
        channel.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        channel.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual([r.uri for r in resource.requests], [b"/1"])
        resource.requests[0].finish()
        self.assertEqual([r.uri for r in resource.requests], [b"/1", b"/2"])
        resource.requests[1].finish()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)

    def test_timeoutMoved(self) -> None:
        """
        A request taken in one step moves the idle timer, as any request
        does.
        """
        clock = Clock()
        site = GatewaySite(_Recorder(), reactor=clock, timeout=10)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        clock.advance(9)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        clock.advance(9)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
