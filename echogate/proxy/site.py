"""
The proxy's listener side: the L{GatewaySite} and its requests, which
carry the request context and enforce the body size limit, and the
counters that C{GET /status} shows.
"""
from __future__ import annotations

import io
import json
import re
import tempfile
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import NO_BODY_CODES, toChunk
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from echogate._version import __version__
from echogate.batching import WriteBatcher
from echogate.pdk.context import RequestContext

SERVER = f"echogate/{__version__}".encode()
#: Request bodies smaller than this (known in advance) stay in memory.
_IN_MEMORY = 100_000
UNEXPECTED = "An unexpected error occurred"
_log = Logger(namespace="echogate.proxy")


class _Discard:
    def write(self, data: bytes) -> None:
        pass

    def tell(self) -> int:
        return 0

    def seek(self, *a: Any) -> None:
        pass

    def read(self, *a: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass


class UnparsedRequest(server.Request):
    """
    A L{server.Request} that leaves the query string and the body to
    whoever handles it: Twisted's C{requestReceived} parses every query
    string into C{args}, and a POST's URL-encoded or multipart body too,
    answering a bare 400 (and closing the connection) when the multipart
    does not parse. The proxy passes bodies on untouched (what they hold
    is the service's business) and reads the query itself when a plugin
    asks (L{echogate.pdk.messages}); the Admin API reads both itself
    (L{echogate.pdk.bodies}), answering a bad body with a Kong-shaped error.
    C{args} stays empty.
    """

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.content.seek(0, 0)
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.split(b"?", 1)[0]
        self.process()


class GatewayRequest(UnparsedRequest):
    """
    A request on the proxy listener: carries the L{RequestContext}
    (C{request.ctx}) and enforces the body size limit
    (C{site.max_body_size}, 0 for none) without holding an oversized body.
    """

    defaultContentType = None
    ctx: RequestContext | None = None
    _too_large = False
    _received = 0
    _head: list[tuple[bytes, bytes]] | None = None

    def respond(self, status: int, head: Headers | list[tuple[bytes, bytes]]) -> None:
        """
        Answer with C{status} and the headers C{head}, keeping what Twisted
        set before the response (C{Connection: close} when the client asked
        for it) unless C{head} has it.

        C{head} as header lines (wire pairs, names and values ready to
        send) is written with the first L{write} (or L{finish}) in one
        piece, without a L{Headers} object, framed as Twisted frames a
        response: chunked for HTTP/1.1 when it has no Content-Length, no
        body for C{HEAD}, 204 and 304. A L{Headers} is written by Twisted.
        """
        self.setResponseCode(status)
        if isinstance(head, Headers):
            for name, values in self.responseHeaders.getAllRawHeaders():
                if not head.hasHeader(name):
                    head.setRawHeaders(name, values)
            self.responseHeaders = head
        else:
            self._head = head

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            server.Request.write(self, data)
            return
        self._head = None
        if self.finished or self._disconnected or self.lastModified is not None or self.etag is not None \
                or self.cookies or self._encoder or self._inFakeHead:
            # Twisted's way: it raises, ignores the write, or adds headers.
            for name, value in head:
                self.responseHeaders.addRawHeader(name, value)
            server.Request.write(self, data)
            return
        self.startedWriting = 1
        code = self.code
        # Names and values hold no line break (they come from a parser, or
        # through HeaderEditor, which cleans them), so the lines are found
        # by searching the whole block once.
        block = b"\r\n" + b"".join([b"%s: %s\r\n" % pair for pair in head])
        lowered = block.lower()
        framed = b"\ncontent-length:" in lowered
        # What Twisted set before the response (Connection: close when the
        # client asked for it), unless the lines have it already.
        for name, values in self.responseHeaders.getAllRawHeaders():
            if b"\n" + name.lower() + b":" not in lowered:
                block += b"".join([b"%s: %s\r\n" % (name, value) for value in values])
        bodiless = self.method == b"HEAD" or code in NO_BODY_CODES
        if not framed and not bodiless and self.clientproto == b"HTTP/1.1":
            block += b"Transfer-Encoding: chunked\r\n"
            self.chunked = 1
        head_bytes = b"%s %d %s%s\r\n" % (self.clientproto, code, self.code_message, block)
        channel = self.channel
        if bodiless:
            channel.write(head_bytes)
            self.write = lambda data: None  # as Twisted does
            return
        self.sentLength += len(data)
        if self.chunked and data:
            channel.writeSequence((head_bytes, *toChunk(data)))
        else:
            channel.write(head_bytes + data)

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body_size", 0) or 0

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit and length is not None and length > limit:
            self._too_large = True
            self.content = _Discard()
            return
        super().gotLength(length)  # which uses GatewaySite.getContentFile

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received += len(data)
        limit = self._limit()
        if limit and self._received > limit:
            self._too_large = True
            self.content.close()
            self.content = _Discard()
            return
        self.content.write(data)

    def process(self) -> None:
        self.site = self.channel.site
        self.prepath = []
        self.postpath = []
        try:
            self.render(self.site.resource)
        except BaseException:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> None:
        _log.failure("unexpected error handling a proxied request", failure=reason)
        if self.startedWriting or self._disconnected:
            self.loseConnection()
            return None
        body = json.dumps({"message": UNEXPECTED}).encode()
        self.setResponseCode(500)
        self.responseHeaders = Headers({b"content-type": [b"application/json; charset=utf-8"],
                                        b"content-length": [b"%d" % len(body)],
                                        b"server": [SERVER]})
        self.write(body)
        self.finish()
        return None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        ctx = self.ctx
        if ctx is not None and ctx.on_client_gone is not None:
            ctx.on_client_gone()


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


class GatewaySite(server.Site):
    """
    The proxy's L{server.Site}: L{GatewayRequest}s, a body size limit,
    counters for C{GET /status}, an access log only when asked for
    (Twisted's default log line costs about a fifth of the throughput), and
    batched writes on its connections (C{write_batcher}).
    """

    requestFactory = GatewayRequest
    # HTTP/1.1 only: Twisted's default wraps each channel in a protocol that
    # could switch to HTTP/2, one more call per read for nothing here.
    protocol = GatewayChannel

    def __init__(self, resource: Resource, *, max_body_size: int = 0, access_log: bool = False,
                 write_batcher: WriteBatcher | None = None, **kw: Any):
        super().__init__(resource, **kw)
        self.max_body_size = max_body_size
        self._access_log = access_log
        self.write_batcher = write_batcher or WriteBatcher(self.reactor)
        self.connections_accepted = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections_accepted += 1
        return super().buildProtocol(addr)

    def getContentFile(self, length: int | None) -> Any:
        """
        Where a request body goes: memory up to 100 KB (known in advance),
        a temporary file otherwise, as Twisted does. (Defined here because
        Twisted looks this hook up with a caught AttributeError on every
        request when the site lacks it.)
        """
        if length is not None and length < _IN_MEMORY:
            return io.BytesIO()
        return tempfile.TemporaryFile()

    def log(self, request: Any) -> None:
        if self._access_log:
            super().log(request)


class Counters:
    """
    Request counters shown by C{GET /status}.
    """

    def __init__(self) -> None:
        self.total_requests = 0
        self.active_requests = 0

    def as_dict(self, sites: list[GatewaySite] = ()) -> dict[str, int]:
        return {
            "total_requests": self.total_requests,
            "connections_active": self.active_requests,
            "connections_accepted": sum(s.connections_accepted for s in sites),
            "connections_handled": sum(s.connections_accepted for s in sites),
        }


