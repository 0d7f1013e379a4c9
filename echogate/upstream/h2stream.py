"""
One request on an HTTP/2 connection to a service (L{H2Stream}): its body
sent under HTTP/2 flow control (the body's producer is paused while the
stream's or the connection's window is closed, and resumed by the
service's WINDOW_UPDATE), its response head handed to its call and its
body to an L{echogate.upstream.h2response.H2Response}. The connection
that carries it is L{echogate.upstream.h2connection}.
"""
from __future__ import annotations

import typing
from collections import deque
from typing import Any

from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from twisted.internet.interfaces import IConsumer, IProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from zope.interface import implementer

from echogate.upstream.h1request import RequestBody
from echogate.upstream.h2response import H2Response
from echogate.upstream.hop_by_hop import split_response_head
from echogate.upstream.response import DONE

_log = Logger(namespace="echogate.upstream")

#: Delivered response bytes are handed back to the service's window (one
#: WINDOW_UPDATE) once there are this many: a quarter of the stream's
#: window, so the service never waits on bytes already read.
ACKNOWLEDGE_AT = 16384


class StreamReset(Exception):
    """
    The service reset the stream (RST_STREAM), or the stream was given up.

    @ivar code: the HTTP/2 error code.
    """

    def __init__(self, code: int, by_service: bool = True):
        try:
            name = ErrorCodes(code).name
        except ValueError:
            name = str(code)
        who = "by the service" if by_service else "by the gateway"
        super().__init__(f"stream reset {who} ({name})")
        self.code = code


class StreamCall(typing.Protocol):
    """
    What a stream tells the call it carries (the HTTP/2 client's call
    provides it): the response head, a failure before it, and the end of
    the stream.
    """

    def got_head(self, response: H2Response) -> None: ...

    def lost(self, value: BaseException, refused: bool) -> None: ...

    def ended(self) -> None: ...


class StreamConnection(typing.Protocol):
    """
    What a stream needs from its connection (L{echogate.upstream.h2connection.H2ClientConnection}):
    its L{h2.connection.H2Connection}, sending what it queued, and
    forgetting a stream that is over.
    """

    h2: Any

    def flush(self) -> None: ...

    def stream_closed(self, stream: H2Stream) -> None: ...


@implementer(IConsumer)
class H2Stream:
    """
    One stream: the consumer its request body's producer writes to, and
    the receiver of its response's events.

    @ivar id: the stream id.
    @ivar response: the response, once its head arrived.
    """

    def __init__(self, conn: StreamConnection, stream_id: int, call: StreamCall | None):
        self._conn = conn
        self.id = stream_id
        self._call = call
        self.response: H2Response | None = None
        self._producer: Any = None
        self._paused = False
        self._pending: deque[bytes] = deque()
        self._body_done = False
        self._local_ended = False
        self._closed = False
        self._handed = False
        # Delivered bytes not yet handed back to the service's window.
        self._consumed = 0

    # -- the request body ---------------------------------------------------

    def send_body(self, body: RequestBody) -> None:
        """
        Start the body's producer, writing to this stream.
        """
        producer = self._producer = body.producer()
        done = producer.startProducing(self)
        done.addBoth(self._body_finished, producer)

    def _body_finished(self, outcome: Any, producer: Any) -> None:
        if self._producer is not producer:
            return
        self._producer = None
        if self._closed:
            return
        if isinstance(outcome, Failure):
            _log.failure("a request body's producer failed", outcome)
            self.reset(ErrorCodes.CANCEL, outcome.value)
            return
        self._body_done = True
        self._send_pending()
        self._conn.flush()

    def write(self, data: bytes) -> None:
        """
        Queue C{data} to send, and send what the windows let through;
        pause the producer when they are closed.
        """
        if self._closed or self._local_ended or not data:
            return
        self._pending.append(data)
        self._send_pending()
        self._conn.flush()
        if self._pending and not self._paused and self._producer is not None:
            self._paused = True
            self._producer.pauseProducing()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Nothing: the stream holds the producer it started.
        """

    def unregisterProducer(self) -> None:
        """
        Nothing, as L{registerProducer}.
        """

    def _send_pending(self) -> None:
        h2 = self._conn.h2
        pending = self._pending
        while pending:
            window = min(h2.local_flow_control_window(self.id), h2.max_outbound_frame_size)
            if window <= 0:
                return
            chunk = pending[0]
            if len(chunk) > window:
                pending[0] = chunk[window:]
                chunk = chunk[:window]
            else:
                pending.popleft()
            h2.send_data(self.id, chunk)
        if self._body_done and not self._local_ended:
            self._local_ended = True
            h2.end_stream(self.id)

    def window_opened(self) -> None:
        """
        The service opened a window: send what waits, and resume the
        producer once nothing does.
        """
        if self._closed or self._local_ended:
            return
        self._send_pending()
        if not self._pending and self._paused and self._producer is not None:
            self._paused = False
            self._producer.resumeProducing()

    def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        self._pending.clear()
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                _log.failure("stopping a request body's producer")

    # -- the response -------------------------------------------------------

    def head(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        The response head arrived (C{headers} with the pseudo-header
        fields): make the response (handed to the call by the connection).
        """
        code = 0
        raw = []
        for name, value in headers:
            if name.startswith(b":"):
                if name == b":status":
                    code = int(value)
            else:
                raw.append((name, value))
        end_to_end, length, _, via = split_response_head(raw)
        self.response = H2Response(self, code, raw, end_to_end, length, via)

    def hand_over(self) -> None:
        """
        Give the response to the call (and tell it the stream ended, when
        it already did).
        """
        call = self._call
        if call is None or self.response is None or self._handed:
            return
        self._handed = True
        if self._closed:
            self._call = None
        call.got_head(self.response)
        if self._closed:
            call.ended()

    def data(self, data: bytes, size: int) -> None:
        """
        A DATA frame arrived.
        """
        if self.response is not None:
            self.response._data(data, size)

    def trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        The trailing HEADERS frame arrived.
        """
        if self.response is not None:
            self.response.trailers = [(n, v) for n, v in headers if not n.startswith(b":")]

    def acknowledge(self, size: int) -> None:
        """
        Reopen the service's window on this stream by C{size} delivered
        bytes (nothing once the service ended the stream).
        """
        if self._closed:
            return
        self._consumed += size
        if self._consumed < ACKNOWLEDGE_AT:
            return
        size, self._consumed = self._consumed, 0
        try:
            self._conn.h2.increment_flow_control_window(size, self.id)
        except (H2Error, KeyError):
            return  # the stream closed meanwhile
        self._conn.flush()

    def ended(self) -> None:
        """
        The service ended the stream (END_STREAM): the response is whole.
        """
        if self.response is None:
            self._close(StreamReset(ErrorCodes.PROTOCOL_ERROR), refused=False)
            return
        if not self._local_ended:
            # (the answer came before the whole request: the rest is moot)
            self._stop_producer()
            self._reset_wire(ErrorCodes.CANCEL)
        self._close(None, refused=False)

    def was_reset(self, code: int) -> None:
        """
        The service reset the stream.
        """
        self._close(StreamReset(code), refused=code == ErrorCodes.REFUSED_STREAM)

    def refused(self, reason: BaseException) -> None:
        """
        The service will not process this stream (a GOAWAY below its id):
        the request may go again.
        """
        self._close(reason, refused=True)

    def lost(self, reason: BaseException) -> None:
        """
        The connection is gone.
        """
        self._close(reason, refused=False)

    # -- giving up ------------------------------------------------------------

    def reset(self, code: int, reason: BaseException | None = None) -> None:
        """
        Reset the stream (C{code}); its call or response learns of it as
        C{reason} (default: a L{StreamReset} by the gateway).
        """
        if self._closed:
            return
        self._reset_wire(code)
        self._close(reason or StreamReset(code, by_service=False), refused=False)

    def abandon(self) -> None:
        """
        The call gave up (cancelled, or out of time): reset the stream,
        and tell the call nothing.
        """
        self._call = None
        self.reset(ErrorCodes.CANCEL)

    def stop(self) -> None:
        """
        The response's reader stopped (L{H2Response.stopProducing}).
        """
        self.reset(ErrorCodes.CANCEL)

    def _reset_wire(self, code: int) -> None:
        try:
            self._conn.h2.reset_stream(self.id, code)
        except (H2Error, KeyError):
            return  # already closed on the wire
        self._conn.flush()

    def _close(self, reason: BaseException | None, refused: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_producer()
        self._conn.stream_closed(self)
        response = self.response
        call = self._call
        if response is None:
            self._call = None
            if call is not None:
                call.lost(reason or StreamReset(ErrorCodes.PROTOCOL_ERROR), refused)
            return
        if self._handed:
            self._call = None
            if call is not None:
                call.ended()
        # (else hand_over, at the end of this read, gives the head and the end)
        response._finished(DONE if reason is None else Failure(ResponseFailed([Failure(reason)])))


__all__ = ["H2Stream", "StreamReset", "StreamCall", "StreamConnection"]
