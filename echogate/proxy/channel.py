"""
The proxy's HTTP/1.1 connection (L{GatewayChannel}): Twisted's
C{HTTPChannel}, with a one-step path for a whole head that announces no
body (L{simple_head}), batched writes and one idle timer per connection.
"""
from __future__ import annotations

import typing
from typing import Any

from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server

from echogate._version import __version__
from echogate.proxy.heads import DEFAULT_LIMITS, HeadLimits, error_response, head_error, simple_head, simple_head_error

_log = Logger(namespace="echogate.proxy")
_SERVER = f"echogate/{__version__}".encode()


class TunnelReceiver(typing.Protocol):
    """
    What takes a connection's bytes after a 101
    (L{echogate.proxy.tunnel.Tunnel} provides it).
    """

    def client_data(self, data: bytes) -> None:
        """Bytes from the client."""

    def client_lost(self, reason: Failure) -> None:
        """The client's connection closed."""

    def close(self) -> None:
        """Close both sides."""


#: No head check worked out yet (see GatewayChannel._checked).
_UNCHECKED = object()

#: A chunk size beyond this (nginx's off_t) is refused: 17 hex digits.
_MAX_CHUNK = 2**63 - 1


class GatewayChannel(http.HTTPChannel):
    """
    The proxy's HTTP/1.1 connection: Twisted's, with what does not change
    during a connection looked up once instead of for every request: its
    two addresses (each C{Request} asks for both; the local one is a
    C{getsockname} system call) and whether it is TLS (an interface
    adaptation). Its writes are batched (L{echogate.batching}) when the
    site has a L{echogate.batching.WriteBatcher}. Its idle timeout is one
    timer for the connection's life (see L{setTimeout}).

    A request head that arrives whole in one read, between requests, and
    has no body is taken in one step (L{simple_head}) instead of line by
    line; the request it makes is the one C{HTTPChannel} would make (of
    the site's C{requestFactory}, same headers, same checks of persistence
    and length), and anything else goes through C{HTTPChannel} unchanged.

    At the edge (see docs/security.md) it answers, then closes, what
    C{HTTPChannel} would take or drop without a word: a request line or
    header line over the site's L{HeadLimits} (414, 431), too many
    headers (431), a head that is not all CRLF lines (400), a head without
    a valid Host, with ambiguous framing, or TRACE (L{head_error}), a
    chunk size beyond 63 bits (400); a head that takes longer than
    C{header_timeout} to arrive and a body that stalls for
    C{body_timeout} get 408. A request with a body is routed and
    authorised when its head arrives
    (L{echogate.proxy.request.GatewayRequest.head_received}),
    before the body is read; C{100 Continue} is sent only then.
    """

    #: The site that made it (set by C{Site.buildProtocol}): an
    #: L{echogate.proxy.site.GatewaySite}.
    site: server.Site
    #: The client's connection: TCP, or TLS over it, maybe batched.
    transport: ITCPTransport
    #: The idle timeout in seconds (C{TimeoutMixin} declares an C{int},
    #: but any number of seconds works, as for C{callLater}).
    timeOut: float | None  # type: ignore[assignment]
    _host: Any = None
    _idle_call: Any = None
    _peer: Any = None
    _secure: bool | None = None
    _limits: HeadLimits = DEFAULT_LIMITS
    _head_call: Any = None
    _body_call: Any = None
    _send_call: Any = None
    _held = False
    _held_timeout: float | None = None
    #: Whether a streamed body's reading is paused (L{pause_body}).
    _upload_paused = False
    _refused = False
    #: What the connection's bytes go to after a 101 (L{switch_to_tunnel}).
    _tunnel: TunnelReceiver | None = None
    #: L{head_error} of a head taken in one step, worked out from its lines.
    _checked: Any = _UNCHECKED
    #: Twisted's own bound on the whole head; the site's limits apply per
    #: line and per header count, and this stays a backstop.
    totalHeadersSize = 1024 * 1024

    def makeConnection(self, transport: Any) -> None:
        batcher = getattr(self.factory, "write_batcher", None)
        if batcher is not None:
            transport = batcher.wrap(transport)
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        limits = getattr(self.factory, "head_limits", None)
        if limits is not None:
            self._limits = limits
        self.maxHeaders = self._limits.headers
        self.MAX_LENGTH = max(self._limits.request_line, self._limits.header_line)
        self._fast_size = min(self._limits.request_line, self._limits.header_line)
        super().connectionMade()
        opened = getattr(self.factory, "channel_opened", None)
        if opened is not None:
            opened(self)

    @property
    def idle(self) -> bool:
        """
        Whether the connection is between requests: no request being
        received, handled or answered (a keep-alive connection waiting).
        """
        return not self.requests and not self._handlingRequest

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """
        Whether the connection stays open after C{request}: for HTTP/1.1
        unless a C{close} token is in any Connection line (each split on
        commas: C{Connection: close, X-Foo} closes, where C{HTTPChannel}
        looks at the first line's space-separated words only), never for
        HTTP/1.0, and not once the site is draining (the node is stopping).
        A closing HTTP/1.1 response says C{Connection: close}.
        """
        if version != b"HTTP/1.1":
            return False
        lines = request.requestHeaders.getRawHeaders(b"connection")
        if lines and any(token.strip().lower() == b"close" for line in lines for token in line.split(b",")):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        if getattr(self.factory, "draining", False):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return True

    # -- refusing ----------------------------------------------------------

    def refuse(self, status: int, message: str | None = None) -> None:
        """
        Answer C{status} with a JSON error and close the connection, reading
        nothing more from it.
        """
        if self._refused:
            return
        self._refused = True
        self._cancel_timers()
        self.persistent = False
        self.transport.write(error_response(status, message))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # What HTTPChannel calls for a malformed head, chunk or header: a
        # JSON 400 instead of its bare status line.
        self.refuse(400)

    def lineLengthExceeded(self, line: bytes) -> None:
        # A line longer than either limit, still incomplete: which limit
        # depends on whether it is the request line.
        self.refuse(414 if not self.requests else 431)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if not self.requests:
            if len(line) > self._limits.request_line:
                self.refuse(414)
                return
        elif len(line) > self._limits.header_line:
            self.refuse(431)
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(431)
            return False
        kept: bool = super().headerReceived(line)
        return kept

    # -- timers --------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for name in ("_head_call", "_body_call", "_send_call"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()

    def _head_started(self) -> None:
        if self._head_call is None:
            self._head_call = self.callLater(self._limits.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_call = None
        self.refuse(408)

    def _body_read(self) -> None:
        call = self._body_call
        if call is not None:
            call.reset(self._limits.body_timeout)
        else:
            self._body_call = self.callLater(self._limits.body_timeout, self._body_expired)

    def _body_done(self) -> None:
        call, self._body_call = self._body_call, None
        if call is not None and call.active():
            call.cancel()

    def _body_expired(self) -> None:
        self._body_call = None
        request = self.requests[-1] if self.requests else None
        answer = getattr(request, "answer_early", None)
        if answer is not None and request is not None and not request.startedWriting:
            answer(408)
        else:
            self.refuse(408)

    def pauseProducing(self) -> None:
        # The client stopped reading what we send: it has send_timeout to
        # start again.
        super().pauseProducing()
        if self._send_call is None and not self._refused:
            self._send_call = self.callLater(self._limits.send_timeout, self._send_expired)

    def resumeProducing(self) -> None:
        call, self._send_call = self._send_call, None
        if call is not None and call.active():
            call.cancel()
        super().resumeProducing()
        if self._held or self._upload_paused:
            self._networkProducer.pauseProducing()

    def _send_expired(self) -> None:
        self._send_call = None
        _log.info("closing a client that read nothing for {timeout} s", timeout=self._limits.send_timeout)
        self._cancel_timers()
        self.transport.abortConnection()

    # -- the head, then the body ---------------------------------------------

    def allHeadersReceived(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()
        request = self.requests[-1]
        request.method = self._command
        status = self._checked
        if status is _UNCHECKED:
            status = head_error(request, self._version)
        else:
            self._checked = _UNCHECKED
        if status is None and self._limits.reject_underscores and any(
                b"_" in name for name, _ in request.requestHeaders.getAllRawHeaders()):
            status = 400
        if status is not None:
            self.refuse(status)
            return
        # (No parseCookies, which HTTPChannel calls for every request: the
        # proxy passes Cookie headers on, and plugins read them through the
        # PDK; Twisted's parsed received_cookies stays empty.)
        self.persistent = self.checkPersistence(request, self._version)
        request.gotLength(self.length)
        if self.length != 0:
            # A body follows: route and authorise on the head first.
            self._body_read()
            request.head_received(self._command, self._path, self._version)

    def hold_body(self) -> None:
        """
        Stop reading the request body until L{release_body} (the head is
        being routed and authorised).
        """
        if not self._held:
            self._held = True
            self._body_done()
            # Nor the idle timer: the client waits on us (for 100 Continue).
            self._held_timeout = self.setTimeout(None)
            self._networkProducer.pauseProducing()

    def release_body(self, expects_continue: bool, read: bool = True) -> None:
        """
        Read the request body (sending C{100 Continue} first if the client
        waits for it); with C{read} false, the body is all here already and
        the request goes on as C{HTTPChannel} handles a whole one.
        """
        if self._refused:
            return
        held_timeout, self._held_timeout = self._held_timeout, None
        if not read:
            # HTTPChannel has taken the request in hand with the idle timer
            # off (as it was while held): it restores this one after it.
            self._held = False
            self._savedTimeOut = held_timeout
            return
        if expects_continue:
            self._send100Continue()
        if self._held:
            self._held = False
            self.setTimeout(held_timeout)
            self._body_read()
            self._networkProducer.resumeProducing()

    def pause_body(self) -> None:
        """
        Stop reading a streamed request body until L{resume_body}: the
        service takes no more for now. The body timer stops meanwhile (the
        service, not the client, is the slow one), and the idle timer
        waits (see L{_idle_expired}).
        """
        if not self._upload_paused and not self._refused:
            self._upload_paused = True
            self._body_done()
            self._networkProducer.pauseProducing()

    def resume_body(self) -> None:
        """
        Read a streamed request body again (after L{pause_body}).
        """
        if not self._upload_paused:
            return
        self._upload_paused = False
        if self._refused:
            return
        if not self._handlingRequest:
            self._body_read()
        self._networkProducer.resumeProducing()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        reading_body = not self._handlingRequest
        if reading_body and not self._held:
            # (Not while the head is being routed and authorised: then the
            # gateway, not the client, is the one taking its time.)
            self._body_read()
        super().rawDataReceived(data)
        decoder = self._transferDecoder
        if reading_body and decoder is not None and getattr(decoder, "length", 0) > _MAX_CHUNK:
            # Twisted's chunked decoder takes any number of hex digits and
            # would wait for that many bytes.
            self.refuse(400)

    def close_after_response(self) -> None:
        """
        The request in hand is answered before its body was all read: read
        nothing more, and close the connection once the answer is written.
        """
        self.persistent = False
        self._refused = True
        self._cancel_timers()
        self._held = False

    def _finishRequestBody(self, data: bytes) -> None:
        # The body's end (HTTPChannel's decoders call this; bodiless
        # requests go straight to allContentReceived, untouched, which
        # keeps them cheap).
        self._body_done()
        request = self.requests[-1] if self.requests else None
        if request is None or request.finished or self._refused:
            # Answered (and closing) before its body was all read.
            return
        http.HTTPChannel._finishRequestBody(self, data)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.line_mode:
            # Between requests: no request being read or in hand, and no
            # partial line kept. (HTTPChannel leaves line mode from the end
            # of a head until its request is done, and for good after a
            # request that closes the connection.)
            if not self.requests and not self._buffer and len(data) <= self._fast_size:
                head = simple_head(data, self.totalHeadersSize, self.maxHeaders)
                if head is not None:
                    # (no resetTimeout: handling the request moves the timer)
                    method, target, version, headers = head
                    request = self.requestFactory(self, 0)
                    self.requests.append(request)
                    add = request.requestHeaders.addRawHeader
                    for name, value in headers:
                        add(name, value.strip(b" \t"))
                    self._command, self._path, self._version = method, target, version
                    self._checked = simple_head_error(method, version, data)
                    self.allHeadersReceived()
                    if not self._refused:
                        self.allContentReceived()
                    return
            seen = self._buffer[-1:] + data if self._buffer else data
            if seen.count(b"\n") != seen.count(b"\r\n"):
                # A line ended by a bare LF (never on the one-step path,
                # which takes CRLF lines only): HTTPChannel would wait for
                # a CRLF that never comes.
                self.refuse(400)
                return
        super().dataReceived(data)
        if self.line_mode and self._head_call is None and not self._refused and (self._buffer or self.requests):
            # Part of a head: the whole of it must come within
            # header_timeout of its first byte.
            self._head_started()

    def setTimeout(self, period: float | None) -> float | None:
        """
        C{TimeoutMixin}'s, with one timer per connection: Twisted turns the
        idle timeout off while each request is handled and on again after
        it, which would cancel a timer and make a new one for every
        request. Here turning it off leaves the timer set (it does nothing
        if it fires while the timeout is off), and turning it on moves it
        with C{reset}.
        """
        previous, self.timeOut = self.timeOut, period
        if period is not None:
            call = self._idle_call
            if call is not None:
                call.reset(period)
            else:
                self._idle_call = self.callLater(period, self._idle_expired)
        return previous

    def resetTimeout(self) -> None:
        call = self._idle_call
        if call is not None and self.timeOut is not None:
            call.reset(self.timeOut)

    def _idle_expired(self) -> None:
        self._idle_call = None
        if self._upload_paused and self.timeOut is not None:
            # Not idle: a streamed body waits for the service.
            self._idle_call = self.callLater(self.timeOut, self._idle_expired)
            return
        if self.timeOut is not None:
            self.timeoutConnection()

    # -- after a 101: the connection is a tunnel (echogate/proxy/tunnel.py) ---

    def switch_to_tunnel(self, receiver: TunnelReceiver, other_side: IPushProducer) -> bytes:
        """
        Stop reading HTTP: the request in hand is over for the channel,
        every byte read from now on goes to C{receiver.client_data} and the
        close to C{receiver.client_lost}; C{other_side} is paused while the
        client does not read what is written to it (and the client is
        closed after C{send_timeout} of that, as for any response).

        @return: the bytes the client sent after the request's head,
            already read (and held while the request was handled).
        """
        self._tunnel = receiver
        self._cancel_timers()
        self.persistent = False
        self.requests = []
        data = self._buffer + b"".join(self._dataBuffer)
        self._buffer = b""
        self._dataBuffer = []
        self.dataReceived = receiver.client_data  # type: ignore[method-assign]
        self.registerProducer(other_side, True)
        # (HTTPChannel stops reading while a request is handled and more
        # than a little was read after it)
        self._networkProducer.resumeProducing()
        return data

    def close_tunnel(self) -> None:
        """
        Close the tunnel this connection became, if it did, and its other
        side (the node stops).
        """
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            tunnel.client_lost(reason)
        super().connectionLost(reason)
        self._cancel_timers()
        call, self._idle_call = self._idle_call, None
        if call is not None:
            call.cancel()
        closed = getattr(self.factory, "channel_closed", None)
        if closed is not None:
            closed(self)

    def isSecure(self) -> bool:
        secure = self._secure
        if secure is None:
            secure = self._secure = super().isSecure()
        return secure

    def getHost(self) -> Any:
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()
        return host

    def getPeer(self) -> Any:
        peer = self._peer
        if peer is None:
            peer = self._peer = self.transport.getPeer()
        return peer
