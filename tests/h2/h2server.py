"""
A small, configurable HTTP/2 server on 127.0.0.1 for tests, written with
C{h2} on Twisted: h2c (prior knowledge) or TLS with ALPN C{h2}.

Each request's stream is an L{ServerStream} handed to the test's handler
once its headers arrive; the handler (or the test, later) answers it:
headers, data (sent under flow control: L{ServerStream.send} fires once
all of it is out), trailers, resets, GOAWAY, at any time. The server
counts its connections and keeps its streams, so tests can look at what
arrived and when.
"""
from __future__ import annotations

from typing import Any, Callable

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from tests.certs import KeyPair

__all__ = ["H2Server", "ServerStream", "ServerConnection"]


class ServerStream:
    """
    One request as the server sees it.

    @ivar headers: the request's header list (pseudo-header fields first).
    @ivar chunks: the body's pieces, as they arrived.
    @ivar ended: whether the client ended the stream.
    @ivar reset_code: the client's RST_STREAM code, once it reset it.
    @ivar body_ended: fires when the body ends (or the stream is reset).
    @ivar acknowledge: whether DATA received is acknowledged at once
        (L{release} acknowledges what was held).
    """

    def __init__(self, conn: ServerConnection, stream_id: int, headers: list[tuple[bytes, bytes]]):
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.chunks: list[bytes] = []
        self.ended = False
        self.reset_code: int | None = None
        self.body_ended: Deferred[None] = Deferred()
        self.acknowledge = conn.server.acknowledge
        self._held = 0
        self._sending: list[tuple[bytes, bool, Deferred[None]]] = []
        self.on_data: Callable[[bytes], object] | None = None

    def header(self, name: bytes) -> bytes | None:
        """
        The first value of C{name}.
        """
        return next((v for n, v in self.headers if n == name), None)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def blocked(self) -> bool:
        """
        Whether data waits for the client to open its window.
        """
        return bool(self._sending)

    def respond(self, status: int = 200, headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
                end: bool = False) -> None:
        self.conn.h2.send_headers(self.id, [(b":status", b"%d" % status), *headers], end_stream=end)
        self.conn.flush()

    def send(self, data: bytes, end: bool = False) -> Deferred[None]:
        """
        Send C{data} as the client's windows allow; fires when all is sent.
        """
        d: Deferred[None] = Deferred()
        self._sending.append((data, end, d))
        self.pump()
        return d

    def pump(self) -> None:
        h2 = self.conn.h2
        while self._sending:
            data, end, d = self._sending[0]
            while data:
                window = min(h2.local_flow_control_window(self.id), h2.max_outbound_frame_size)
                if window <= 0:
                    self._sending[0] = (data, end, d)
                    self.conn.flush()
                    return
                h2.send_data(self.id, data[:window])
                data = data[window:]
            if end:
                h2.end_stream(self.id)
            self._sending.pop(0)
            self.conn.flush()
            d.callback(None)

    def trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.conn.h2.send_headers(self.id, headers, end_stream=True)
        self.conn.flush()

    def reset(self, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        self.conn.h2.reset_stream(self.id, code)
        self.conn.flush()

    def release(self) -> None:
        """
        Acknowledge the DATA held, and from now on at once.
        """
        self.acknowledge = True
        held, self._held = self._held, 0
        if held:
            self.conn.h2.increment_flow_control_window(held, self.id)
            self.conn.flush()

    def _data(self, data: bytes, size: int) -> None:
        self.chunks.append(data)
        if self.acknowledge:
            if size:
                self.conn.h2.acknowledge_received_data(size, self.id)
        else:
            self._held += size
            # (the connection's window is the server's to keep open)
            if size:
                self.conn.h2.increment_flow_control_window(size)
        if self.on_data is not None:
            self.on_data(data)


class ServerConnection(Protocol):
    """
    One client connection.
    """

    def __init__(self, server: H2Server):
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, ServerStream] = {}
        self.lost: Deferred[None] = Deferred()
        self.goaway: ConnectionTerminated | None = None
        self._pings: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        settings = {}
        if self.server.max_concurrent_streams is not None:
            settings[SettingCodes.MAX_CONCURRENT_STREAMS] = self.server.max_concurrent_streams
        self.h2.local_settings = type(self.h2.local_settings)(client=False, initial_values=settings)
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        for event in events:
            stream: ServerStream | None
            if isinstance(event, RequestReceived):
                stream = self.streams[event.stream_id] = ServerStream(self, event.stream_id, event.headers)
                self.server.streams.append(stream)
                self.server.handler(stream)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._data(event.data, event.flow_controlled_length)
            elif isinstance(event, StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.ended = True
                    stream.body_ended.callback(None)
            elif isinstance(event, StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.reset_code = event.error_code
                    stream._sending = []
                    if not stream.body_ended.called:
                        stream.body_ended.callback(None)
            elif isinstance(event, WindowUpdated):
                for stream in list(self.streams.values()):
                    if stream._sending and stream.reset_code is None:
                        stream.pump()
            elif isinstance(event, ConnectionTerminated):
                self.goaway = event
            elif isinstance(event, PingAckReceived) and self._pings:
                self._pings.pop(0).callback(None)
        self.flush()

    def ping(self) -> Deferred[None]:
        """
        Send a PING; fires when its ACK is back (the client has then
        answered every frame it read before it, e.g. with WINDOW_UPDATEs).
        """
        d: Deferred[None] = Deferred()
        self._pings.append(d)
        self.h2.ping(b"%08d" % len(self._pings))
        self.flush()
        return d

    def send_goaway(self, last_stream_id: int | None = None) -> None:
        """
        Send GOAWAY (NO_ERROR) naming C{last_stream_id} (default: the last
        stream it saw).
        """
        self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=last_stream_id)
        self.flush()
        # (h2 would send nothing more; the streams below it still answer)
        self.h2.state_machine.state = ConnectionState.SERVER_OPEN

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _Factory(Factory):
    noisy = False

    def __init__(self, server: H2Server):
        self._server = server

    def buildProtocol(self, addr: Any) -> ServerConnection:
        conn = ServerConnection(self._server)
        self._server.connections.append(conn)
        return conn


def _alpn(options: CertificateOptions, h2: bool) -> None:
    def select(connection: SSL.Connection, offered: list[bytes]) -> Any:
        return b"h2" if h2 and b"h2" in offered else SSL.NO_OVERLAPPING_PROTOCOLS
    options.getContext().set_alpn_select_callback(select)


class H2Server:
    """
    An HTTP/2 server on 127.0.0.1 calling C{handler(stream)} for each
    request (default: 200, no body).

    @ivar port: its port.
    @ivar connections: the connections made to it, in order.
    @ivar streams: every request's stream, in order.
    """

    def __init__(self, handler: Callable[[ServerStream], object] | None = None, *, tls: KeyPair | None = None,
                 max_concurrent_streams: int | None = None, acknowledge: bool = True, alpn: bool = True):
        self.handler = handler or (lambda stream: stream.respond(200, end=True))
        self.max_concurrent_streams = max_concurrent_streams
        self.acknowledge = acknowledge
        self.connections: list[ServerConnection] = []
        self.streams: list[ServerStream] = []
        self.tls = tls
        factory: Any = _Factory(self)
        if tls is not None:
            key = PKey.from_cryptography_key(tls.key)  # type: ignore[arg-type]
            options = CertificateOptions(privateKey=key,
                                         certificate=X509.from_cryptography(tls.cert),
                                         extraCertChain=[X509.from_cryptography(c) for c in tls.chain])
            _alpn(options, alpn)
            factory = TLSMemoryBIOFactory(options, False, factory)
            factory.noisy = False
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port: int = self.listening.getHost().port

    def service(self, **fields: Any) -> dict[str, Any]:
        """
        A service record for this server (C{fields} added).
        """
        record = {"protocol": "grpcs" if self.tls is not None else "grpc", "host": "127.0.0.1",
                  "port": self.port, "retries": 0, "connect_timeout": 5000, "read_timeout": 10000,
                  "write_timeout": 10000}
        record.update(fields)
        return record

    def stop(self) -> Deferred[Any]:
        """
        Stop listening and drop every connection.
        """
        waiting = [self.listening.stopListening() or succeed(None)]
        for conn in self.connections:
            if not conn.lost.called:
                waiting.append(conn.lost)
                conn.transport.abortConnection()  # type: ignore[union-attr]
        return DeferredList(waiting)
