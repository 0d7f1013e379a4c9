"""
What the tests of streamed uploads, buffered responses and live streams
share: a gateway listening on 127.0.0.1 built in the test process from a
configuration in memory (no store), raw upstream servers that read
request bodies at their own pace and answer in pieces, and a raw client
that uploads a body with back-pressure.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.http import _ChunkedTransferDecoder, _IdentityTransferDecoder

from echogate.proxy.gateway import Gateway, GatewayResource
from echogate.proxy.site import GatewaySite
from echogate.proxy.snapshot import Snapshot
from echogate.store.data import ConfigurationData
from echogate.upstream.lean import LeanUpstreamClient


def rss() -> int:
    """
    The test process's resident memory now, in bytes (C{VmRSS}).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Gatewayed:
    """
    A gateway on 127.0.0.1 with one service (at C{upstream_port}) and one
    route (C{/}), plugins given as objects with their configs.
    """

    def __init__(self, testcase: Any, upstream_port: int, route: dict[str, Any] | None = None,
                 plugins: list[tuple[Any, dict[str, Any]]] = (), max_body_size: int = 0,  # type: ignore[assignment]
                 max_buffered_response: int = 10 * 1024 * 1024, retries: int = 5):
        service = {"id": "s", "name": "s", "protocol": "http", "host": "127.0.0.1", "port": upstream_port,
                   "path": None, "retries": retries, "connect_timeout": 5000, "write_timeout": 60000,
                   "read_timeout": 60000, "enabled": True}
        fields = {"id": "r", "name": "r", "protocols": ["http"], "methods": None, "hosts": None, "paths": ["/"],
                  "headers": None, "strip_path": False, "preserve_host": False, "regex_priority": 0,
                  "service": {"id": "s"}, "path_handling": "v0", "request_buffering": True,
                  "response_buffering": True}
        fields.update(route or {})
        entries = tuple({"id": uuid.uuid4().hex, "name": plugin.name, "enabled": True,
                         "config": plugin.config_schema.validate(config), "route": {"id": "r"}, "service": None,
                         "consumer": None} for plugin, config in plugins)
        snapshot = Snapshot.build(ConfigurationData(version=1, services=(service,), routes=(fields,),
                                                    plugins=entries), {p.name: p for p, _ in plugins})
        self.client = LeanUpstreamClient(reactor)
        self.gateway = Gateway(clock=reactor, snapshot=lambda: snapshot, upstream=self.client,
                               max_buffered_response=max_buffered_response)
        self.site = GatewaySite(GatewayResource(self.gateway), max_body_size=max_body_size)
        self.site.noisy = False
        #: The lengths the site was asked for a body file for.
        self.files: list[int | None] = []
        original = self.site.getContentFile

        def record(length: int | None) -> Any:
            self.files.append(length)
            return original(length)

        self.site.getContentFile = record  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        testcase.addCleanup(self._stop)

    def _stop(self) -> Deferred:
        for channel in list(self.site._channels):
            if channel.transport is not None:
                channel.transport.abortConnection()
        self.client.close()
        return self.port.stopListening()

    @property
    def address(self) -> int:
        return int(self.port.getHost().port)


class Upstream(Protocol):
    """
    One connection to a raw upstream: reads request heads and bodies
    (C{Content-Length} or chunked), pausing C{pause} seconds after each
    read once the body started (a slow service); C{on_body(self, size)}
    decides what to do after each part of a body (the default answers
    once it is whole: 200 with the size in the body).
    """

    def __init__(self, server: "UpstreamServer"):
        self.server = server
        self._buffer = b""
        self._decoder: Any = None
        self.head = b""
        self.size = 0
        self.done = False

    def connectionMade(self) -> None:
        self.server.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        if self._decoder is None:
            self._buffer += data
            if b"\r\n\r\n" not in self._buffer:
                return
            head, _, rest = self._buffer.partition(b"\r\n\r\n")
            self._buffer = b""
            self.head = head
            self.size = 0
            self.done = False
            self.server.heads.append(head)
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                self._decoder = _ChunkedTransferDecoder(self._part, self._end)
            length = -1
            if self._decoder is None:
                length = 0
                for line in lower.split(b"\r\n")[1:]:
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self._decoder = _IdentityTransferDecoder(length, self._part, self._end)
            if not self.server.on_head(self):
                return
            if self._decoder.__class__ is _IdentityTransferDecoder and length == 0:
                self._end(b"")
                return
            data = rest
        if data:
            self._decoder.dataReceived(data)
        if self.server.pause and not self.done and self.transport is not None:
            self.transport.pauseProducing()
            reactor.callLater(self.server.pause, self._resume)

    def _resume(self) -> None:
        if self.transport is not None and self.transport.connected:
            self.transport.resumeProducing()

    def _part(self, data: bytes) -> None:
        self.size += len(data)
        self.server.received += len(data)
        self.server.on_body(self, len(data))

    def _end(self, rest: bytes) -> None:
        self.done = True
        self._decoder = None
        self.server.on_end(self)

    def answer(self, body: bytes, status: bytes = b"200 OK") -> None:
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.server.lost.append((self, self.size))
        for d in self.server.lost_waiters:
            d.callback(self)
        self.server.lost_waiters = []


class UpstreamServer(Factory):
    """
    Makes L{Upstream}s and keeps what they saw.
    """

    noisy = False

    def __init__(self, pause: float = 0.0):
        self.pause = pause
        self.connections: list[Upstream] = []
        self.heads: list[bytes] = []
        self.lost: list[tuple[Upstream, int]] = []
        self.lost_waiters: list[Deferred] = []
        self.received = 0
        self.on_head: Callable[[Upstream], bool] = lambda conn: True
        self.on_body: Callable[[Upstream, int], None] = lambda conn, size: None
        self.on_end: Callable[[Upstream], None] = lambda conn: conn.answer(b"%d" % conn.size)

    def buildProtocol(self, addr: Any) -> Upstream:
        return Upstream(self)

    def connection_lost(self) -> Deferred:
        """
        Fires when an upstream connection is next lost.
        """
        d: Deferred = Deferred()
        self.lost_waiters.append(d)
        return d


def start_upstream(testcase: Any, server: Protocol | Factory) -> int:
    """
    Listen with C{server} on 127.0.0.1 until the end of C{testcase}.
    """
    port = reactor.listenTCP(0, server, interface="127.0.0.1")

    def stop() -> Deferred:
        for conn in getattr(server, "connections", ()):
            if conn.transport is not None and conn.transport.connected:
                conn.transport.abortConnection()
        return port.stopListening()

    testcase.addCleanup(stop)
    return int(port.getHost().port)


class Uploader(Protocol):
    """
    Sends a request head, then C{size} bytes of body (chunked when
    C{chunked}) as a push producer that honours back-pressure; keeps what
    comes back (C{data}) and fires C{closed} when the connection is gone.
    """

    def __init__(self, head: bytes, size: int, chunked: bool = False, piece: int = 65536):
        self._head = head
        self._left = size
        self._chunked = chunked
        self._piece = b"u" * piece
        self._paused = False
        self.sent = 0
        self.data = b""
        self.closed: Deferred = Deferred()
        self.answered: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._head)
        self.transport.registerProducer(self, True)
        reactor.callLater(0, self.resumeProducing)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and self._left > 0 and self.transport is not None and self.transport.connected:
            piece = self._piece if self._left >= len(self._piece) else self._piece[: self._left]
            self._left -= len(piece)
            self.sent += len(piece)
            self.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self._chunked else piece)
            if self._left == 0 and self._chunked:
                self.transport.write(b"0\r\n\r\n")
            if self.sent % (1024 * 1024) == 0:
                # Let the reactor breathe (and the gateway read) now and then.
                reactor.callLater(0, self.resumeProducing)
                return

    def stopProducing(self) -> None:
        self._left = 0

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.answered.called:
            self.answered.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._left = 0
        self.closed.callback(self.data)


async def upload(port: int, head: bytes, size: int, chunked: bool = False) -> Uploader:
    """
    Connect to the gateway at C{port} and start an L{Uploader}.
    """
    client = Uploader(head, size, chunked)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


def post_head(size: int | None, path: bytes = b"/up", extra: bytes = b"") -> bytes:
    """
    A POST head with C{Content-Length: size}, or chunked for C{None}.
    """
    framing = b"Transfer-Encoding: chunked\r\n" if size is None else b"Content-Length: %d\r\n" % size
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + framing + extra + b"\r\n"
