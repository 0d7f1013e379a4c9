"""
The proxy's HTTP/1.1 connection (L{GatewayChannel}): Twisted's
C{HTTPChannel}, with a one-step path for a whole head that announces no
body (L{simple_head}), batched writes and one idle timer per connection.
"""
from __future__ import annotations

import re
from typing import Any

from twisted.python.failure import Failure
from twisted.web import http


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: A request head that needs none of HTTPChannel's line-by-line handling:
#: a request line (a token method, a printable target, HTTP/1.0 or 1.1)
#: and header lines of a token name, a colon and a value without NUL, CR
#: or LF, all ending in CRLF and nothing after the blank line.
_SIMPLE_HEAD = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])\r\n((?:" + _TOKEN
                          + rb":[^\r\n\x00]*\r\n)*)\r\n\Z")
_HEADER_LINE = re.compile(rb"([^:]+):([^\r]*)\r\n")
#: Headers that give a request a body or ask for a 100 Continue: heads
#: with them go through Twisted's own path.
_NOT_SIMPLE = (b"\r\ncontent-length:", b"\r\ntransfer-encoding:", b"\r\nexpect:")


def simple_head(data: bytes, max_size: int, max_headers: int) -> tuple[bytes, bytes, bytes, list] | None:
    """
    C{(method, target, version, [(name, value), ...])} when C{data} is
    exactly one whole request head that Twisted's C{HTTPChannel} would
    accept as it is and that announces no body: at most C{max_size} bytes
    and C{max_headers} header lines, no folded lines, no Content-Length,
    Transfer-Encoding or Expect header. C{None} for anything else, which
    is then left to C{HTTPChannel} (which parses, or rejects, it itself).
    Values are as sent; the channel strips spaces and tabs around them, as
    C{HTTPChannel} does.
    """
    if len(data) > max_size:
        return None
    match = _SIMPLE_HEAD.match(data)
    if match is None:
        return None
    block = match.group(4)
    if block:
        lowered = b"\r\n" + block.lower()
        for name in _NOT_SIMPLE:
            if name in lowered:
                return None
        headers = _HEADER_LINE.findall(block)
        if len(headers) > max_headers:
            return None
    else:
        headers = []
    return match.group(1), match.group(2), match.group(3), headers


class GatewayChannel(http.HTTPChannel):
    """
    The proxy's HTTP/1.1 connection: Twisted's, with what does not change
    during a connection looked up once instead of for every request: its
    two addresses (each C{Request} asks for both; the local one is a
    C{getsockname} system call) and whether it is TLS (an interface
    adaptation). Its writes are batched (L{echogate.batching}) when the
    site has a L{WriteBatcher}. Its idle timeout is one timer for the
    connection's life (see L{setTimeout}).

    A request head that arrives whole in one read, between requests, and
    has no body is taken in one step (L{simple_head}) instead of line by
    line; the request it makes is the one C{HTTPChannel} would make (same
    L{Request}, same headers, same checks of persistence and length), and
    anything else goes through C{HTTPChannel} unchanged.
    """

    _host: Any = None
    _idle_call: Any = None
    _peer: Any = None
    _secure: bool | None = None

    def makeConnection(self, transport: Any) -> None:
        batcher = getattr(self.factory, "write_batcher", None)
        if batcher is not None:
            transport = batcher.wrap(transport)
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        # Between requests: no request being read or in hand, and no
        # partial line kept. (HTTPChannel leaves line mode from the end of
        # a head until its request is done, and for good after a request
        # that closes the connection.)
        if not self.requests and self.line_mode and not self._buffer:
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
                self.allHeadersReceived()
                self.allContentReceived()
                return
        super().dataReceived(data)

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
        if self.timeOut is not None:
            self.timeoutConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        call, self._idle_call = self._idle_call, None
        if call is not None:
            call.cancel()

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
