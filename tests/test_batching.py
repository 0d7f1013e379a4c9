"""
Tests for L{echogate.batching}: writes sent at the end of the reactor
iteration, in order, straight to the socket until it does not take
everything.
"""
from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from echogate.batching import BatchedTransport, WriteBatcher
from echogate.proxy.channel import GatewayChannel
from echogate.proxy.site import GatewaySite


class _CountingSocket(socket.socket):
    """
    A socket that counts its C{send} calls.
    """

    sends = 0

    def send(self, data: Any, *flags: Any) -> int:  # type: ignore[override]
        self.sends += 1
        return super().send(data, *flags)


@implementer(ITCPTransport)
class _TCPTransport:
    """
    The parts of a TCP transport a L{BatchedTransport} uses, recording
    what reaches it.
    """

    disconnecting = False

    def __init__(self, sock: socket.socket | None):
        self.sock = sock
        self.written: list[bytes] = []
        self.calls: list[str] = []

    def getHandle(self) -> Any:
        return self.sock

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writeSequence(self, sequence: Any) -> None:
        self.written.extend(sequence)

    def loseConnection(self) -> None:
        self.calls.append("loseConnection")

    def loseWriteConnection(self) -> None:
        self.calls.append("loseWriteConnection")

    def abortConnection(self) -> None:
        self.calls.append("abortConnection")

    def stopProducing(self) -> None:
        self.calls.append("stopProducing")

    def pauseProducing(self) -> None:
        self.calls.append("pauseProducing")

    def resumeProducing(self) -> None:
        self.calls.append("resumeProducing")

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.calls.append("registerProducer")

    def unregisterProducer(self) -> None:
        self.calls.append("unregisterProducer")

    def getPeer(self) -> str:
        return "peer"

    def getHost(self) -> str:
        return "host"


@implementer(ISSLTransport)
class _TLSTransport(_TCPTransport):
    pass


class _Pair:
    """
    A connected socket pair: C{ours} (counting sends, non-blocking) and
    C{theirs}.
    """

    def __init__(self, test: SynchronousTestCase, send_buffer: int | None = None):
        a, self.theirs = socket.socketpair()
        self.ours = _CountingSocket(a.family, a.type, fileno=a.detach())
        if send_buffer is not None:
            self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.ours.setblocking(False)
        self.theirs.setblocking(False)
        test.addCleanup(self.ours.close)
        test.addCleanup(self.theirs.close)

    def received(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.theirs.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


class Collect(Protocol):
    """
    Collects a response body; C{done} fires with it.
    """

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.data)


class WrapTests(SynchronousTestCase):
    """
    L{WriteBatcher.wrap} batches plain TCP connections only.
    """

    def test_tcpConnection(self) -> None:
        """
        A TCP transport with a socket is wrapped, and the wrapper provides
        what the transport provides.
        """
        pair = _Pair(self)
        wrapped = WriteBatcher(Clock()).wrap(_TCPTransport(pair.ours))
        self.assertIsInstance(wrapped, BatchedTransport)
        self.assertTrue(ITCPTransport.providedBy(wrapped))

    def test_tls(self) -> None:
        """
        A TLS transport is left as it is (its bytes must be encrypted).
        """
        transport = _TLSTransport(_Pair(self).ours)
        self.assertIs(WriteBatcher(Clock()).wrap(transport), transport)

    def test_noSocket(self) -> None:
        """
        A transport without a socket (as in unit tests) is left as it is.
        """
        transport = StringTransport()
        self.assertIs(WriteBatcher(Clock()).wrap(transport), transport)
        tcp_without_socket = _TCPTransport(None)
        self.assertIs(WriteBatcher(Clock()).wrap(tcp_without_socket), tcp_without_socket)


class BatchedWriteTests(SynchronousTestCase):
    """
    L{BatchedTransport} sends an iteration's writes at its end, in one
    C{send}, and hands over to the transport when the socket does not take
    everything.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.batcher = WriteBatcher(self.clock)
        self.pair = _Pair(self)
        self.transport = _TCPTransport(self.pair.ours)
        self.batched = self.batcher.wrap(self.transport)

    def test_sentAtTheEndOfTheIteration(self) -> None:
        """
        Writes wait for the end of the iteration, then go out in one send.
        """
        self.batched.write(b"head ")
        self.batched.writeSequence([b"body", b" ", b"end"])
        self.assertEqual(self.pair.received(), b"")
        self.clock.advance(0)
        self.assertEqual(self.pair.received(), b"head body end")
        self.assertEqual(self.pair.ours.sends, 1)
        self.assertEqual(self.transport.written, [])

    def test_oneCallPerIteration(self) -> None:
        """
        Every connection that writes in one iteration shares one delayed
        call; nothing is scheduled when nothing was written.
        """
        other_pair = _Pair(self)
        other = self.batcher.wrap(_TCPTransport(other_pair.ours))
        self.batched.write(b"")
        self.batched.writeSequence([])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.batched.write(b"a")
        other.write(b"b")
        self.batched.write(b"c")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual((self.pair.received(), other_pair.received()), (b"ac", b"b"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.batched.write(b"d")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_notBytes(self) -> None:
        """
        Writing anything but bytes fails at once, as Twisted's transports
        do, and nothing is queued.
        """
        self.assertRaises(TypeError, self.batched.write, "text")
        self.assertRaises(TypeError, self.batched.writeSequence, [b"ok", "text"])
        self.clock.advance(0)
        self.assertNotIn(b"text", self.pair.received())

    def test_partialSend(self) -> None:
        """
        What the socket does not take goes to the transport, and so does
        every later write: the order holds.
        """
        pair = _Pair(self, send_buffer=4096)
        transport = _TCPTransport(pair.ours)
        batched = self.batcher.wrap(transport)
        data = bytes(range(256)) * 40960  # 10 MiB: more than any socket buffer
        batched.write(data)
        self.clock.advance(0)
        taken = pair.received()
        self.assertTrue(0 < len(taken) < len(data))
        self.assertFalse(batched.batching)
        batched.write(b"later")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(taken + b"".join(transport.written), data + b"later")

    def test_sendFails(self) -> None:
        """
        When the send fails (the socket is gone), the data goes to the
        transport, which reports the failure its own way.
        """
        self.batched.write(b"lost?")
        self.pair.ours.close()
        self.clock.advance(0)
        self.assertEqual(self.transport.written, [b"lost?"])
        self.assertFalse(self.batched.batching)

    def test_loseConnectionSendsFirst(self) -> None:
        """
        C{loseConnection} sends what is pending before the transport closes,
        and later writes go to the transport (which keeps its own rules
        for writes after C{loseConnection}).
        """
        self.batched.write(b"last answer")
        self.batched.loseConnection()
        self.assertEqual(self.pair.received(), b"last answer")
        self.assertEqual(self.transport.calls, ["loseConnection"])
        self.batched.write(b"after")
        self.assertEqual(self.transport.written, [b"after"])
        self.clock.advance(0)
        self.assertEqual(self.pair.received(), b"")

    def test_loseWriteConnectionSendsFirst(self) -> None:
        """
        C{loseWriteConnection} sends what is pending first.
        """
        self.batched.write(b"half")
        self.batched.loseWriteConnection()
        self.assertEqual(self.pair.received(), b"half")
        self.assertEqual(self.transport.calls, ["loseWriteConnection"])

    def test_stopProducingSendsFirst(self) -> None:
        """
        A transport's C{stopProducing} closes it: what is pending is sent
        first.
        """
        self.batched.write(b"bye")
        self.batched.stopProducing()
        self.assertEqual(self.pair.received(), b"bye")
        self.assertEqual(self.transport.calls, ["stopProducing"])

    def test_abortDropsPending(self) -> None:
        """
        C{abortConnection} drops what is pending, as Twisted's transports
        drop their buffer.
        """
        self.batched.write(b"never")
        self.batched.abortConnection()
        self.clock.advance(0)
        self.assertEqual(self.pair.received(), b"")
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.transport.calls, ["abortConnection"])

    def test_delegates(self) -> None:
        """
        Everything else is the transport's.
        """
        b = self.batched
        self.assertEqual((b.getPeer(), b.getHost(), b.disconnecting), ("peer", "host", False))
        b.pauseProducing()
        b.resumeProducing()
        b.registerProducer(object(), True)
        b.unregisterProducer()
        self.assertEqual(self.transport.calls,
                         ["pauseProducing", "resumeProducing", "registerProducer", "unregisterProducer"])
        self.assertRaises(AttributeError, getattr, b, "noSuchThing")

    def test_resumeOnlyAfterPause(self) -> None:
        """
        C{resumeProducing} reaches the transport only after a
        C{pauseProducing} (once for each pause): HTTPChannel resumes its
        transport after every request, paused or not.
        """
        b = self.batched
        b.resumeProducing()
        self.assertEqual(self.transport.calls, [])
        b.pauseProducing()
        b.pauseProducing()
        b.resumeProducing()
        b.resumeProducing()
        self.assertEqual(self.transport.calls, ["pauseProducing", "pauseProducing", "resumeProducing"])
        b.pauseProducing()
        b.resumeProducing()
        self.assertEqual(self.transport.calls[3:], ["pauseProducing", "resumeProducing"])


class ChannelTests(TestCase):
    """
    The proxy listener's connections write through the site's batcher.
    """

    @inlineCallbacks
    def test_pipelinedAnswersInOrder(self) -> None:
        """
        On a real connection, the channel's transport is batched and two
        pipelined requests are answered in order, then the connection
        closes after the one that asked for it.
        """
        from twisted.web.resource import Resource

        class Echo(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return request.path

        channels: list[GatewayChannel] = []
        site = GatewaySite(Echo(), reactor=global_reactor)
        build = site.buildProtocol

        def record(addr: Any) -> Any:
            channel = build(addr)
            channels.append(channel)
            return channel

        site.buildProtocol = record  # type: ignore[method-assign]
        port = global_reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Collect()
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        yield connectProtocol(TCP4ClientEndpoint(global_reactor, "127.0.0.1", port.getHost().port), client)
        client.transport.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = yield client.done
        self.assertIsInstance(channels[0].transport, BatchedTransport)
        self.assertLess(data.index(b"/first"), data.index(b"/second"))
        self.assertEqual(data.count(b"HTTP/1.1 200"), 2)


class LeanClientTests(TestCase):
    """
    echogate's own upstream client writes through its batcher.
    """

    @inlineCallbacks
    def test_upstreamConnectionBatched(self) -> None:
        """
        On a real upstream connection, the request goes out through a
        batched transport and its answer comes back; the connection is
        then kept, still batched, for the next request.
        """
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        from echogate.upstream.connection import HTTP11Connection
        from echogate.upstream.lean import LeanUpstreamClient

        class Answer(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"answer to " + request.path

        port = global_reactor.listenTCP(0, Site(Answer()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = LeanUpstreamClient(global_reactor)
        self.addCleanup(client.close)
        made: list[HTTP11Connection] = []
        original = HTTP11Connection.makeConnection

        def record(conn: HTTP11Connection, transport: Any) -> None:
            original(conn, transport)
            made.append(conn)

        self.patch(HTTP11Connection, "makeConnection", record)
        service = {"host": "127.0.0.1", "port": port.getHost().port, "protocol": "http",
                   "connect_timeout": 5000, "read_timeout": 5000, "write_timeout": 5000, "retries": 0}
        for path in (b"/one", b"/two"):
            response = yield client.request(service, b"GET", path, [(b"Host", b"upstream")])
            body = Collect()
            response.deliverBody(body)
            self.assertEqual((yield body.done), b"answer to " + path)
        self.assertEqual(len(made), 1)
        self.assertIsInstance(made[0].transport, BatchedTransport)


class NodeTests(TestCase):
    """
    A node's listener and lean client share one batcher.
    """

    async def test_oneBatcherPerNode(self) -> None:
        """
        The proxy site and the lean upstream client batch through the same
        L{WriteBatcher}, so an iteration's writes on both sides go out in
        one flush.
        """
        from tests.gateway import start_gateway

        gateway = await start_gateway(self, settings={"upstream_client": "lean"})
        service = gateway.service
        self.assertIsInstance(service.proxy_site.write_batcher, WriteBatcher)
        self.assertIs(service.proxy_site.write_batcher, service.upstream.write_batcher)

