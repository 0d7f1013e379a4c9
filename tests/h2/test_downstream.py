"""
HTTP/2 from clients, through a whole node on real sockets (127.0.0.1):
h2c with prior knowledge on a plain listener with the C{http2} flag, ALPN
on an C{ssl} one, each stream a request like any other (routing, plugins,
the latency headers), checked at the edge per stream, routed and
authorised on its head before its body is taken, its flow control the
service's back-pressure, and a client that resets streams too fast closed.
"""
from __future__ import annotations

import json
from typing import Any

import h2.errors
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from tests.gateway import RunningGateway, start_gateway
from tests.h2.h2client import H2Client, connect
from tests.upstream_server import UpstreamResource, start_upstream
from tests.waiting import until


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class _Raw(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)


class DownstreamTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.upstream: UpstreamResource
        self.upstream, upstream_port = start_upstream(self)
        self.gw: RunningGateway = await start_gateway(self, settings={
            "proxy_listen": "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl, 127.0.0.1:0, 127.0.0.1:0 ssl",
            "http2_max_concurrent_streams": "16"})
        self.ports = [int(address.port) for _, address in self.gw.service.listening("proxy")]
        answer = await self.gw.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/services/s/routes", json={"name": "open", "paths": ["/open"]})
        self.assertEqual(answer.code, 201, answer.body)

    async def client(self, tls: bool = False, plain_listener: bool = False, **kw: Any) -> H2Client:
        port = self.ports[(2 if plain_listener else 0) + (1 if tls else 0)]
        client = await connect(port, tls=tls, **kw)
        self.addCleanup(lambda: client.transport.loseConnection())
        return client

    async def test_h2cPriorKnowledge(self) -> None:
        """
        On a plain listener with the http2 flag, a client's preface makes
        an HTTP/2 connection: routed, proxied (the service sees the
        authority as Host, over HTTP/1.1), answered with the latency headers
        and Via as on HTTP/1.1.
        """
        client = await self.client()
        answer = await client.done[client.request(b"GET", b"/open/x?a=1", authority=b"api.example")]
        self.assertEqual(answer.status, 200, answer.body)
        seen = json.loads(answer.body)
        self.assertEqual((seen["uri"], seen["headers"]["x-forwarded-host"]), ("/x?a=1", ["api.example"]))
        self.assertEqual(seen["headers"]["x-forwarded-proto"], ["http"])
        self.assertIsNotNone(answer.header(b"x-echogate-upstream-latency"))
        self.assertIn(b"echogate", answer.header(b"via") or b"")
        self.assertIsNone(answer.header(b"connection"))

    async def test_http11StillServed(self) -> None:
        """The http2 flag keeps HTTP/1.1 clients working on the same port."""
        answer = await self.gw.proxy("GET", "/open/y")  # (to the first listener)
        self.assertEqual(answer.code, 200)
        raw = _Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports[0]), raw)
        raw.transport.write(b"GET /open/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await raw.closed
        self.assertTrue(raw.data.startswith(b"HTTP/1.1 200"), raw.data[:100])

    async def test_noFlagNoH2c(self) -> None:
        """A plain listener without the flag does not take a preface."""
        raw = _Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports[2]), raw)
        raw.transport.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        await raw.closed
        self.assertTrue(raw.data.startswith(b"HTTP/1.1 4"), raw.data[:100])

    async def test_alpn(self) -> None:
        """
        An ssl listener with the flag chooses h2 by ALPN (and serves it);
        one without chooses http/1.1; a client offering only http/1.1
        gets it on either.
        """
        client = await self.client(tls=True)
        self.assertEqual(client.transport.negotiatedProtocol, b"h2")
        answer = await client.done[client.request(b"GET", b"/open/tls", scheme=b"https")]
        self.assertEqual(answer.status, 200)
        self.assertEqual(json.loads(answer.body)["headers"]["x-forwarded-proto"], ["https"])
        plain = _Raw()
        from tests.h2.h2client import _ALPN  # noqa: F401  (the ALPN-offering options)
        for port, offered, expected in ((self.ports[3], [b"h2", b"http/1.1"], b"http/1.1"),
                                        (self.ports[1], [b"http/1.1"], b"http/1.1")):
            proto = await self._alpn_of(port, offered)
            self.assertEqual(proto, expected, (port, offered))
        del plain

    async def _alpn_of(self, port: int, offered: list[bytes]) -> bytes | None:
        from OpenSSL import SSL
        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
        from zope.interface import implementer

        @implementer(IOpenSSLClientConnectionCreator)
        class Creator:
            def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:
                context = SSL.Context(SSL.TLS_CLIENT_METHOD)
                context.set_alpn_protos(offered)
                return SSL.Connection(context, None)

        raw = _Raw()
        await connectProtocol(wrapClientTLS(Creator(), TCP4ClientEndpoint(reactor, "127.0.0.1", port)), raw)
        raw.transport.write(b"GET /open/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await raw.closed
        self.assertTrue(raw.data.startswith(b"HTTP/1.1 200"), raw.data[:80])
        return raw.transport.negotiatedProtocol  # type: ignore[no-any-return]

    async def test_bodyBeyondTheWindow(self) -> None:
        """A body larger than the initial window reaches the service whole."""
        client = await self.client()
        body = bytes(range(256)) * 1000
        stream = client.request(b"POST", b"/open/up", body=body, end=False)

        async def feed() -> None:
            sent = min(65535, len(body))
            while sent < len(body):
                await sleep(0.01)
                room = client.conn.local_flow_control_window(stream)
                if room:
                    chunk = body[sent:sent + room]
                    client.send(stream, chunk, end=sent + len(chunk) == len(body))
                    sent += len(chunk)
        await feed()
        answer = await client.done[stream]
        self.assertEqual(answer.status, 200)
        self.assertEqual(json.loads(answer.body)["body_length"], len(body))
        self.assertEqual(self.upstream.seen[-1]["body"].encode("latin-1"), body)

    async def test_authorisedOnItsHead(self) -> None:
        """
        A stream with a body is answered 401 by key-auth on its head: the
        client sent no body yet, the service saw nothing.
        """
        answer = await self.gw.admin("POST", "/services/s/routes", json={"name": "locked", "paths": ["/locked"]})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/routes/locked/plugins", json={"name": "key-auth"})
        self.assertEqual(answer.code, 201, answer.body)
        client = await self.client()
        stream = client.request(b"POST", b"/locked/x", headers=[(b"content-length", b"1000000")], end=False)
        answer = await client.heads[stream]
        self.assertEqual(answer.status, 401)
        await client.done[stream]
        self.assertEqual(json.loads(answer.body), {"message": "No API key found in request"})
        self.assertEqual(self.upstream.seen, [])
        # The connection goes on.
        again = await client.done[client.request(b"GET", b"/open/after")]
        self.assertEqual(again.status, 200)

    async def test_edgeChecksPerStream(self) -> None:
        """
        Heads that HTTP/1.1 refuses at the edge are refused on HTTP/2 too,
        on their stream only: TRACE (405), a :path not in origin form (400),
        a Host that differs from :authority (400), too many fields (431),
        and the connection goes on.
        """
        client = await self.client()
        cases = [
            ((b"TRACE", b"/open/x"), {}, 405),
            ((b"GET", b"http://evil.example/open/x"), {}, 400),
            # (bytes an HTTP/1.1 target cannot hold: refused on both)
            ((b"GET", b"/open/a b"), {}, 400),
            ((b"GET", b"/open/a\xffb"), {}, 400),
            ((b"GET", b"/open/x"), {"headers": [(b"x-h%d" % i, b"v") for i in range(150)]}, 431),
        ]
        for (method, path), kw, status in cases:
            answer = await client.done[client.request(method, path, **kw)]
            self.assertEqual(answer.status, status, (method, path, kw, answer.body))
        self.assertEqual(self.upstream.seen, [])
        answer = await client.done[client.request(b"GET", b"/open/fine")]
        self.assertEqual(answer.status, 200)

    async def test_hostAndAuthorityDiffer(self) -> None:
        """
        A Host field that differs from :authority (which would the router
        and the service each believe?), and a request with neither, are
        refused, as is a bad content-length (h2 takes them for a broken
        connection: GOAWAY), and the service sees nothing.
        """
        for kw in ({"authority": b"a.example", "headers": [(b"host", b"b.example")]}, {"authority": b""},
                   {"headers": [(b"content-length", b"+5")], "body": b"12345"},
                   # two Host lines and no authority: which host is it?
                   {"authority": b"", "headers": [(b"host", b"a.example"), (b"host", b"b.example")]}):
            client = await self.client()
            answer = await client.done[client.request(b"GET", b"/open/x", **kw)]
            self.assertNotEqual(answer.status, 200, kw)
            if answer.status == 0:
                await client.closed
                self.assertEqual(client.goaway, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self.assertEqual(self.upstream.seen, [])

    async def test_noRouteIsJSON(self) -> None:
        """No route: Kong's 404 JSON, as on HTTP/1.1."""
        client = await self.client()
        answer = await client.done[client.request(b"GET", b"/nowhere")]
        self.assertEqual((answer.status, json.loads(answer.body)),
                         (404, {"message": "no Route matched with those values"}))

    async def test_settings(self) -> None:
        """The connection's settings say the concurrent stream limit."""
        client = await self.client()
        self.assertEqual(client.conn.remote_settings.max_concurrent_streams, 16)

    async def test_tooManyStreams(self) -> None:
        """A client that opens more streams than allowed is closed with GOAWAY."""
        client = await self.client()
        client.unlimited()
        for _ in range(20):
            client.request(b"GET", b"/open/slow?delay=5")
        await client.closed
        self.assertEqual(client.goaway, h2.errors.ErrorCodes.PROTOCOL_ERROR)

    async def test_rapidReset(self) -> None:
        """
        A client that opens and resets streams in a loop (CVE-2023-44487)
        is closed with GOAWAY ENHANCE_YOUR_CALM after a bounded number, and
        the node goes on serving others.
        """
        client = await self.client()
        opened = 0
        while client.goaway is None and not client.closed.called and opened < 5000:
            stream = client.request(b"GET", b"/open/reset-me")
            client.reset(stream)
            opened += 1
            if opened % 50 == 0:
                # (time for the node's GOAWAY to arrive: the count is the
                # node's budget, not how fast this loop outruns it)
                await sleep(0.01)
        await client.closed
        self.assertEqual(client.goaway, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertLess(opened, 1000)
        other = await self.client()
        answer = await other.done[other.request(b"GET", b"/open/fine")]
        self.assertEqual(answer.status, 200)

    async def test_flowControlIsBackPressure(self) -> None:
        """
        A stream whose client leaves its window shut pauses the service's
        response, and another stream of the same connection still gets its
        answer.
        """
        client = await self.client(window=65535)
        client.acknowledge = False
        big = client.request(b"GET", b"/open/big?size=%d" % (8 * 1024 * 1024))
        await client.heads[big]
        await until(lambda: self.upstream.pauses > 0)
        self.assertLess(client.received, 200_000)
        # The connection window is shut now too: only a stream's own window
        # opening lets data through; open the connection's and ask for more.
        client.conn.increment_flow_control_window(1024 * 1024)
        client.transport.write(client.conn.data_to_send())
        small = client.request(b"GET", b"/open/small")
        answer = await client.done[small]
        self.assertEqual(answer.status, 200)
        self.assertFalse(client.done[big].called)


class VersionTests(unittest.TestCase):
    """
    C{ctx.request.get_http_version()}, as Kong's.
    """

    def test_versions(self) -> None:
        from echogate.pdk.requests import ClientRequest

        for proto, version in ((b"HTTP/1.0", 1.0), (b"HTTP/1.1", 1.1), (b"HTTP/2", 2.0), (b"HTTP/3", None)):
            request = type("R", (), {"clientproto": proto, "method": b"GET", "isSecure": lambda self: False})()
            self.assertEqual(ClientRequest(request, "/", "/", "", "1.2.3.4").get_http_version(), version)


class NoDelayTests(unittest.TestCase):
    timeout = 60

    async def test_noDelay(self) -> None:
        """
        An HTTP/2 connection's socket sends at once (TCP_NODELAY, which
        Twisted's H2Connection sets on a TCP transport: the write batcher's
        provides what the TCP one does): its responses are several frames,
        and with Nagle's algorithm a later write would wait for the client's
        delayed ACK.
        """
        import socket

        from echogate.proxy.h2 import GatewayH2Connection

        gw = await start_gateway(self, settings={"proxy_listen": "127.0.0.1:0 http2"})
        port = int(gw.service.listening("proxy")[0][1].port)
        client = await connect(port)
        self.addCleanup(lambda: client.transport.loseConnection())
        connections = [c for c in gw.service.proxy_site._channels if isinstance(c, GatewayH2Connection)]
        self.assertEqual(len(connections), 1)
        transport = connections[0].transport
        sock = getattr(transport, "_transport", transport).getHandle()
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
