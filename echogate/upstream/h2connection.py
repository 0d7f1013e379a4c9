"""
One HTTP/2 connection to a service (L{H2ClientConnection}), h2c with
prior knowledge or TLS with ALPN C{h2}: the L{h2} state machine on a
Twisted protocol, multiplexing up to the service's
C{MAX_CONCURRENT_STREAMS} streams (L{echogate.upstream.h2stream.H2Stream}).
Calls wait on it until the service's first SETTINGS arrive; the
connection's receive window is kept wide open (each stream's own window
is the back-pressure). The pool is L{echogate.upstream.h2client}.
"""
from __future__ import annotations

import typing
from typing import Any

from h2 import events as ev
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error, NoAvailableStreamIDError
from h2.settings import SettingCodes
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate.upstream.h1request import RequestBody
from echogate.upstream.h2stream import H2Stream, StreamCall

_log = Logger(namespace="echogate.upstream")

#: The connection's receive window, opened at once (the streams' windows,
#: 65535 bytes each, pace the service).
CONNECTION_WINDOW = 1 << 24
#: Streams assumed to fit on a connection before its SETTINGS arrive.
ASSUMED_STREAMS = 100


class GoAway(Exception):
    """
    The service sent GOAWAY: the stream was not processed (it may go again).
    """

    def __init__(self, code: int):
        try:
            name = ErrorCodes(code).name
        except ValueError:
            name = str(code)
        super().__init__(f"the service sent GOAWAY ({name})")


class NoH2(Exception):
    """
    The service's TLS did not agree on C{h2} (ALPN).
    """

    def __init__(self, negotiated: bytes | None):
        super().__init__(f"the service did not select h2 by ALPN (selected {negotiated!r})")


class ConnectionCall(StreamCall, typing.Protocol):
    """
    A call as a connection sees it: what to send, and being told the
    stream that carries it.
    """

    headers: list[tuple[bytes, bytes]]
    body: RequestBody | None

    def started(self, stream: H2Stream) -> None: ...


class ConnectionPool(typing.Protocol):
    """
    The client a connection belongs to (L{echogate.upstream.h2client.H2UpstreamClient}).
    """

    def place(self, call: ConnectionCall) -> None: ...

    def forget(self, conn: H2ClientConnection) -> None: ...

    def now_idle(self, conn: H2ClientConnection) -> None: ...


class H2ClientConnection(Protocol):
    """
    One connection: its streams by id, the calls waiting for it to be
    ready, and whether it takes new streams.

    @ivar h2: the L{H2Connection} state machine.
    @ivar key: the pool key (host, port, TLS key).
    @ivar idle_since: when its last stream ended (C{None} while in use).
    """

    def __init__(self, pool: ConnectionPool, key: tuple[Any, ...], tls: bool):
        self._pool = pool
        self.key = key
        self._tls = tls
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, H2Stream] = {}
        self._waiting: list[ConnectionCall] = []
        self.ready = False
        self.closing = False
        self.lost = False
        self._checked = False
        self._error: BaseException | None = None
        self._unacknowledged = 0
        self._handovers: list[H2Stream] = []
        self.idle_since: float | None = None
        self.connecting: Deferred[Any] | None = None
        self._waiters: list[Deferred[None]] = []

    # -- placing calls ------------------------------------------------------

    def room(self) -> int:
        """
        How many more streams it takes now.
        """
        if self.closing or self.lost:
            return 0
        if not self.ready:
            return ASSUMED_STREAMS - len(self._waiting)
        return int(self.h2.remote_settings.max_concurrent_streams) - len(self.streams)

    def submit(self, call: ConnectionCall) -> None:
        """
        Start C{call} on a new stream, or once the connection is ready.
        """
        self.idle_since = None
        if self.ready:
            self._start(call)
        else:
            self._waiting.append(call)

    def withdraw(self, call: ConnectionCall) -> None:
        """
        C{call} no longer waits for this connection.
        """
        if call in self._waiting:
            self._waiting.remove(call)
            self._maybe_idle()

    def _start(self, call: ConnectionCall) -> None:
        h2 = self.h2
        try:
            stream_id = h2.get_next_available_stream_id()
        except NoAvailableStreamIDError:
            self._go_away()
            self._pool.place(call)
            return
        body = call.body
        try:
            h2.send_headers(stream_id, call.headers, end_stream=body is None)
        except (H2Error, ValueError, TypeError) as e:
            call.lost(e, refused=False)
            self._maybe_idle()
            return
        stream = self.streams[stream_id] = H2Stream(self, stream_id, call)
        call.started(stream)
        if body is not None:
            stream.send_body(body)
        self.flush()

    def _go_away(self) -> None:
        """
        No new streams from now on: out of the pool, closed once the last
        stream ends.
        """
        if not self.closing:
            self.closing = True
            self._pool.forget(self)
        if not self.streams and not self._waiting:
            self.close()

    # -- the wire -----------------------------------------------------------

    def connectionMade(self) -> None:
        h2 = self.h2
        h2.local_settings = type(h2.local_settings)(client=True, initial_values={SettingCodes.ENABLE_PUSH: 0})
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def flush(self) -> None:
        """
        Write what the state machine queued.
        """
        data = self.h2.data_to_send()
        if data and not self.lost:
            self.transport.write(data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        if self._tls and not self._checked:
            self._checked = True
            negotiated = getattr(self.transport, "negotiatedProtocol", None)
            if negotiated != b"h2":
                self._fail(NoH2(negotiated))
                return
        try:
            events = self.h2.receive_data(data)
        except H2Error as e:
            self._fail(e, ErrorCodes.PROTOCOL_ERROR)
            return
        try:
            for event in events:
                self._event(event)
        finally:
            self.flush()
            handovers, self._handovers = self._handovers, []
            for stream in handovers:
                stream.hand_over()

    def _event(self, event: ev.Event) -> None:
        streams = self.streams
        if isinstance(event, ev.DataReceived):
            size = event.flow_controlled_length or 0
            self._unacknowledged += size
            if self._unacknowledged >= CONNECTION_WINDOW // 2:
                self.h2.increment_flow_control_window(self._unacknowledged)
                self._unacknowledged = 0
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.data(event.data, size)
        elif isinstance(event, ev.ResponseReceived):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.head(event.headers)
                self._handovers.append(stream)
        elif isinstance(event, ev.TrailersReceived):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.trailers(event.headers)
        elif isinstance(event, ev.StreamEnded):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.ended()
        elif isinstance(event, ev.StreamReset):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.was_reset(event.error_code)
        elif isinstance(event, ev.WindowUpdated):
            if event.stream_id:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.window_opened()
            else:
                for stream in list(streams.values()):
                    stream.window_opened()
        elif isinstance(event, ev.RemoteSettingsChanged):
            self._settings(event)
        elif isinstance(event, ev.ConnectionTerminated):
            self._terminated(event)

    def _settings(self, event: ev.RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for stream in list(self.streams.values()):
                stream.window_opened()
        if self.ready:
            return
        self.ready = True
        waiting, self._waiting = self._waiting, []
        for call in waiting:
            if self.room() > 0:
                self._start(call)
            else:
                self._pool.place(call)
        self._maybe_idle()

    def _terminated(self, event: ev.ConnectionTerminated) -> None:
        """
        GOAWAY: the streams above its last stream id were not processed
        (their calls may go again); those below it may still end well.
        """
        # h2 treats the connection as closed after a GOAWAY; the streams
        # the service still processes need their frames read.
        self.h2.state_machine.state = ConnectionState.CLIENT_OPEN
        last = event.last_stream_id if event.last_stream_id is not None else 0
        reason = GoAway(event.error_code or 0)
        self.closing = True
        self._pool.forget(self)
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                stream.refused(reason)
        waiting, self._waiting = self._waiting, []
        for call in waiting:
            self._pool.place(call)
        self._go_away()

    def _fail(self, error: BaseException, code: int | None = None) -> None:
        """
        The connection cannot go on: GOAWAY (with C{code}) and drop it;
        its calls and streams fail with C{error}.
        """
        self._error = error
        if code is not None:
            try:
                self.h2.close_connection(code)
                self.flush()
            except H2Error:
                pass
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self._pool.forget(self)
        value: BaseException = self._error or reason.value or ierror.ConnectionDone()
        waiting, self._waiting = self._waiting, []
        for call in waiting:
            call.lost(value, refused=False)
        for stream in list(self.streams.values()):
            stream.lost(value)
        self.streams.clear()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def connect_failed(self, failure: Failure) -> None:
        """
        The connection was never made.
        """
        self.connecting = None
        self.lost = True
        self._pool.forget(self)
        waiting, self._waiting = self._waiting, []
        for call in waiting:
            call.lost(failure.value or ierror.ConnectError(), refused=False)

    # -- ending -------------------------------------------------------------

    def stream_closed(self, stream: H2Stream) -> None:
        """
        C{stream} is over.
        """
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        if self.closing and not self.streams:
            self.close()
        else:
            self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.streams and not self._waiting and not self.lost and self.ready and not self.closing:
            self._pool.now_idle(self)

    def close(self) -> Deferred[None]:
        """
        Close the connection (GOAWAY, then the TCP connection).

        @return: a Deferred firing once it is closed.
        """
        if self.lost:
            return succeed(None)
        if self.transport is None:
            if self.connecting is not None:
                self.connecting.cancel()
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self.closing = True
        try:
            self.h2.close_connection()
            self.flush()
        except H2Error:
            pass
        self.transport.loseConnection()
        return d


__all__ = ["H2ClientConnection", "GoAway", "NoH2", "ConnectionCall", "ConnectionPool"]
