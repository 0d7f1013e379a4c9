"""
A raw HTTP/2 client for the tests, on Twisted and C{h2}: streams opened
by hand (headers, data, resets, a window left shut), so that the tests can
send what ordinary clients never would.
"""
from __future__ import annotations

from typing import Any

import attrs
import h2.config
import h2.connection
import h2.events
import h2.settings
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.python.failure import Failure


@attrs.define
class Answer:
    """
    What came back on one stream.
    """

    status: int = 0
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client(Protocol):
    """
    One HTTP/2 client connection. C{acknowledge}: whether received data
    opens the windows again (false: the server's sending stops once the
    windows are used up).
    """

    def __init__(self, acknowledge: bool = True, window: int | None = None):
        # (No checks of what is sent: the tests send what clients should not.)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, split_outbound_cookies=False))
        self.acknowledge = acknowledge
        self._window = window
        self.answers: dict[int, Answer] = {}
        self.done: dict[int, Deferred[Answer]] = {}
        self.heads: dict[int, Deferred[Answer]] = {}
        self.closed: Deferred[Any] = Deferred()
        self.goaway: int | None = None
        self.settled: Deferred[None] = Deferred()
        self.received = 0

    def connectionMade(self) -> None:
        self.conn.initiate_connection()
        if self._window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self._window})
        self.transport.write(self.conn.data_to_send())

    def request(self, method: bytes, path: bytes, authority: bytes = b"example.test",
                headers: list[tuple[bytes, bytes]] = (), body: bytes | None = None, end: bool = True,
                scheme: bytes = b"http") -> int:  # type: ignore[assignment]
        """
        Open a stream; C{end}: end it after C{body} (else more may follow
        with L{send}).
        """
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(b":method", method), (b":path", path), (b":scheme", scheme)]
        if authority:
            fields.append((b":authority", authority))
        fields.extend(headers)
        self.answers[stream_id] = Answer()
        self.done[stream_id] = Deferred()
        self.heads[stream_id] = Deferred()
        self.conn.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.send(stream_id, body, end)
        self.transport.write(self.conn.data_to_send())
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """
        Send C{data} on C{stream_id}, as much as the windows allow now.
        """
        room = min(self.conn.local_flow_control_window(stream_id), len(data))
        size = self.conn.max_outbound_frame_size
        for start in range(0, room, size):
            self.conn.send_data(stream_id, data[start:min(start + size, room)])
        if end and room == len(data):
            self.conn.end_stream(stream_id)
        self.transport.write(self.conn.data_to_send())

    def unlimited(self) -> None:
        """
        Open streams beyond what the server allows (h2 would refuse to).
        """
        from collections import deque

        self.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = deque([2**31 - 1])

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id)
        self.transport.write(self.conn.data_to_send())

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.loseConnection()
            return
        for event in events:
            sid = getattr(event, "stream_id", None)
            answer = self.answers.get(sid) if sid is not None else None
            if isinstance(event, h2.events.ResponseReceived) and answer is not None:
                answer.headers = [(k, v) for k, v in event.headers if k != b":status"]
                answer.status = int(dict(event.headers)[b":status"])
                self.heads[sid].callback(answer)
            elif isinstance(event, h2.events.DataReceived):
                self.received += len(event.data)
                if answer is not None:
                    answer.body += event.data
                if self.acknowledge:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.TrailersReceived) and answer is not None:
                answer.trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded) and answer is not None:
                self._finish(sid)
            elif isinstance(event, h2.events.StreamReset) and answer is not None:
                answer.reset = event.error_code
                self._finish(sid)
            elif isinstance(event, h2.events.RemoteSettingsChanged) and not self.settled.called:
                self.settled.callback(None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)

    def _finish(self, stream_id: int) -> None:
        answer = self.answers[stream_id]
        if not self.heads[stream_id].called:
            self.heads[stream_id].callback(answer)
        if not self.done[stream_id].called:
            self.done[stream_id].callback(answer)

    def connectionLost(self, reason: Failure) -> None:
        for stream_id, d in self.done.items():
            if not d.called:
                self.answers[stream_id].reset = -1
                d.callback(self.answers[stream_id])
        self.closed.callback(self.goaway)


class _ALPN(CertificateOptions):
    def getContext(self) -> SSL.Context:
        context = super().getContext()
        context.set_alpn_protos(self.protocols)
        return context


async def connect(port: int, tls: bool = False, protocols: list[bytes] | None = None, **kw: Any) -> H2Client:
    """
    An L{H2Client} connected to 127.0.0.1:C{port} (over TLS, unverified,
    offering C{protocols} by ALPN, when C{tls}), its settings exchanged.
    """
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if tls:
        options = _ALPN(verify=False)
        options.protocols = protocols or [b"h2", b"http/1.1"]
        from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
        from zope.interface import implementer

        @implementer(IOpenSSLClientConnectionCreator)
        class _Creator:
            def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:
                return SSL.Connection(options.getContext(), None)

        endpoint = wrapClientTLS(_Creator(), endpoint)
    client = H2Client(**kw)
    await connectProtocol(endpoint, client)
    await client.settled
    return client
