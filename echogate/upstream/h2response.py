"""
The response echogate's HTTP/2 client hands over (L{H2Response}): an
L{echogate.interfaces.IUpstreamResponse} whose body arrives on one
HTTP/2 stream (L{echogate.upstream.h2stream.H2Stream}), with HTTP/2 flow
control as its back-pressure: DATA is acknowledged (the service's window
reopened) only once it was delivered to a protocol that is not paused,
so a body nobody reads, or a paused reader, closes the stream's window.
"""
from __future__ import annotations

import typing
from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.interfaces import IUpstreamResponse
from echogate.upstream.response import _DELIVERED, DONE


class ResponseStream(typing.Protocol):
    """
    What an L{H2Response} needs from the stream it arrives on
    (L{echogate.upstream.h2stream.H2Stream} provides it): acknowledging
    delivered DATA, and resetting the stream when the reader stops.
    """

    def acknowledge(self, size: int) -> None: ...

    def stop(self) -> None: ...




@implementer(IUpstreamResponse)
class H2Response:
    """
    One HTTP/2 response: its head, its body as it arrives, and its
    trailers (set before the body's end is delivered). It is also the
    transport of the body's protocol: C{pauseProducing} stops
    acknowledging DATA, C{resumeProducing} acknowledges again, and
    C{stopProducing} resets the stream (C{CANCEL}).
    """

    #: HTTP/2 has no reason phrase (kept for L{twisted.web.client.readBody}).
    phrase = b""
    version = (b"HTTP", 2, 0)

    __slots__ = ("code", "length", "raw_headers", "end_to_end", "via", "trailers", "_headers", "_stream",
                 "_protocol", "_buffer", "_held", "_end", "_paused", "_stopped")

    def __init__(self, stream: ResponseStream, code: int, raw_headers: list[tuple[bytes, bytes]],
                 end_to_end: list[tuple[bytes, bytes]], length: int | None, via: bool):
        self.code = code
        self.length = length
        #: The header fields as received, pseudo-header fields left out.
        self.raw_headers = raw_headers
        self.end_to_end = end_to_end
        self.via = via
        #: The trailing HEADERS frame's fields, once it arrived.
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self._headers: Headers | None = None
        self._stream: ResponseStream | None = stream
        self._protocol: Any = None
        self._buffer: list[bytes] = []
        # Flow-controlled bytes received but not yet acknowledged.
        self._held = 0
        self._end: Failure | None = None
        self._paused = False
        self._stopped = False

    @property
    def headers(self) -> Headers:
        """
        The end-to-end headers as a L{Headers} (made when first asked for).
        """
        if self._headers is None:
            self._headers = Headers()
            for name, value in self.end_to_end:
                self._headers.addRawHeader(name, value)
        return self._headers

    def whole_body(self) -> bytes | None:
        """
        L{IUpstreamResponse.whole_body}: the body, when it all arrived and
        ended well before anything was asked of it.
        """
        if self._protocol is not None or self._end is not DONE:
            return None
        self._protocol = _DELIVERED
        self._end = None
        buffer, self._buffer = self._buffer, []
        return b"".join(buffer)

    def deliverBody(self, protocol: IProtocol) -> None:
        """
        L{IUpstreamResponse.deliverBody}: what arrived at once, the rest as
        it comes, then C{connectionLost} (L{twisted.web.client.ResponseDone}
        at a complete end).
        """
        if self._protocol is not None:
            raise RuntimeError("deliverBody called twice")
        self._protocol = protocol
        protocol.makeConnection(self)  # type: ignore[arg-type]
        buffer, self._buffer = self._buffer, []
        for chunk in buffer:
            if self._stopped:
                break
            protocol.dataReceived(chunk)
        if not self._paused:
            self._acknowledge()
        end, self._end = self._end, None
        if end is not None:
            self._protocol = _DELIVERED
            protocol.connectionLost(end)

    def _acknowledge(self) -> None:
        held, self._held = self._held, 0
        if held and self._stream is not None:
            self._stream.acknowledge(held)

    def _data(self, data: bytes, size: int) -> None:
        """
        A DATA frame's C{data} (C{size} flow-controlled bytes) arrived.
        """
        if self._stopped:
            return
        self._held += size
        protocol = self._protocol
        if protocol is None:
            self._buffer.append(data)
            return
        protocol.dataReceived(data)
        if not self._paused:
            self._acknowledge()

    def _finished(self, reason: Failure) -> None:
        """
        The body ended: L{DONE}, or how it failed.
        """
        self._stream = None
        protocol = self._protocol
        if protocol is not None:
            self._protocol = _DELIVERED  # no cycle with the protocol
            protocol.connectionLost(reason)
        else:
            self._end = reason

    def pauseProducing(self) -> None:
        """
        Stop acknowledging DATA: the service's window closes.
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        Acknowledge what arrived meanwhile, and what arrives from now on.
        """
        if self._paused:
            self._paused = False
            self._acknowledge()

    def abortConnection(self) -> None:
        """
        As L{stopProducing} (what L{twisted.web.client.readBody} calls).
        """
        self.stopProducing()

    def stopProducing(self) -> None:
        """
        Give the body up: the stream is reset (C{CANCEL}).
        """
        self._stopped = True
        self._buffer = []
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()


__all__ = ["H2Response", "ResponseStream"]
