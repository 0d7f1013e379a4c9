"""
Buffered uploads end to end: a route with C{request_buffering} true (the
default) spools a large body to a file, then sends it upstream from that
file at the pace the upstream connection takes it, so that what the
gateway holds for the upstream stays bounded however large the body is.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest

from echogate.batching import BatchedTransport, WriteBatcher
from tests.proxy.bodies import Gatewayed, UpstreamServer, post_head, start_upstream, upload
from tests.rawclient import status_of
from tests.test_batching import _Pair, _TCPTransport
from tests.waiting import until

MB = 1024 * 1024


def held(wire: Any) -> int:
    """
    The bytes written on C{wire} (an upstream connection's transport,
    maybe a L{BatchedTransport}) and not yet sent: those its batcher holds
    and those in the TCP transport's buffer.
    """
    pending = 0
    if isinstance(wire, BatchedTransport):
        pending = sum(len(data) for data in wire._pending)
        wire = wire._transport
    buffered: int = len(wire.dataBuffer) - wire.offset + wire._tempDataLen
    return pending + buffered


class BufferedUploadTests(unittest.TestCase):
    timeout = 120

    def record_held(self, gw: Gatewayed) -> list[int]:
        """
        Wrap the writes of C{gw}'s upstream connections so that each one
        records L{held} right after it.

        @return: The list the figures are appended to.
        """
        figures: list[int] = []
        batcher = gw.client.write_batcher
        wrap = batcher.wrap

        def wrapping(transport: Any) -> Any:
            wire = wrap(transport)
            write = wire.write

            def recorded(data: bytes) -> None:
                write(data)
                figures.append(held(wire))

            wire.write = recorded
            return wire

        batcher.wrap = wrapping  # type: ignore[method-assign]
        return figures

    async def test_bodyFileSentWithBackPressure(self) -> None:
        """
        A 16 MB body spooled to a file goes to an upstream that reads
        slowly with at most a few hundred KB held for its connection at
        any write: the file is read as the connection drains, not ahead
        of it.
        """
        server = UpstreamServer(pause=0.002)
        gw = Gatewayed(self, start_upstream(self, server))
        figures = self.record_held(gw)
        size = 16 * MB
        client = await upload(gw.address, post_head(size), size)
        await until(lambda: client.closed.called or client.data.endswith(b"%d" % size), timeout=100,
                    message="the upload was answered")
        self.assertEqual(status_of(client.data), 200, client.data[:300])
        self.assertEqual(server.received, size)
        self.assertEqual(gw.files, [size])
        self.assertGreater(len(figures), 1)
        self.assertLess(max(figures), MB // 2)


class HeldBoundTests(unittest.SynchronousTestCase):
    """
    A L{BatchedTransport} holds no more than its transport's
    C{bufferSize} until the end of the iteration.
    """

    def test_pastBufferSizeSentAtOnce(self) -> None:
        """
        Writes past C{bufferSize} in one iteration are sent at once,
        without waiting for its end; what the socket does not take goes
        to the transport, which applies back-pressure.
        """
        clock = Clock()
        pair = _Pair(self, send_buffer=4096)
        transport = _TCPTransport(pair.ours)
        transport.bufferSize = 1000  # type: ignore[attr-defined]
        batched = WriteBatcher(clock).wrap(transport)
        batched.write(b"a" * 600)
        self.assertEqual(pair.received(), b"")
        batched.write(b"b" * 600)
        self.assertEqual(pair.received(), b"a" * 600 + b"b" * 600)
        self.assertEqual(batched._pending, [])
        piece = b"c" * 65536
        for _ in range(64):  # 4 MiB: more than the socket takes
            batched.write(piece)
            self.assertLessEqual(sum(map(len, batched._pending)), 1000 + len(piece))
        self.assertFalse(batched.batching)
        self.assertTrue(transport.written)
        clock.advance(0)
        self.assertEqual(clock.getDelayedCalls(), [])
