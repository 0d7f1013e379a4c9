"""
Tests for what L{echogate.proxy.responsehead.OnePieceHead} works out while
writing a head in one piece (issue 25): whether the head is framed by a
Content-Length line found where it is (not only last), and the size of
its header lines, kept for the log phase
(L{echogate.pdk.context.PluginContext.sent_lines_size}, read by
L{echogate.bundled.log_record.response_size}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from echogate.bundled.log_record import response_size
from echogate.pdk.context import RequestContext
from echogate.pdk.rawheaders import lines_size
from echogate.proxy.site import GatewaySite
from tests.proxy.test_site import _Pending


def _request(head: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") -> tuple[Any, StringTransport]:
    """
    A request received on a gateway channel (its resource answers
    nothing), and the client's transport.
    """
    resource = _Pending()
    site = GatewaySite(resource, reactor=Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    channel.makeConnection(transport)
    channel.dataReceived(head)
    return resource.requests[-1], transport


def _reference_size(ctx: RequestContext) -> int:
    """
    L{response_size} as it was worked out before sizes were kept: the
    status line, the response's lines measured, the blank line, the body.
    """
    return len("HTTP/1.1 200 OK") + 2 + lines_size(ctx.response.as_is()) + 2 + ctx.view("q").bytes_sent


class FramedTests(SynchronousTestCase):
    """
    A head with a Content-Length line is written as it is, wherever the
    line is; one without is chunked (HTTP/1.1).
    """

    def written(self, pairs: list[tuple[bytes, bytes]]) -> bytes:
        request, transport = _request()
        request.respond(200, pairs)
        request.write(b"ok")
        return transport.value()

    def test_contentLengthFirst(self) -> None:
        """
        Content-Length before other lines (a plugin added lines after the
        service's) frames the response: no chunking.
        """
        sent = self.written([(b"Content-Length", b"2"), (b"X-RateLimit-Limit", b"5")])
        self.assertEqual(sent, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-RateLimit-Limit: 5\r\n\r\nok")

    def test_contentLengthInTheMiddle(self) -> None:
        """
        Content-Length between other lines frames it too.
        """
        sent = self.written([(b"Server", b"s"), (b"Content-Length", b"2"), (b"X-A", b"b")])
        self.assertEqual(sent, b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok")

    def test_otherSpellings(self) -> None:
        """
        Content-Length in another case frames it as well.
        """
        sent = self.written([(b"content-LENGTH", b"2"), (b"X-A", b"b")])
        self.assertEqual(sent, b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\nX-A: b\r\n\r\nok")

    def test_notInAValue(self) -> None:
        """
        A value that only names Content-Length does not frame it: chunked.
        """
        sent = self.written([(b"X-Note", b"Content-Length: 2"), (b"X-Content-Length", b"2")])
        self.assertEqual(sent, b"HTTP/1.1 200 OK\r\nX-Note: Content-Length: 2\r\nX-Content-Length: 2\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")


class SentLinesSizeTests(SynchronousTestCase):
    """
    A head written in one piece from the response's lines keeps their
    size: L{response_size} reads it while the lines are those written,
    and measures them otherwise; either way it counts what it counted
    before.
    """

    def context(self, pairs: list[tuple[bytes, bytes]], head: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                status: int = 200) -> tuple[RequestContext, Any]:
        """
        A request context whose response (C{pairs}) was written, with a
        two-byte body unless the request or status has none.
        """
        request, _ = _request(head)
        ctx = RequestContext(request, None, 0.0)  # type: ignore[arg-type]  # (no client request needed)
        ctx.response.replace_headers(pairs)
        request.respond(status, ctx.response.as_is())
        request.write(b"ok")
        return ctx, request

    def test_unchanged(self) -> None:
        """
        The lines as written: their size is the one kept, and the response's
        size is what it was measured to be.
        """
        pairs = [(b"Server", b"s"), (b"Content-Length", b"2"), (b"X-RateLimit-Remaining", b"41")]
        ctx, _ = self.context(pairs)
        view = ctx.view("p")
        self.assertEqual(view.sent_lines_size(), lines_size(pairs))
        self.assertEqual(response_size(view), _reference_size(ctx))
        self.assertEqual(response_size(view), len("HTTP/1.1 200 OK\r\n") + lines_size(pairs) + 2 + 2)

    def test_noLines(self) -> None:
        """
        A head without lines (chunked on the wire) keeps a size of none.
        """
        ctx, _ = self.context([])
        view = ctx.view("p")
        self.assertIn(view.sent_lines_size(), (0, None))
        self.assertEqual(response_size(view), _reference_size(ctx))

    def test_bodiless(self) -> None:
        """
        A head written without a body (HEAD, 204) keeps its size too.
        """
        for head, status in ((b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 200), (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 204)):
            ctx, _ = self.context([(b"Server", b"s"), (b"X-A", b"bb")], head, status)
            view = ctx.view("p")
            self.assertEqual(view.sent_lines_size(), lines_size([(b"Server", b"s"), (b"X-A", b"bb")]))
            self.assertEqual(response_size(view), _reference_size(ctx))

    def test_addedAfter(self) -> None:
        """
        A line added after the head was written is counted (measured
        again), as before.
        """
        ctx, _ = self.context([(b"Server", b"s"), (b"Content-Length", b"2")])
        view = ctx.view("p")
        ctx.response.add_header("X-Late", "1")
        self.assertIsNone(view.sent_lines_size())
        self.assertEqual(response_size(view), _reference_size(ctx))

    def test_replacedAfter(self) -> None:
        """
        Lines replaced (a header set again, or as a L{Headers}) after the
        head was written are measured again.
        """
        ctx, _ = self.context([(b"Server", b"s"), (b"Content-Length", b"2")])
        view = ctx.view("p")
        ctx.response.set_header("Server", "longer")
        self.assertIsNone(view.sent_lines_size())
        self.assertEqual(response_size(view), _reference_size(ctx))
        ctx, _ = self.context([(b"Server", b"s"), (b"Content-Length", b"2")])
        view = ctx.view("p")
        ctx.response.headers.addRawHeader(b"X-Late", b"1")
        self.assertIsNone(view.sent_lines_size())
        self.assertEqual(response_size(view), _reference_size(ctx))

    def test_notWrittenInOnePiece(self) -> None:
        """
        A head Twisted wrote (from a L{Headers}), or none written yet,
        keeps no size.
        """
        request, _ = _request()
        ctx = RequestContext(request, None, 0.0)  # type: ignore[arg-type]
        ctx.response.replace_headers([(b"Server", b"s")])
        self.assertIsNone(ctx.view("p").sent_lines_size())
        headers = Headers({b"Server": [b"s"], b"Content-Length": [b"2"]})
        ctx.response.replace_headers(headers)
        request.respond(200, headers)
        request.write(b"ok")
        self.assertIsNone(ctx.view("p").sent_lines_size())
        self.assertEqual(response_size(ctx.view("p")), _reference_size(ctx))

    def test_laterWrites(self) -> None:
        """
        Writes after the head go out as body, framed as before.
        """
        request, transport = _request()
        request.respond(200, [(b"Content-Length", b"4")])
        request.write(b"ok")
        request.write(b"ok")
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nokok")
