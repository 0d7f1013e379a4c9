"""
A client that goes away while the upstream's body is streaming stops the
upstream (L{echogate.proxy.streaming.BodyStreamer.stop}): end to end
with a gateway node, the real upstream and a raw client that aborts, and
on its own with L{StringTransport}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.streaming import BodyStreamer
from tests import upstream_server
from tests.gateway import start_gateway
from tests.rawclient import connect
from tests.upstream_server import start_upstream


class _Signal(list):
    """
    A list that fires C{appended} on its first C{append}: to wait for the
    upstream's record of a client gone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.appended: Deferred = Deferred()

    def append(self, item: Any) -> None:
        super().append(item)
        if not self.appended.called:
            self.appended.callback(item)


class ClientGoneEndToEndTests(unittest.TestCase):
    """
    A raw client reads the head of a response, then aborts: the gateway
    stops the upstream connection.
    """

    timeout = 30

    async def setUp(self) -> None:
        self.upstream, upstream_port = start_upstream(self)
        self.gw = await start_gateway(self)
        answer = await self.gw.admin("POST", "/services", json={
            "name": "s", "url": f"http://127.0.0.1:{upstream_port}"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/services/s/routes", json={
            "paths": ["/big", "/stall"], "strip_path": False})
        self.assertEqual(answer.code, 201, answer.body)

    async def head_then_abort(self, path: bytes) -> bytes:
        """
        Send a GET of C{path}, wait for the response head and abort.
        """
        client = await connect(self.gw.proxy_port)
        self.addCleanup(client.transport.abortConnection)
        client.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await client.until(lambda data: b"\r\n\r\n" in data)
        client.transport.abortConnection()
        await client.closed
        return data

    async def test_bigBodyUpstreamStopped(self) -> None:
        """A large streamed body: the upstream's producer is stopped when the client aborts."""
        stopped: Deferred = Deferred()
        original = upstream_server._BigBody.stopProducing

        def stopProducing(body: Any) -> None:
            original(body)
            if not stopped.called:
                stopped.callback(None)

        self.patch(upstream_server._BigBody, "stopProducing", stopProducing)
        data = await self.head_then_abort(b"/big?size=%d" % (1024 * 1024 * 1024))
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
        await stopped
        self.assertEqual(self.upstream.stopped, 1)

    async def test_smallBodyUpstreamClosed(self) -> None:
        """
        A body of known small length (no back-pressure producer) that
        stalls: the upstream connection is closed when the client aborts.
        """
        self.upstream.gone = _Signal()
        data = await self.head_then_abort(b"/stall")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
        uri = await self.upstream.gone.appended
        self.assertEqual(uri, b"/stall")


class _Owner:
    """
    The exchange side of a L{BodyStreamer}: a clock.
    """

    def __init__(self) -> None:
        self.clock = Clock()


class _Request:
    """
    The client's request, as L{BodyStreamer} sees it.
    """

    def __init__(self) -> None:
        self.client_gone = False
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer


class ClientGoneUnitTests(SynchronousTestCase):
    """
    L{BodyStreamer.stop} with the upstream connection a
    L{StringTransport}.
    """

    def streamer(self, length: int | None) -> tuple[BodyStreamer, StringTransport]:
        streamer = BodyStreamer(_Owner(), _Request(), (), 60.0, length)  # type: ignore[arg-type]
        transport = StringTransport()
        streamer.makeConnection(transport)
        return streamer, transport

    def test_stopsUpstream(self) -> None:
        """The client gone mid-body: the upstream transport is stopped."""
        streamer, transport = self.streamer(None)
        streamer.stop()
        self.assertEqual(transport.producerState, "stopped")

    def test_stopsSmallUpstream(self) -> None:
        """A small known-length body (no producer registered) is stopped too."""
        streamer, transport = self.streamer(10)
        streamer.stop()
        self.assertEqual(transport.producerState, "stopped")

    def test_notAfterEnd(self) -> None:
        """The body already over: the upstream transport is left alone."""
        streamer, transport = self.streamer(None)
        streamer._done = True
        streamer.stop()
        self.assertEqual(transport.producerState, "producing")
