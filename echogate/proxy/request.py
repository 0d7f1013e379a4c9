"""
A request on the proxy listener (L{GatewayRequest}): it carries its
exchange (C{request.exchange}), enforces the body size limit, and writes
a response head given as wire pairs in one piece.
"""
from __future__ import annotations

import io
import json
import typing
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import NO_BODY_CODES, toChunk
from twisted.web.http_headers import Headers

from echogate._version import __version__

if TYPE_CHECKING:
    from echogate.proxy.channel import GatewayChannel


class RequestEvents(typing.Protocol):
    """
    What the request tells its exchange
    (L{echogate.proxy.exchange.Exchange} provides it).
    """

    def body_arrived(self) -> None:
        """The body of a request whose head was taken first is whole."""

    def client_gone(self) -> None:
        """The client's connection was lost."""

    def answer_early(self, status: int) -> None:
        """Answer C{status} before the body is all read, and close."""

SERVER = f"echogate/{__version__}".encode()

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reason_phrase(code: int) -> bytes:
    """
    The reason phrase of status C{code} (RFC 9110's, or the IANA
    registry's as Python knows it), C{Unknown Status} for others.
    """
    return _PHRASES.get(code, b"Unknown Status")
UNEXPECTED = "An unexpected error occurred"
_log = Logger(namespace="echogate.proxy")


class BodyFile(typing.Protocol):
    """
    Where a request's body is kept (C{request.content}): a file in memory
    or on disk, or L{_Discard} for a body over the size limit.
    """

    def write(self, data: bytes, /) -> object: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> object: ...

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class _Early(io.BytesIO):
    """
    Where the part of a body that came with its head is kept while the
    head is routed and authorised: the body's own file (or the upstream,
    for a streamed body) is chosen once the head passed.
    """


class BodySink(typing.Protocol):
    """
    Who reads a streamed body (L{GatewayRequest.stream_body}):
    L{echogate.proxy.uploads.StreamedBody} provides it.
    """

    def write(self, data: bytes) -> None:
        """Bytes of the body arrived."""

    def finished(self) -> None:
        """The body ended."""


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

    content: BodyFile

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.content.seek(0, 0)
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.split(b"?", 1)[0]
        self.process()


class GatewayRequest(UnparsedRequest):
    """
    A request on the proxy listener: carries its
    L{echogate.proxy.exchange.Exchange} (C{request.exchange}) and enforces
    the body size limit (C{site.max_body_size}, 0 for none) without holding
    an oversized body.
    """

    defaultContentType = None
    #: The proxy's connection (L{echogate.proxy.channel.GatewayChannel}).
    channel: GatewayChannel
    exchange: RequestEvents | None = None
    _too_large = False
    _received = 0
    _head: list[tuple[bytes, bytes]] | None = None
    #: Set by the resource that takes the head (L{head_received}): answers
    #: C{status} at once, before the body is all read, and closes.
    answer_early: Callable[[int], None] | None = None
    #: Whether the head was routed and authorised before the body was read.
    head_first = False
    #: Whether the body waits for the resource (L{continue_body}).
    holding = False
    #: Whether the whole body has arrived.
    body_complete = False
    #: Whether the access phase waits for the body (a plugin reads it).
    access_after_body = False
    #: Whether the body is to be streamed to the service as it arrives
    #: (the route's C{request_buffering} is false; set by the exchange).
    streams_body = False
    #: The reader of a streamed body (L{stream_body}).
    _upload: BodySink | None = None
    #: This request's own cap on its body (L{limit_body}); 0: none.
    _own_limit = 0
    #: The length the head declared, for the body file made once the
    #: head passed (L{_open_content}).
    _declared: int | None = None

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """
        Twisted's, with the reason phrase of every registered status code
        (Twisted's table lacks several, such as 422 and 451, and answers
        them C{Unknown Status}), also for a service's own status.
        """
        server.Request.setResponseCode(self, code, message if message is not None else reason_phrase(code))

    @property
    def client_gone(self) -> bool:
        """
        Whether the client's connection was lost.
        """
        return self._disconnected

    @property
    def too_large(self) -> bool:
        """
        Whether the body is over the size limit (it is not kept).
        """
        return self._too_large

    @property
    def body_pending(self) -> bool:
        """
        Whether the body has yet to be read (the head is being routed and
        authorised): plugins that read the body in access declare
        C{reads_body}, so that their access runs once it is here.
        """
        return self.head_first and not self.body_complete

    def head_received(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        The head of a request with a body is whole (called by the channel
        before any of the body is read): give it to the site's resource
        (its C{head} method) to route and authorise, holding the body until
        it calls L{continue_body}, or answers (L{answer_early}) and the
        body is never read.
        """
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.site = self.channel.site
        self.prepath = []
        self.postpath = []
        head = getattr(self.site.resource, "head", None)
        if head is None:
            self._open_content()
            self.channel.release_body(self._expects_continue())
            return
        self.head_first = self.holding = True
        self.channel.hold_body()
        try:
            head(self)
        except BaseException:
            self.processingFailed(Failure())

    def _expects_continue(self) -> bool:
        expect = self.requestHeaders.getRawHeaders(b"expect")
        if not expect:
            return False
        return expect[0].lower() == b"100-continue" and self.clientproto == b"HTTP/1.1"

    def continue_body(self) -> None:
        """
        The head passed: read the body (after C{100 Continue} if the client
        waits for one); the request is processed once it is whole.
        """
        if not self.holding:
            return
        self.holding = False
        self._open_content()
        if self.body_complete:
            # It all came with the head.
            self.content.seek(0, 0)
            self.channel.release_body(False, read=False)
            self.process()
            return
        self.channel.release_body(self._expects_continue())

    def stream_body(self, sink: BodySink) -> None:
        """
        The head passed, and the body goes to the service as it arrives:
        give it to C{sink} (what came with the head first), never to a
        file; the request is not processed again at its end (the exchange
        is already on its way), C{sink.finished()} is called instead.
        """
        if not self.holding:
            return
        self.holding = False
        self._upload = sink
        early = self.content.getvalue() if isinstance(self.content, _Early) else b""
        self.content = _Discard()
        if early:
            sink.write(early)
        if self.body_complete:
            self.channel.release_body(False, read=False)
            sink.finished()
            return
        self.channel.release_body(self._expects_continue())

    def limit_body(self, size: int) -> bool:
        """
        Cap this request's body at C{size} bytes as it arrives (as
        C{client_max_body_size} does): past it, 413 and the connection
        closed (cut, with the upstream's, once the response started).

        @return: whether what was received so far is within C{size}.
        """
        if not self._own_limit or size < self._own_limit:
            self._own_limit = size
        return self._received <= size

    def _open_content(self) -> None:
        """
        Make the body's own file (in memory, or spooled to disk when
        large), with what came with the head in it.
        """
        early = self.content
        if isinstance(early, _Early):
            server.Request.gotLength(self, self._declared)  # which uses GatewaySite.getContentFile
            self.content.write(early.getvalue())

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.head_first:
            if self.channel._refused:
                # Refused on its head (the channel answered and is closing).
                return
            UnparsedRequest.requestReceived(self, command, path, version)
            return
        self.body_complete = True
        upload = self._upload
        if upload is not None:
            # A streamed body's end: the exchange is on its way already.
            self.args = {}
            upload.finished()
            return
        if self.holding:
            # The whole body came with the head, which is still being
            # routed: processed by continue_body.
            self.content.seek(0, 0)
            self.args = {}
            self.method, self.uri, self.clientproto = command, path, version
            self.path = path.split(b"?", 1)[0]
            return
        UnparsedRequest.requestReceived(self, command, path, version)

    def respond(self, status: int | None, head: Headers | list[tuple[bytes, bytes]]) -> None:
        """
        Answer with C{status} and the headers C{head}, keeping what Twisted
        set before the response (C{Connection: close} when the client asked
        for it) unless C{head} has it.

        C{head} as header lines (wire pairs, names and values ready to
        send) is written with the first L{write} (or L{finish}) in one
        piece, without a L{Headers} object, framed as Twisted frames a
        response: chunked for HTTP/1.1 when it has no Content-Length, no
        body for C{HEAD}, 204 and 304. A L{Headers} is written by Twisted.

        @raise TypeError: when C{status} is not an C{int} (C{None}: no
            status was set).
        """
        # (setResponseCode's work, inline: this runs for every response)
        if not isinstance(status, int):
            raise TypeError(f"HTTP response code must be int, not {type(status).__name__}")
        self.code = status
        self.code_message = _PHRASES.get(status, b"Unknown Status")
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
            self.write = lambda data: None  # type: ignore[method-assign]  # as Twisted does
            return
        self.sentLength += len(data)
        if self.chunked and data:
            channel.writeSequence((head_bytes, *toChunk(data)))
        else:
            channel.write(head_bytes + data)

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        limit: int = getattr(site, "max_body_size", 0) or 0
        own = self._own_limit
        return own if own and (not limit or own < limit) else limit

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit and length is not None and length > limit:
            self._too_large = True
            self.content = _Discard()
            return
        if length != 0:
            # A body follows: where it goes (a file, or the service as it
            # arrives) is decided once its head passed.
            self._declared = length
            self.content = _Early()
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
            if self.answer_early is not None and not self.startedWriting and not self.finished:
                # A chunked body that crossed the limit: answered now, the
                # rest never read.
                self.answer_early(413)
            elif self._upload is not None:
                # A streamed body past the limit once the response began:
                # the connection is cut (and the upstream's with it).
                self.loseConnection()
            return
        upload = self._upload
        if upload is not None:
            upload.write(data)
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
        exchange = self.exchange
        if exchange is not None:
            exchange.client_gone()
