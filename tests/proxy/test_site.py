"""
The proxy listener's site and requests, over Twisted's test doubles. Reading
a simple request head in one step is in L{tests.proxy.test_site_head}.
"""
from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from echogate.proxy.channel import GatewayChannel
from echogate.proxy.request import GatewayRequest
from echogate.proxy.site import GatewaySite


class ContentFileTests(SynchronousTestCase):
    def request(self, site: GatewaySite) -> GatewayRequest:
        channel = DummyChannel()
        channel.site = site
        return GatewayRequest(channel)

    def test_hookDefined(self) -> None:
        """
        The site defines Twisted's C{getContentFile} hook (without it Twisted
        raises and catches an AttributeError for every request): small
        bodies of known length in memory, others in a temporary file.
        """
        site = GatewaySite(Resource())
        small = site.getContentFile(0)
        self.assertIsInstance(small, io.BytesIO)
        self.assertIsInstance(site.getContentFile(99_999), io.BytesIO)
        for length in (100_000, None):
            spooled = site.getContentFile(length)
            self.addCleanup(spooled.close)
            self.assertNotIsInstance(spooled, io.BytesIO)
            self.assertTrue(hasattr(spooled, "fileno"), f"row length={length!r}")

    def test_requestUsesTheSite(self) -> None:
        """
        A request's body file comes from its site's hook, once its head
        passed (not when its length is known: a streamed body has none).
        """
        site = GatewaySite(Resource())
        marker = io.BytesIO()
        asked: list[int | None] = []
        site.getContentFile = lambda length: asked.append(length) or marker  # type: ignore[method-assign]
        request = self.request(site)
        request.gotLength(10)
        self.assertEqual(asked, [])
        request._open_content()
        self.assertIs(request.content, marker)
        self.assertEqual(asked, [10])

    def test_tooLargeDiscarded(self) -> None:
        """
        A body announced larger than C{max_body_size} is not kept at all.
        """
        request = self.request(GatewaySite(Resource(), max_body_size=5))
        request.gotLength(6)
        self.assertTrue(request._too_large)
        self.assertNotIsInstance(request.content, io.BytesIO)


class _CountingTransport(StringTransport):
    hosts = 0
    peers = 0

    def getHost(self) -> Any:
        self.hosts += 1
        return super().getHost()

    def getPeer(self) -> Any:
        self.peers += 1
        return super().getPeer()


class ChannelTests(SynchronousTestCase):
    def test_addressesOncePerConnection(self) -> None:
        """
        The site's connections are GatewayChannels, which ask the transport
        for its addresses once, however many requests they carry.
        """
        site = GatewaySite(Resource())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.assertIsInstance(channel, GatewayChannel)
        transport = _CountingTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, None)
        expected = transport.getHost()
        for _ in range(3):
            request = GatewayRequest(channel)
            self.assertEqual(request.getHost(), expected)
            self.assertEqual(request.getClientAddress(), StringTransport().getPeer())
        self.assertEqual((transport.hosts - 1, transport.peers), (1, 1))

    def test_securityOncePerConnection(self) -> None:
        """
        Whether the connection is TLS is found out once (the HTTPS listener
        test in tests.proxy.test_gateway covers a TLS connection).
        """
        channel = GatewaySite(Resource()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        channel.makeConnection(StringTransport())
        self.addCleanup(channel.connectionLost, None)
        asked: list[Any] = []
        original = http.HTTPChannel.isSecure

        def counting(this: Any) -> bool:
            asked.append(this)
            return original(this)

        self.patch(http.HTTPChannel, "isSecure", counting)
        for _ in range(3):
            self.assertFalse(GatewayRequest(channel).isSecure())
        self.assertEqual(len(asked), 1)


class _Pending(Resource):
    """
    Answers nothing until the test finishes the request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        return server.NOT_DONE_YET


class IdleTimeoutTests(SynchronousTestCase):
    """
    A connection's idle timeout is one timer, left set while a request is
    handled and moved when it ends.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = _Pending()
        site = GatewaySite(self.resource, reactor=self.clock, timeout=10)
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def request(self) -> Any:
        self.channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return self.resource.requests[-1]

    def test_idleConnectionTimesOut(self) -> None:
        """
        A connection with nothing to do is closed after the timeout, not
        before.
        """
        self.clock.advance(9.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)

    def test_notDuringARequest(self) -> None:
        """
        A request that takes longer than the timeout keeps its connection;
        once it is answered, the timeout counts again from then.
        """
        request = self.request()
        self.clock.advance(25)
        self.assertFalse(self.transport.disconnecting)
        request.finish()
        self.clock.advance(9.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)

    def test_oneTimerAcrossRequests(self) -> None:
        """
        Requests neither cancel the connection's timer nor add another.
        """
        [timer] = self.clock.getDelayedCalls()
        for _ in range(3):
            self.clock.advance(1)
            self.request().finish()
            self.assertEqual(self.clock.getDelayedCalls(), [timer])
        self.assertEqual(timer.getTime(), self.clock.seconds() + 10)

    def test_dataMovesTheTimer(self) -> None:
        """
        Data from the client counts as activity.
        """
        self.clock.advance(8)
        self.channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(8)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)

    def test_connectionLostCancels(self) -> None:
        """
        A closed connection leaves no timer behind.
        """
        self.request()
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RespondTests(SynchronousTestCase):
    """
    L{GatewayRequest.respond} answers with a status and wire pairs, written
    in one piece with the first write, framed as Twisted frames a response.
    """

    def setUp(self) -> None:
        self.resource = _Pending()
        site = GatewaySite(self.resource, reactor=Clock())
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def request(self, head: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> Any:
        self.channel.dataReceived(head)
        return self.resource.requests[-1]

    def test_pairsAsGiven(self) -> None:
        """
        The status line, then the pairs as given (names as written, in
        order), then the body.
        """
        request = self.request()
        request.respond(200, [(b"Content-Length", b"2"), (b"x-lower", b"1"), (b"X-Two", b"a"), (b"X-Two", b"b")])
        request.write(b"ok")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-lower: 1\r\n"
                                                 b"X-Two: a\r\nX-Two: b\r\n\r\nok")

    def test_chunkedWithoutLength(self) -> None:
        """
        Without a Content-Length, an HTTP/1.1 response is chunked.
        """
        request = self.request()
        request.respond(200, [(b"X-A", b"1")])
        request.write(b"ok")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 b"2\r\nok\r\n0\r\n\r\n")

    def test_http10NotChunked(self) -> None:
        """
        An HTTP/1.0 client gets the body as it is, and the connection
        closes at its end.
        """
        request = self.request(b"GET / HTTP/1.0\r\n\r\n")
        request.respond(200, [(b"X-A", b"1")])
        request.write(b"ok")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nok")
        self.assertTrue(self.transport.disconnecting)

    def test_headHasNoBody(self) -> None:
        """
        A response to HEAD has its head only, whatever is written.
        """
        request = self.request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        request.respond(200, [(b"Content-Length", b"5")])
        request.write(b"hello")
        request.write(b"more")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")

    def test_noContentHasNoBody(self) -> None:
        """
        204 and 304 have no body and are not chunked.
        """
        for status, phrase in ((204, b"No Content"), (304, b"Not Modified")):
            self.transport.clear()
            request = self.request()
            request.respond(status, [(b"X-A", b"1")])
            request.write(b"x")
            request.finish()
            self.assertEqual(self.transport.value(), b"HTTP/1.1 %d %s\r\nX-A: 1\r\n\r\n" % (status, phrase),
                             f"row status={status!r} phrase={phrase!r}")

    def test_lengthAnywhere(self) -> None:
        """
        A Content-Length line frames the response wherever it is and however
        its name is written; a value that holds the words does not.
        """
        for pairs in ([(b"content-length", b"2"), (b"X-A", b"1")],
                      [(b"X-A", b"1"), (b"CONTENT-LENGTH", b"2"), (b"X-B", b"2")],
                      [(b"X-A", b"1"), (b"Content-Length", b"2")]):
            self.transport.clear()
            request = self.request()
            request.respond(200, pairs)
            request.write(b"ok")
            request.finish()
            self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\n"
                             + b"".join(b"%s: %s\r\n" % pair for pair in pairs) + b"\r\nok", f"row pairs={pairs!r}")
        self.transport.clear()
        request = self.request()
        request.respond(200, [(b"X-A", b"Content-Length: 2"), (b"X-Content-Length", b"2")])
        request.write(b"ok")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nX-A: Content-Length: 2\r\nX-Content-Length: 2\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")

    def test_noLines(self) -> None:
        """
        A head without lines has the status line, then what Twisted set
        before the response and the framing.
        """
        request = self.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        request.respond(200, [])
        request.write(b"ok")
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked"
                                                 b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        self.setUp()
        request = self.request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        request.respond(204, [])
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 204 No Content\r\n\r\n")

    def test_finishWritesHead(self) -> None:
        """
        Finishing without a write sends the head.
        """
        request = self.request()
        request.respond(404, [(b"Content-Length", b"0")])
        request.finish()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def test_connectionClose(self) -> None:
        """
        A client that asked to close gets C{Connection: close} (which Twisted
        set before the response), and the connection closes.
        """
        request = self.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        request.respond(200, [(b"Content-Length", b"0")])
        request.finish()
        self.assertEqual(self.transport.value(),
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_connectionOnce(self) -> None:
        """
        Lines that have a Connection header keep theirs: Twisted's is not
        added.
        """
        request = self.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        request.respond(200, [(b"Content-Length", b"0"), (b"connection", b"close")])
        request.finish()
        self.assertEqual(self.transport.value(),
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nconnection: close\r\n\r\n")

    def test_headersObject(self) -> None:
        """
        A L{Headers} head is written by Twisted, with what Twisted set
        before the response (here C{Connection: close}) kept.
        """
        request = self.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        request.respond(201, Headers({b"Content-Length": [b"2"], b"X-A": [b"1"]}))
        request.write(b"ok")
        request.finish()
        written = self.transport.value()
        self.assertTrue(written.startswith(b"HTTP/1.1 201 Created\r\n"), written)
        for line in (b"Content-Length: 2\r\n", b"X-A: 1\r\n", b"Connection: close\r\n"):
            self.assertIn(line, written, f"row line={line!r}")
        self.assertTrue(written.endswith(b"\r\n\r\nok"))

    def test_cookiesTheTwistedWay(self) -> None:
        """
        A request that set cookies (or an ETag, or Last-Modified) is written
        by Twisted, with the pairs as its headers.
        """
        request = self.request()
        request.addCookie(b"k", b"v")
        request.respond(200, [(b"Content-Length", b"0")])
        request.finish()
        written = self.transport.value()
        self.assertIn(b"Set-Cookie: k=v\r\n", written)
        self.assertIn(b"Content-Length: 0\r\n", written)

    def test_afterFinishRefused(self) -> None:
        """
        Writing after finish raises, as for any Twisted request.
        """
        request = self.request()
        request.respond(200, [(b"Content-Length", b"0")])
        request.finish()
        request._head = [(b"Content-Length", b"0")]
        self.assertRaises(RuntimeError, request.write, b"late")


class BodyPassedOnTests(SynchronousTestCase):
    """
    The proxy does not parse what it passes on: form bodies and query
    strings reach the service as the client sent them, whatever they hold.
    """

    def proxied(self, body: bytes, content_type: str, path: str = "/f") -> Any:
        from echogate.testing import GatewayHarness

        seen: list = []

        def upstream(request: Any) -> Any:
            from echogate.testing import UpstreamAnswer

            seen.append(request)
            return UpstreamAnswer(200, {}, b"done")

        harness = GatewayHarness([], upstream=upstream)
        response = self.successResultOf(harness.request("POST", path, headers={"Content-Type": content_type},
                                                        body=body))
        return response, seen

    def test_malformedMultipart(self) -> None:
        """
        A body labelled multipart/form-data that is not one is the
        service's business: passed on, not answered 400.
        """
        body = b"--nope\r\nthis is not a multipart body"
        response, seen = self.proxied(body, "multipart/form-data; boundary=b")
        self.assertEqual(response.status, 200)
        [request] = seen
        self.assertEqual(request.body, body)
        self.assertEqual(request.header("content-type"), "multipart/form-data; boundary=b")

    def test_formNotParsed(self) -> None:
        """
        A URL-encoded form and the query string are not parsed into
        C{request.args} (the gateway reads the query itself when asked).
        """
        captured: list = []
        original = GatewayRequest.process

        def process(request: Any) -> None:
            captured.append(request)
            original(request)

        self.patch(GatewayRequest, "process", process)
        response, seen = self.proxied(b"a=1&b=2", "application/x-www-form-urlencoded", path="/f?q=1&r=2")
        self.assertEqual(response.status, 200)
        self.assertEqual(seen[0].body, b"a=1&b=2")
        self.assertEqual(seen[0].path, "/f?q=1&r=2")
        [request] = captured
        self.assertEqual(request.args, {})
        self.assertEqual((request.path, request.uri), (b"/f", b"/f?q=1&r=2"))
