"""
HTTP/2 on the proxy's listeners (L{GatewayH2Connection}): Twisted's
C{H2Connection} (built on the C{h2} state machine), whose streams are
L{echogate.proxy.h2stream.GatewayH2Stream}s, so that each stream is a
L{echogate.proxy.request.GatewayRequest} like an HTTP/1.1 request. A
connection becomes one after ALPN chose C{h2} on a TLS listener, or when
a plain listener with the C{http2} flag sees the client's preface
(L{echogate.proxy.negotiating}).

What it adds to Twisted's connection, at the edge:
 - its settings: at most C{max_streams} concurrent streams (a client that
   opens more breaks the protocol, and the connection is closed with
   GOAWAY), and a header list no larger than the head limits allow;
 - a client that resets streams faster than C{reset_rate} a second (after
   a burst of C{reset_burst}) is closed with GOAWAY ENHANCE_YOUR_CALM
   (rapid reset, CVE-2023-44487): each stream costs routing and plugin
   work, so the work a connection can cause this way is bounded;
 - when the client stops reading (the socket's buffer is full), every
   stream's producer is paused too, so that nothing queues without bound,
   and a client that reads nothing for C{send_timeout} is cut;
 - the idle timeout closes only a connection with no stream open (a gRPC
   stream may stay quiet for long), and counts only streams as activity
   (a client sending PINGs alone is closed all the same);
 - trailers after a body (gRPC's), sent when the stream ends;
 - the site's connection limits and drain: a draining site sends GOAWAY
   and closes once the streams in flight are answered.
"""
from __future__ import annotations

import functools
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.settings
import priority
from hyperframe.frame import GoAwayFrame
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection

from echogate.proxy.h2stream import GatewayH2Stream
from echogate.proxy.heads import DEFAULT_LIMITS, HeadLimits
from echogate.proxy.request import SERVER

__all__ = ["GatewayH2Connection", "H2Machine"]

_log = Logger(namespace="echogate.proxy")


class H2Machine(h2.connection.H2Connection):
    """
    The C{h2} state machine, ending a stream with its trailers when it
    has some (Twisted's sending loop ends streams with C{end_stream}).
    """

    def __init__(self, config: Any):
        super().__init__(config=config)
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}

    def end_stream(self, stream_id: int) -> None:
        trailers = self.trailers.pop(stream_id, None)
        if trailers:
            self.send_headers(stream_id, trailers, end_stream=True)
        else:
            super().end_stream(stream_id)


class GatewayH2Connection(H2Connection):
    """
    A client's HTTP/2 connection to the proxy (see the module's
    docstring).

    @param site: the proxy's L{echogate.proxy.site.GatewaySite}.
    @param max_streams: concurrent streams allowed.
    """

    _resetTokenBurst = 200
    _resetTokenRate = 50
    #: Set by the site when it drains: GOAWAY sent, closing once idle.
    _closing = False
    _send_call: IDelayedCall | None = None
    server_header = SERVER

    def __init__(self, site: Any, reactor: IReactorTime | None = None, max_streams: int = 128):
        super().__init__(reactor if reactor is not None else site.reactor)
        limits: HeadLimits = getattr(site, "head_limits", DEFAULT_LIMITS)
        # (What is sent is checked and lower-cased by the streams already:
        # h2's checks of every outgoing field cost a tenth of a response.)
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.conn: H2Machine = H2Machine(config)
        # Header values without Huffman coding: a few bytes more on the wire,
        # and no pure-Python bit-packing of every value of every response.
        self.conn.encoder.encode = functools.partial(type(self.conn.encoder).encode,  # type: ignore[method-assign]
                                                     self.conn.encoder, huffman=False)
        list_size = limits.headers * limits.header_line + limits.request_line
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: list_size})
        self.conn.decoder.max_header_list_size = list_size
        self._limits = limits
        self.site = site
        self.factory = site
        self.requestFactory = site.requestFactory
        self.timeOut = site.timeOut
        self._resetTokens = self._resetTokenBurst
        self._resetTokenTimestamp = self._reactor.seconds()

    def callLater(self, delay: float, f: Any, *a: Any) -> IDelayedCall:
        """
        A timer on the connection's reactor (the streams' body timers).
        """
        call: IDelayedCall = self._reactor.callLater(delay, f, *a)
        return call

    # -- the connection --------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        opened = getattr(self.site, "channel_opened", None)
        if opened is not None:
            opened(self)

    def connectionLost(self, reason: Failure = connectionDone, _cancelTimeouts: bool = True) -> None:
        self._cancel_send_timer()
        super().connectionLost(reason, _cancelTimeouts)
        closed = getattr(self.site, "channel_closed", None)
        if closed is not None:
            closed(self)

    def resetTimeout(self) -> None:
        # Only streams are activity: frames of the connection alone (PING,
        # SETTINGS, WINDOW_UPDATE) would otherwise keep a client that never
        # asks for anything connected for ever. (Twisted resets the idle
        # timer for every frame received and sent.)
        if self.streams:
            super().resetTimeout()

    def timeoutConnection(self) -> None:
        # Idle means no stream open: a stream in flight (a long gRPC call)
        # keeps the connection.
        if self.streams:
            # (TimeoutMixin has let its timer go: set a new one)
            self.setTimeout(self.timeOut)
            return
        super().timeoutConnection()

    @property
    def idle(self) -> bool:
        """
        Whether no stream is open (for the site's drain).
        """
        return not self.streams

    @property
    def requests(self) -> list[Any]:
        # (The site's drain edits the heads of requests not yet answered
        # on HTTP/1.1 connections; HTTP/2 says it with GOAWAY.)
        return []

    @property
    def persistent(self) -> bool:
        return not self._closing

    @persistent.setter
    def persistent(self, value: bool) -> None:
        if not value and not self._closing:
            # Draining: no new stream; closed once those in flight are done.
            # (A GOAWAY of our own: h2's close_connection would end the
            # streams in flight too, as it takes the connection for closed.)
            self._closing = True
            if not self.streams:
                self.loseConnection()
                return
            goaway = GoAwayFrame(0)
            goaway.error_code = h2.errors.ErrorCodes.NO_ERROR
            goaway.last_stream_id = self.conn.highest_inbound_stream_id
            if self._tryToWriteControlData():
                transport: Any = self.transport
                transport.write(goaway.serialize())

    def loseConnection(self) -> None:
        """
        Say GOAWAY and close.
        """
        self._closing = True
        transport: Any = self.transport
        if transport is not None and not transport.disconnecting:
            try:
                self.conn.close_connection()
                transport.write(self.conn.data_to_send())
            except h2.exceptions.ProtocolError:
                pass
            transport.loseConnection()

    def close_tunnel(self) -> None:
        """
        No WebSocket tunnel over HTTP/2 (the site's drain asks every
        connection).
        """

    def getPeer(self) -> Any:
        transport: Any = self.transport
        return transport.getPeer()

    def getHost(self) -> Any:
        transport: Any = self.transport
        return transport.getHost()

    # -- streams ---------------------------------------------------------------

    def _requestReceived(self, event: Any) -> None:
        # Twisted's, making a GatewayH2Stream and telling it when its head
        # is whole.
        stream_id = event.stream_id
        if not self._stillProducing:
            return  # closed by an earlier event of the same read
        if self._closing:
            try:
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            except h2.exceptions.ProtocolError:
                pass  # (the connection is closed already)
            return
        stream = GatewayH2Stream(stream_id, self, event.headers, self.requestFactory, self.site, self.factory)
        self.streams[stream_id] = stream
        self._streamCleanupCallbacks[stream_id] = Deferred()
        self._outboundStreamQueues[stream_id] = deque()
        try:
            self.priority.insert_stream(stream_id)
        except priority.DuplicateStreamError:
            pass  # a PRIORITY frame came first
        else:
            self.priority.block(stream_id)
        stream.started(event.stream_ended is not None)

    def _requestDataReceived(self, event: Any) -> None:
        if not self._stillProducing:
            return
        stream = self.streams.get(event.stream_id)
        if stream is None:
            # Refused (draining) or reset by us: keep the window open.
            self.openStreamWindow(event.stream_id, event.flow_controlled_length)
            return
        stream.receiveDataChunk(event.data, event.flow_controlled_length)

    def _requestEnded(self, event: Any) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.requestComplete()

    def _requestAborted(self, event: Any) -> None:
        # The client reset a stream: its request is told, and resets are
        # counted against the connection's budget (rapid reset).
        if not self._stillProducing:
            return
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.connectionLost(Failure(ConnectionLost(f"stream reset by the client ({event.error_code})")))
            if event.stream_id in self.streams:
                self._requestDone(event.stream_id)
        now = self._reactor.seconds()
        elapsed = max(0.0, now - self._resetTokenTimestamp)
        self._resetTokenTimestamp = now
        self._resetTokens = min(self._resetTokenBurst, self._resetTokens + elapsed * self._resetTokenRate) - 1
        if self._resetTokens < 0:
            _log.warn("closing an HTTP/2 client from {peer} that reset streams too fast",
                      peer=getattr(self.getPeer(), "host", "?"))
            self._closing = True
            self.conn.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            if self._tryToWriteControlData():
                # (GOAWAY written: the streams are told, timers stay set
                # for a client that reads nothing)
                transport: Any = self.transport
                transport.loseConnection()
                self.connectionLost(Failure(ConnectionLost("too many stream resets")), _cancelTimeouts=False)

    def openStreamWindow(self, streamID: int, increment: int) -> None:
        if increment <= 0:
            return
        try:
            self.conn.acknowledge_received_data(increment, streamID)
        except (h2.exceptions.StreamClosedError, KeyError):
            # The stream is over: the connection's window still opens.
            try:
                self.conn.increment_flow_control_window(increment)
            except h2.exceptions.ProtocolError:
                return
        except h2.exceptions.ProtocolError:
            return  # (the connection is closed)
        self._tryToWriteControlData()

    def _requestDone(self, streamID: int) -> None:
        super()._requestDone(streamID)
        self.conn.trailers.pop(streamID, None)
        if self._closing and not self.streams:
            self.loseConnection()

    # -- writing without the scheduling loop --------------------------------------

    def writeDataToStream(self, streamID: int, data: bytes) -> None:
        # Twisted queues every piece for its sending loop, which runs again
        # from a Deferred or a callLater(0) for each frame: a piece that the
        # windows take now, on a stream with nothing queued, while the
        # client reads, is sent at once (most of a proxied response).
        conn = self.conn
        if (not self._outboundStreamQueues[streamID] and self._consumerBlocked is None and self._stillProducing
                and len(data) <= conn.local_flow_control_window(streamID)):
            size = conn.max_outbound_frame_size
            for start in range(0, len(data), size):
                conn.send_data(streamID, data[start:start + size])
            transport: Any = self.transport
            transport.write(conn.data_to_send())
            if conn.local_flow_control_window(streamID) <= 0:
                self.streams[streamID].flowControlBlocked()
            return
        super().writeDataToStream(streamID, data)

    def endRequest(self, streamID: int) -> None:
        # As writeDataToStream: ended at once when nothing is queued.
        if not self._outboundStreamQueues[streamID] and self._consumerBlocked is None and self._stillProducing:
            conn = self.conn
            conn.end_stream(streamID)
            transport: Any = self.transport
            transport.write(conn.data_to_send())
            self._requestDone(streamID)
            return
        super().endRequest(streamID)

    def stream_open(self, stream_id: int) -> bool:
        """
        Whether stream C{stream_id} can still be written to.
        """
        return stream_id in self.streams and self._stillProducing

    def end_with_head(self, stream_id: int, code: bytes, fields: list[tuple[bytes, bytes]]) -> None:
        """
        Answer stream C{stream_id} with a head alone: one HEADERS frame
        that ends the stream (gRPC's "trailers-only" answers need it).
        """
        try:
            self.conn.send_headers(stream_id, [(b":status", code), *fields], end_stream=True)
        except h2.exceptions.StreamClosedError:
            pass
        self._tryToWriteControlData()
        if stream_id in self.streams:
            self._requestDone(stream_id)

    def trailers_for(self, stream_id: int, trailers: list[tuple[bytes, bytes]]) -> None:
        """
        End stream C{stream_id} with C{trailers} (after what is queued).
        """
        self.conn.trailers[stream_id] = trailers

    # -- writing: the client's own pace ----------------------------------------

    def pauseProducing(self) -> None:
        # The client reads slower than the streams produce: pause them all,
        # and give it send_timeout to start reading again.
        super().pauseProducing()
        for stream in list(self.streams.values()):
            stream.flowControlBlocked()
        if self._send_call is None:
            self._send_call = self._reactor.callLater(self._limits.send_timeout, self._send_expired)

    def resumeProducing(self) -> None:
        self._cancel_send_timer()
        super().resumeProducing()
        for stream in list(self.streams.values()):
            stream.windowUpdated()

    def _send_expired(self) -> None:
        self._send_call = None
        _log.info("closing an HTTP/2 client that read nothing for {timeout} s", timeout=self._limits.send_timeout)
        transport: Any = self.transport
        transport.abortConnection()

    def _cancel_send_timer(self) -> None:
        call, self._send_call = self._send_call, None
        if call is not None and call.active():
            call.cancel()
