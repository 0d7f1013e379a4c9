"""
A request on the proxy listener (L{GatewayRequest}): it carries its
exchange (C{request.exchange}) and, when it has a body, is routed and
authorised on its head before the body is read (the head-first flow);
from its bases, it enforces the body size limit
(L{echogate.proxy.bodylimit}) and writes a response head given as wire
pairs in one piece (L{echogate.proxy.responsehead}).
"""
from __future__ import annotations

import json
import typing
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers

from echogate._version import __version__
from echogate.pdk.rawheaders import DIRECT
from echogate.proxy.bodylimit import BodyFile, BodySink, DiscardedBody, EarlyBody, LimitedBody
from echogate.proxy.responsehead import OnePieceHead, reason_phrase

if TYPE_CHECKING:
    from echogate.proxy.channel import GatewayChannel

__all__ = ["RequestEvents", "SERVER", "UNEXPECTED", "UnparsedRequest", "GatewayRequest", "BodyFile", "BodySink",
           "reason_phrase"]


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
UNEXPECTED = "An unexpected error occurred"
_log = Logger(namespace="echogate.proxy")
_NEW = object.__new__


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


class GatewayRequest(LimitedBody, OnePieceHead, UnparsedRequest):
    """
    A request on the proxy listener: carries its
    L{echogate.proxy.exchange.Exchange} (C{request.exchange}); a request
    with a body is given to the site's resource on its head
    (L{head_received}), and its body read only once the head passed
    (L{continue_body}, or L{stream_body} to the service as it arrives).
    Its bases enforce the body size limit (L{LimitedBody}) and write a
    head given as wire pairs in one piece (L{OnePieceHead}).
    """

    defaultContentType = None
    #: The proxy's connection (L{echogate.proxy.channel.GatewayChannel}).
    channel: GatewayChannel
    exchange: RequestEvents | None = None
    #: Whether the head was routed and authorised before the body was read.
    head_first = False
    #: The size of the request's head as it came from the client (request
    #: line, header lines and the blank line, CRLFs included: nginx's
    #: C{$request_length} but for the body), set by the HTTP/1.1 channel
    #: when the head is whole; C{None} for a request that came otherwise
    #: (HTTP/2).
    head_size: int | None = None
    #: Whether the body waits for the resource (L{continue_body}).
    holding = False
    #: Whether the whole body has arrived.
    body_complete = False
    #: Whether the access phase waits for the body (a plugin reads it).
    access_after_body = False
    #: Whether the body is to be streamed to the service as it arrives
    #: (the route's C{request_buffering} is false; set by the exchange).
    streams_body = False

    def __init__(self, channel: Any, queued: object = False, parsePOSTFormSubmission: bool | None = None) -> None:
        """
        Twisted's C{server.Request}, C{http.Request} and C{Componentized}
        constructors in one: the same attributes
        (C{tests.proxy.test_request_path} compares them with Twisted's),
        one call instead of five for every request.

        @param channel: the connection (or HTTP/2 stream) it came on.
        @param queued: Twisted's deprecated flag, kept as given.
        @param parsePOSTFormSubmission: as Twisted's; by default the
            site's (a L{GatewayRequest} never parses a body itself).
        """
        self.notifications: list[Deferred[None]] = []
        self.channel = channel
        # (a GatewayChannel's addresses, once known, without its getters)
        peer, host = getattr(channel, "_peer", None), getattr(channel, "_host", None)
        self.client = peer if peer is not None else channel.getPeer()
        self.host = host if host is not None else channel.getHost()
        if DIRECT:
            # (Headers() without the call of its __init__: what it makes)
            self.requestHeaders = headers = _NEW(Headers)
            headers._rawHeaders = {}
            self.responseHeaders = headers = _NEW(Headers)
            headers._rawHeaders = {}
        else:
            self.requestHeaders = Headers()
            self.responseHeaders = Headers()
        self.received_cookies: dict[bytes, bytes] = {}
        self.cookies: list[bytes] = []
        self.transport = channel.transport
        self.queued = queued
        # (an older Twisted's Site has no such setting: the floor of setup.py)
        self._parsePOSTFormSubmission = (getattr(channel.site, "_parsePOSTFormSubmission", True)
                                         if parsePOSTFormSubmission is None
                                         else parsePOSTFormSubmission)
        self._adapterCache: dict[Any, Any] = {}

    @property
    def client_gone(self) -> bool:
        """
        Whether the client's connection was lost.
        """
        return self._disconnected

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
        return expect[0].lower() == b"100-continue" and self.clientproto in (b"HTTP/1.1", b"HTTP/2")

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
        early = self.content.getvalue() if isinstance(self.content, EarlyBody) else b""
        self.content = DiscardedBody()
        if early:
            sink.write(early)
        if self.body_complete:
            self.channel.release_body(False, read=False)
            sink.finished()
            return
        self.channel.release_body(self._expects_continue())

    def _open_content(self) -> None:
        """
        Make the body's own file (in memory, or spooled to disk when
        large), with what came with the head in it.
        """
        early = self.content
        if isinstance(early, EarlyBody):
            server.Request.gotLength(self, self._declared)  # which uses GatewaySite.getContentFile
            self.content.write(early.getvalue())

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.head_first:
            if self.channel._refused:
                # Refused on its head (the channel answered and is closing).
                return
            # (UnparsedRequest.requestReceived, inline: every request
            # without a body comes this way)
            self.content.seek(0, 0)
            self.args = {}
            self.method, self.uri = command, path
            self.clientproto = version
            self.path = path.split(b"?", 1)[0]
            # (process, inline, for the proxy's resource)
            site = self.site = self.channel.site
            serve = getattr(site.resource, "serve", None)
            if serve is None:
                self.process()
                return
            self.prepath = []
            self.postpath = []
            try:
                serve(self)
            except BaseException:
                self.processingFailed(Failure())
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

    def process(self) -> None:
        """
        Give the request to the site's resource: to its C{serve} when it
        has one (the proxy's L{echogate.proxy.gateway.GatewayResource},
        whose C{render} only calls it and answers C{NOT_DONE_YET}), else
        through Twisted's C{render}.
        """
        site = self.site = self.channel.site
        self.prepath = []
        self.postpath = []
        resource = site.resource
        try:
            serve = getattr(resource, "serve", None)
            if serve is not None:
                serve(self)
            else:
                self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def finish(self) -> None:
        """
        Twisted's (C{server.Request}'s, C{http.Request}'s and its
        C{_cleanup}), in one call for a response that is not encoded,
        without a producer, and neither finished nor cut already (every
        proxied one); Twisted's own otherwise.
        """
        if self._encoder is not None or self._disconnected or self.finished or self.producer is not None:
            server.Request.finish(self)  # (which raises, warns or encodes)
            return
        if not self.startedWriting:
            self.write(b"")  # (the head)
        channel = self.channel
        if self.chunked:
            channel.write(b"0\r\n\r\n")
        factory = getattr(channel, "factory", None)
        if factory is not None and getattr(factory, "_access_log", True):  # (GatewaySite.log's test, inline)
            factory.log(self)
        self.finished = 1
        if self.queued:
            return
        channel.requestDone(self)
        del self.channel
        content = self.content
        if content is not None:
            try:
                content.close()
            except OSError:
                pass
            del self.content
        notifications, self.notifications = self.notifications, []
        for done in notifications:
            done.callback(None)

    def send_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """
        Send C{trailers} after the body, before L{finish}: on HTTP/2 (the
        stream ends with them); an HTTP/1.1 response carries none.
        """
        if self._h2:
            self.channel.write_trailers(trailers)  # type: ignore[attr-defined]  # (a GatewayH2Stream)

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
