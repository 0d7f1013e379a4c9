"""
The proxy's HTTP/1.1 connection (L{GatewayChannel}): Twisted's
C{HTTPChannel}, with a one-step path for a whole head that announces no
body (L{checked_head}), batched writes, the checks of a head at the edge,
and, from its bases, the timers against slow clients
(L{echogate.proxy.clienttimers}), the body held while its head is routed
(L{echogate.proxy.holding}) and the switch to a tunnel after a 101
(L{echogate.proxy.switching}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers

from echogate.pdk.rawheaders import DIRECT, stored_name
from echogate.proxy.heads import checked_head, head_error
from echogate.proxy.holding import HoldingChannel
from echogate.proxy.switching import SwitchingChannel, TunnelReceiver

__all__ = ["GatewayChannel", "TunnelReceiver"]

#: No head check worked out yet (see GatewayChannel._checked).
_UNCHECKED = object()
_NEW = object.__new__
#: Header names as sent (up to 256 bytes) to the key a request's
#: L{Headers} keeps them under (L{stored_name}): the same few come in
#: every head; it stops growing at 1,024 names.
_KEYS: dict[bytes, bytes] = {}
_CONNECTION = stored_name(b"connection")


class GatewayChannel(SwitchingChannel, HoldingChannel):
    """
    The proxy's HTTP/1.1 connection: Twisted's, with what does not change
    during a connection looked up once instead of for every request: its
    two addresses (each C{Request} asks for both; the local one is a
    C{getsockname} system call) and whether it is TLS (an interface
    adaptation). Its writes are batched (L{echogate.batching}) when the
    site has a L{echogate.batching.WriteBatcher}. Its idle timeout is one
    timer for the connection's life (see L{setTimeout}).

    A request head that arrives whole in one read, between requests, and
    has no body is taken in one step (L{checked_head}) instead of line by
    line; the request it makes is the one C{HTTPChannel} would make (of
    the site's C{requestFactory}, same headers, same checks of persistence
    and length), and anything else goes through C{HTTPChannel} unchanged.

    At the edge (see docs/security.md) it answers, then closes, what
    C{HTTPChannel} would take or drop without a word: a request line or
    header line over the site's L{echogate.proxy.heads.HeadLimits} (414,
    431), too many headers (431), a head that is not all CRLF lines
    (400), a head without a valid Host, with ambiguous framing, or TRACE
    (L{head_error}), a chunk size beyond 63 bits (400); a head that takes longer than
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
    _host: Any = None
    _peer: Any = None
    _secure: bool | None = None
    #: L{head_error} of a head taken in one step, worked out from its lines.
    _checked: Any = _UNCHECKED
    #: Twisted's own bound on the whole head; the site's limits apply per
    #: line and per header count, and this stays a backstop.
    totalHeadersSize = 1024 * 1024
    #: The bytes of the head being read so far, CRLFs included (what
    #: L{echogate.proxy.request.GatewayRequest.head_size} gets).
    _head_size = 0

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
        headers = request.requestHeaders
        lines = (headers._rawHeaders.get(_CONNECTION) if DIRECT and type(headers) is Headers
                 else headers.getRawHeaders(b"connection"))
        if lines and any(token.strip().lower() == b"close" for line in lines for token in line.split(b",")):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        if getattr(self.factory, "draining", False):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return True

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
        if line or self.requests:  # (an empty line before a request line is skipped)
            self._head_size += len(line) + 2
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(431)
            return False
        kept: bool = super().headerReceived(line)
        return kept
    # -- the head, then the body ---------------------------------------------

    def allHeadersReceived(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()
        request = self.requests[-1]
        request.method = self._command
        request.head_size, self._head_size = self._head_size, 0
        status = self._checked
        if status is _UNCHECKED:
            status = head_error(request, self._version)
        else:
            self._checked = _UNCHECKED
        if status is None and self._limits.reject_underscores and any(
                95 in name for name, _ in request.requestHeaders.getAllRawHeaders()):  # "_" (see pdk.headers._CR)
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

    def allContentReceived(self) -> None:
        # HTTPChannel's, with its setTimeout(None) and setRawMode inline
        # (every request comes this way), and without its "del
        # self._command, self._path, self._version": each is set again
        # before it is read, and deleting attributes for every request
        # costs CPython a slower instance dict and makes PyPy's JIT abort
        # its bridge from dataReceived (docs/performance.md, PyPy).
        command, path, version = self._command, self._path, self._version
        self.length = 0
        self._receivedHeaderCount = 0
        self._receivedHeaderSize = 0
        self._HTTPChannel__first_line = 1  # (HTTPChannel's __first_line)
        self._transferDecoder = None
        if self.timeOut:
            # (TimedChannel.setTimeout(None): the timer stays, and does nothing)
            self._savedTimeOut, self.timeOut = self.timeOut, None
        self._handlingRequest = True
        self.line_mode = 0
        self.requests[-1].requestReceived(command, path, version)

    def requestDone(self, request: Any) -> None:
        # HTTPChannel's, without a call to Request.__eq__ and to
        # setLineMode: every request ends here.
        requests = self.requests
        if request is not requests[0]:
            raise TypeError
        del requests[0]
        if not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        saved = self._savedTimeOut
        if saved:
            # (TimedChannel.setTimeout's: the timer moves)
            self.timeOut = saved
            call = self._idle_call
            if call is not None:
                call.reset(saved)
            else:
                self._idle_call = self.callLater(saved, self._idle_expired)
        self.line_mode = 1
        buffered = self._dataBuffer
        if buffered:
            self._dataBuffer = []
            self.dataReceived(b"".join(buffered))

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.line_mode:
            # Between requests: no request being read or in hand, and no
            # partial line kept. (HTTPChannel leaves line mode from the end
            # of a head until its request is done, and for good after a
            # request that closes the connection.)
            if not self.requests and not self._buffer and len(data) <= self._fast_size:
                head = checked_head(data, self.totalHeadersSize, self.maxHeaders)
                if head is not None:
                    # (no resetTimeout: handling the request moves the timer)
                    method, target, version, headers, self._checked = head
                    factory = self.requestFactory
                    if type(factory) is type and factory.__new__ is _NEW:
                        # (factory(self, 0), with a call of __init__ from
                        # here: type's call of it from C costs more)
                        request = _NEW(factory)
                        request.__init__(self, 0)  # type: ignore[misc]
                    else:
                        request = factory(self, 0)
                    self.requests.append(request)
                    _add_lines(request.requestHeaders, headers)
                    self._command, self._path, self._version = method, target, version
                    self._head_size = len(data)
                    self.allHeadersReceived()
                    if not self._refused:
                        self.allContentReceived()
                    return
            seen = self._buffer[-1:] + data if self._buffer else data
            # Only the head's lines: a body that came with them (or right
            # after a head's last line) may hold any bytes.
            seen = b"" if self.requests and not self._buffer and data[:2] == b"\r\n" else (
                seen.split(b"\r\n\r\n", 1)[0])
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


def _add_lines(headers: Any, lines: list[tuple[bytes, bytes]]) -> None:
    """
    Add the header C{lines} of a head L{checked_head} took to a request's
    C{headers}, their values stripped of spaces and tabs as C{HTTPChannel}
    strips them: what C{addRawHeader} does for each, without its checks
    (the names are tokens and the values hold no line break: the head was
    split on its CRLFs and has no other CR or LF), when L{Headers} keeps
    its lines in a dict by L{stored_name} (L{DIRECT}).
    """
    if not DIRECT or type(headers) is not Headers:
        add = headers.addRawHeader
        for name, value in lines:
            add(name, value.strip(b" \t"))
        return
    stored = headers._rawHeaders
    keys = _KEYS
    for name, value in lines:
        key = keys.get(name)
        if key is None:
            key = stored_name(name)
            if len(keys) < 1024 and len(name) <= 256:
                keys[name] = key
        values = stored.get(key)
        if values is None:
            stored[key] = [value.strip(b" \t")]
        else:
            values.append(value.strip(b" \t"))
