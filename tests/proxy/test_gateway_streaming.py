"""
The proxy end to end with large and slow bodies: streaming with bounded
memory, a client that goes away, upstream connections reused. Over the
fixtures of L{tests.proxy.test_gateway}.
"""
from __future__ import annotations

import resource

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol

from tests.proxy.test_gateway import _AGENT, ProxyTestCase
from tests.waiting import until


class _SlowReader(Protocol):
    """
    Sends one GET and reads the response slowly, counting bytes.
    """

    def __init__(self, path: bytes, host: bytes):
        self.received = 0
        self.done: Deferred = Deferred()
        self._request = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.pauseProducing()
        reactor.callLater(0.001, self.transport.resumeProducing)

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.received)


class StreamingTests(ProxyTestCase):
    timeout = 120

    async def test_largeBodyStreamsWithBoundedMemory(self) -> None:
        """
        A 256 MB response passes through a slow client without the gateway
        holding it: memory grows far less than the body, and the upstream
        was paused by back-pressure.
        """
        await self.service()
        await self.route(paths=["/big"], strip_path=False)
        size = 256 * 1024 * 1024
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reader = _SlowReader(b"/big?size=%d" % size, b"x")
        factory = ClientFactory.forProtocol(lambda: reader)
        reactor.connectTCP("127.0.0.1", self.gw.proxy_port, factory)
        received = await reader.done
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.assertGreater(received, size)
        self.assertLess((after - before) * 1024, 64 * 1024 * 1024)
        self.assertGreater(self.upstream.pauses, 0)

    async def test_clientDisconnectCancelsUpstream(self) -> None:
        """
        A client that goes away mid-request cancels the upstream request.
        """
        await self.service()
        await self.route(paths=["/slow"], strip_path=False)
        reader = _SlowReader(b"/slow?delay=30", b"x")
        connector = reactor.connectTCP("127.0.0.1", self.gw.proxy_port, ClientFactory.forProtocol(lambda: reader))
        await until(lambda: self.upstream.seen, interval=0.02, message="the upstream got the request")
        connector.disconnect()
        uri = await self.upstream.went_away
        self.assertEqual(uri, b"/slow?delay=30")

    async def test_upstreamConnectionsReused(self) -> None:
        """
        Sequential requests reuse one pooled upstream connection.
        """
        await self.service()
        await self.route(paths=["/"])
        for _ in range(5):
            self.assertEqual((await self.gw.proxy("GET", "/x")).code, 200)
        self.assertEqual(len(set(self.upstream.client_ports)), 1)


# The same through Twisted's Agent (upstream_client = agent), as in
# tests.proxy.test_gateway.
class AgentStreamingTests(StreamingTests):
    gateway_settings = _AGENT
