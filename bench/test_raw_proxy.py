"""
L{bench.raw_proxy}, the floor contender: its head rewriting and answer
framing on their own, and the proxy end to end on real sockets on
127.0.0.1 against a small upstream.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench.raw_proxy import BAD_GATEWAY, ClientSide, Pool, answer_length, upstream_head
from echogate.batching import WriteBatcher


class HeadTests(SynchronousTestCase):
    """
    L{upstream_head} and L{answer_length}.
    """

    def test_hostRewritten(self) -> None:
        """
        The client's Host (any case) gives way to the upstream's; the other
        lines stay in order; X-Forwarded-For is added; the head ends with
        its blank line.
        """
        head = b"GET /a HTTP/1.1\r\nhOsT: client\r\nX-One: 1\r\nX-Two: 2"
        self.assertEqual(upstream_head(head, b"up:80", b"10.0.0.1"),
                         b"GET /a HTTP/1.1\r\nX-One: 1\r\nX-Two: 2\r\nHost: up:80\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")

    def test_answerLength(self) -> None:
        """
        The whole answer's length once its head is there: the head, its
        blank line and Content-Length bytes (none without one).
        """
        self.assertIsNone(answer_length(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"))
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
        self.assertEqual(answer_length(head + b"a"), len(head) + 3)
        self.assertEqual(answer_length(b"HTTP/1.1 204 No Content\r\n\r\nnext"), 27)


class _Upstream(protocol.Protocol):
    """
    Answers each head with its own request line and the Host it got, and
    counts the connections it was asked on.
    """

    connections = 0

    def connectionMade(self) -> None:
        _Upstream.connections += 1
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            host = [line for line in lines if line.lower().startswith(b"host:")]
            body = lines[0] + b"|" + b",".join(host)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class _Client(protocol.Protocol):
    """
    Sends heads and collects what comes back until it has C{want} bytes
    or the connection closes.
    """

    def __init__(self, data: bytes, want: int):
        self.data = data
        self.want = want
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.want and not self.done.called:
            self.done.callback(self.received)

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(self.received)


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class EndToEndTests(TestCase):
    """
    The proxy on real sockets on 127.0.0.1, on the running reactor.
    """

    def listen_proxy(self, upstream_port: int) -> int:
        pool = Pool(reactor, upstream_port, WriteBatcher(reactor))
        factory = protocol.Factory.forProtocol(lambda: ClientSide(pool, b"up"))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [side.transport.loseConnection() for side in pool.idle])
        return port.getHost().port

    async def ask(self, port: int, data: bytes, want: int) -> bytes:
        client = _Client(data, want)
        connector = reactor.connectTCP("127.0.0.1", port, protocol.ClientFactory.forProtocol(lambda: client))
        received = await client.done
        connector.disconnect()
        return received

    async def test_proxiedInOrderOnOneUpstreamConnection(self) -> None:
        """
        Two heads sent at once are answered in order, each with the
        upstream's Host, over one kept-alive upstream connection.
        """
        upstream = reactor.listenTCP(0, protocol.Factory.forProtocol(_Upstream), interface="127.0.0.1")
        self.addCleanup(upstream.stopListening)
        _Upstream.connections = 0
        port = self.listen_proxy(upstream.getHost().port)
        heads = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
        expected = _answer(b"GET /one HTTP/1.1|Host: up") + _answer(b"GET /two HTTP/1.1|Host: up")
        self.assertEqual(await self.ask(port, heads, len(expected)), expected)
        self.assertEqual(_Upstream.connections, 1)

    async def test_upstreamDown(self) -> None:
        """
        With no upstream listening, the client gets a 502 and its
        connection is closed.
        """
        closed = reactor.listenTCP(0, protocol.Factory.forProtocol(_Upstream), interface="127.0.0.1")
        upstream_port = closed.getHost().port
        await closed.stopListening()
        port = self.listen_proxy(upstream_port)
        self.assertEqual(await self.ask(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 10 ** 6), BAD_GATEWAY)


class ReportTests(SynchronousTestCase):
    """
    The report puts echogate next to the floor, and the floor next to
    nginx, for each runtime measured.
    """

    def test_floorRatios(self) -> None:
        from bench.report import Summary, baseline_ratios

        def summary(rps: float) -> Summary:
            return Summary(runs=1, rps=rps, p50_ms=1.0, p99_ms=2.0, peak_rss_mb=10.0, cpu=1.0, errors=0,
                           bytes_per_request=100.0, all_rps=(rps,))

        figures = {"nginx": 100.0, "raw-proxy": 40.0, "echogate": 20.0, "raw-proxy (PyPy)": 80.0,
                   "echogate (PyPy)": 60.0}
        ratios = dict(baseline_ratios(
            lambda name, scenario: summary(figures[name]) if name in figures and scenario == "small-50" else None,
            " (PyPy)"))
        self.assertEqual(ratios["echogate / raw-proxy, small-50"], "0.50×")
        self.assertEqual(ratios["raw-proxy / nginx, small-50"], "0.40×")
        self.assertEqual(ratios["echogate (PyPy) / raw-proxy (PyPy), small-50"], "0.75×")
        self.assertEqual(ratios["raw-proxy (PyPy) / nginx, small-50"], "0.80×")
