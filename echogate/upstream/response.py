"""
The response echogate's HTTP/1.1 client hands over (L{UpstreamResponse}):
an L{twisted.web.iweb.IResponse}-like object whose body, parsed by its
connection (L{echogate.upstream.connection.HTTP11Connection}), is held until it is
asked for, up to L{BUFFER_LIMIT} bytes, and then arrives with
back-pressure.
"""
from __future__ import annotations

import typing
from typing import Any

from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.interfaces import IUpstreamResponse


class ResponseConnection(typing.Protocol):
    """
    What an L{UpstreamResponse} needs from the connection it arrived on
    (L{echogate.upstream.connection.HTTP11Connection} provides it): its
    transport, to pause and resume reading for back-pressure, whether it is
    paused, and a way to abort it.
    """

    transport: Any
    _paused: bool

    def abort(self) -> None: ...

__all__ = ["UpstreamResponse", "BUFFER_LIMIT", "DONE"]

#: Body bytes held before C{deliverBody} is called; beyond this, the
#: connection is paused.
BUFFER_LIMIT = 65536


#: The end of every complete body: one shared Failure (it carries no
#: traceback, and its readers only check it), not one per response.
DONE = Failure(ResponseDone())


class _Delivered:
    """
    Stands for a body's protocol once the whole body was delivered.
    """

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


_DELIVERED = _Delivered()

# The versions of HTTP/1.0 and HTTP/1.1 responses, made once.
_HTTP10 = (b"HTTP", 1, 0)
_HTTP11 = (b"HTTP", 1, 1)


@implementer(IUpstreamResponse)
class UpstreamResponse:
    """
    An L{IUpstreamResponse} (and L{twisted.web.iweb.IResponse}-like) upstream response; it is also the
    transport of the body's protocol (pause, resume and stop reach the
    upstream connection while the body is being read).
    """

    #: HTTP/1.1 responses carry no trailers (L{IUpstreamResponse.trailers}).
    trailers: list[tuple[bytes, bytes]] | None = None
    #: L{twisted.web.iweb.IResponse}'s, always C{None} here.
    request = None
    previousResponse = None

    __slots__ = ("code", "phrase", "version", "end_to_end", "via", "_headers", "raw_headers", "length", "_conn",
                 "_protocol", "_buffer", "_buffered", "_end", "_held", "_stopped")

    def __init__(self, conn: ResponseConnection, code: int, phrase: bytes, minor: int,
                 end_to_end: list[tuple[bytes, bytes]], length: Any, raw_headers: list[tuple[bytes, bytes]],
                 via: bool = False):
        self.code = code
        self.phrase = phrase
        self.version = _HTTP11 if minor == 1 else _HTTP10 if minor == 0 else (b"HTTP", 1, minor)
        #: The end-to-end header lines (no hop-by-hop or framing ones), as
        #: sent: a fresh list the caller may change and pass on.
        self.end_to_end = end_to_end
        #: Whether they include a Via header (a proxy adds to it).
        self.via = via
        self._headers: Headers | None = None
        #: Every header line as the upstream sent it.
        self.raw_headers = raw_headers
        self.length = length
        self._conn: ResponseConnection | None = conn
        self._protocol: Any = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._end: Failure | None = None
        self._held = False  # paused by us, for want of a protocol
        self._stopped = False

    @property
    def headers(self) -> Headers:
        """
        The end-to-end headers as a L{Headers} (made when first asked for).
        """
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers()
            for name, value in self.end_to_end:
                headers.addRawHeader(name, value)
        return headers

    @property
    def _transport(self) -> "UpstreamResponse":
        return self

    def whole_body(self) -> bytes | None:
        """
        The whole body, if it has all arrived (and ended well) before
        anything was asked of it: then it is taken, as L{deliverBody} would
        deliver it, and C{None} is returned for anything after. A small
        answer usually comes with its head; its caller writes it at once,
        without a protocol to stream it.

        @return: The body, or C{None} when it is not all there (or was
            already given to a protocol).
        """
        if self._protocol is not None or self._end is not DONE:
            return None
        self._protocol = _DELIVERED
        self._end = None
        buffer, self._buffer = self._buffer, []
        return b"".join(buffer)

    def deliverBody(self, protocol: Any) -> None:
        """
        Give the body to C{protocol}: what already arrived at once, the rest
        as it comes, then C{connectionLost} with L{ResponseDone},
        L{twisted.web.client.PotentialDataLoss} (close-delimited) or another failure.
        """
        if self._protocol is not None:
            raise RuntimeError("deliverBody called twice")
        self._protocol = protocol
        protocol.makeConnection(self)
        buffer, self._buffer = self._buffer, []
        for chunk in buffer:
            if self._stopped:
                break
            protocol.dataReceived(chunk)
        if self._held:
            self._held = False
            if self._conn is not None and not self._conn._paused:
                self._conn.transport.resumeProducing()
        end, self._end = self._end, None
        if end is not None:
            self._protocol = _DELIVERED  # no cycle with the protocol (see _finished)
            protocol.connectionLost(end)

    def _data(self, data: bytes) -> None:
        if self._stopped:
            return
        protocol = self._protocol
        if protocol is not None:
            protocol.dataReceived(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > BUFFER_LIMIT and not self._held and self._conn is not None:
            self._held = True
            self._conn.transport.pauseProducing()

    def _finished(self, reason: Failure) -> None:
        self._conn = None
        protocol = self._protocol
        if protocol is not None:
            # The body's protocol holds this response as its transport: let
            # go of it, so that reference counting frees both (and all the
            # request they reach) at once, not the cyclic garbage collector.
            self._protocol = _DELIVERED
            protocol.connectionLost(reason)
        else:
            self._end = reason

    def pauseProducing(self) -> None:
        conn = self._conn
        if conn is not None and not conn._paused:
            conn._paused = True
            if not self._held:
                conn.transport.pauseProducing()

    def resumeProducing(self) -> None:
        conn = self._conn
        if conn is not None and conn._paused:
            conn._paused = False
            if not self._held:
                conn.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._stopped = True
        if self._conn is not None:
            self._conn.abort()
