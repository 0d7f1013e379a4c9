"""
Responses end to end: read whole for a plugin that enabled buffering
(L{echogate.proxy.collecting}), streamed otherwise, live event streams
passed on event by event. Real upstreams on 127.0.0.1.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from tests.proxy.bodies import Gatewayed, Upstream, UpstreamServer, start_upstream, upload
from tests.rawclient import status_of, whole_response
from tests.waiting import until


class _Buffering(GatewayPlugin):
    """
    Enables buffering in access; in header_filter keeps the raw body it
    saw and replaces it with an upper-case copy.
    """

    name = "buffering-test"
    priority = 10
    config_schema = Record({})
    #: The raw bodies header_filter saw (a list shared by the tests,
    #: emptied by each: a plugin's attributes cannot change).
    seen: list[Any] = []

    def __init__(self) -> None:
        del self.seen[:]

    def access(self, ctx: Any, config: Any) -> None:
        ctx.upstream.enable_buffering()

    def header_filter(self, ctx: Any, config: Any) -> None:
        raw = ctx.response.get_raw_body()
        self.seen.append(raw)
        if raw is not None:
            ctx.response.raw_body = raw.upper()


def _answer_in_pieces(conn: Upstream) -> bool:
    """
    Answer at once, chunked, in three pieces written 20 ms apart.
    """
    conn.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    reactor.callLater(0.02, conn.transport.write, b"1\r\n \r\n")
    reactor.callLater(0.04, conn.transport.write, b"5\r\nworld\r\n0\r\n\r\n")
    return False


def _get(path: bytes = b"/x") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"


class ResponseBufferingTests(unittest.TestCase):
    timeout = 30

    async def test_rawBodyInHeaderFilter(self) -> None:
        """
        With enable_buffering, header_filter sees the whole body as
        raw_body, and the body written is raw_body, whole, with a
        Content-Length.
        """
        server = UpstreamServer()
        server.on_head = _answer_in_pieces
        plugin = _Buffering()
        gw = Gatewayed(self, start_upstream(self, server), plugins=[(plugin, {})])
        client = await upload(gw.address, _get(), 0)
        data = await until(lambda: whole_response(client.data) and client.data, message="answered")
        self.assertEqual(plugin.seen, [b"hello world"])
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 11", head.lower())
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertEqual(body, b"HELLO WORLD")

    async def test_routeWithoutResponseBufferingIgnoresIt(self) -> None:
        """
        On a route with response_buffering false, enable_buffering does
        nothing: no raw_body, and the response streams as it came.
        """
        server = UpstreamServer()
        server.on_head = _answer_in_pieces
        plugin = _Buffering()
        gw = Gatewayed(self, start_upstream(self, server), {"response_buffering": False}, plugins=[(plugin, {})])
        client = await upload(gw.address, _get(), 0)
        data = await until(lambda: whole_response(client.data) and client.data, message="answered")
        self.assertEqual(plugin.seen, [None])
        self.assertIn(b"transfer-encoding: chunked", data.partition(b"\r\n\r\n")[0].lower())
        self.assertIn(b"hello", data)

    async def test_withoutEnableBufferingStreams(self) -> None:
        """
        Without enable_buffering (the route's default response_buffering
        true), the head and first piece reach the client before the
        upstream wrote the rest.
        """
        server = UpstreamServer()
        server.on_head = _answer_in_pieces
        gw = Gatewayed(self, start_upstream(self, server))
        client = await upload(gw.address, _get(), 0)
        await until(lambda: b"hello" in client.data, interval=0.001, message="first piece")
        self.assertNotIn(b"world", client.data)
        await until(lambda: whole_response(client.data), message="the rest")

    async def test_tooLargeIs502(self) -> None:
        """
        A buffered body larger than max_buffered_response is answered 502.
        """
        server = UpstreamServer()
        server.on_end = lambda conn: conn.answer(b"x" * 5000)
        plugin = _Buffering()
        gw = Gatewayed(self, start_upstream(self, server), plugins=[(plugin, {})], max_buffered_response=1000)
        client = await upload(gw.address, _get(), 0)
        data = await until(lambda: whole_response(client.data) and client.data, message="answered")
        self.assertEqual(status_of(data), 502, data)
        self.assertEqual(plugin.seen, [None])  # (header_filter of the error answer)
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])


class LiveStreamTests(unittest.TestCase):
    timeout = 30

    async def test_eventsArriveAsWritten(self) -> None:
        """
        Server-sent events written every 100 ms reach the client one by
        one, in order, each before the upstream wrote the next.
        """
        server = UpstreamServer()
        written: list[float] = []
        count = 6

        def stream(conn: Upstream) -> bool:
            conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")

            def event(n: int) -> None:
                if not conn.transport.connected:
                    return
                payload = b"data: %d\n\n" % n
                written.append(reactor.seconds())
                conn.transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                if n + 1 < count:
                    reactor.callLater(0.1, event, n + 1)
                else:
                    conn.transport.write(b"0\r\n\r\n")

            reactor.callLater(0.1, event, 0)
            return False

        server.on_head = stream
        gw = Gatewayed(self, start_upstream(self, server))
        client = await upload(gw.address, _get(b"/events"), 0)
        arrived: dict[int, float] = {}
        original = client.dataReceived

        def received(data: bytes) -> None:
            original(data)
            now = reactor.seconds()
            for n in range(count):
                if n not in arrived and b"data: %d\n" % n in client.data:
                    arrived[n] = now

        client.dataReceived = received  # type: ignore[method-assign]
        await until(lambda: len(arrived) == count, timeout=10, interval=0.01, message="every event")
        order = sorted(arrived, key=lambda n: (arrived[n], n))
        self.assertEqual(order, list(range(count)))
        for n in range(count - 1):
            self.assertLess(arrived[n], written[n + 1], f"event {n} waited for the next")
