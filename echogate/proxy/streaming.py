"""
Bodies on the move: the upstream response streamed to the client with
back-pressure through the plugins' C{body_filter}, and small request
bodies sent upstream in one write.
"""
from __future__ import annotations

import io
import os
import typing
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from echogate.pdk.rawheaders import DIRECT, stored_name

_CONTENT_LENGTH = stored_name(b"content-length")
_TRANSFER_ENCODING = stored_name(b"transfer-encoding")


class StreamOwner(typing.Protocol):
    """
    What L{BodyStreamer} needs from the exchange whose response it streams
    (L{echogate.proxy.exchange.Exchange} provides it): the clock for the
    read timeout, the body_filter phase, and the events of the body's end.
    """

    @property
    def clock(self) -> IReactorTime: ...

    def chunk(self, data: bytes) -> "bytes | Deferred[bytes]":
        """C{data} through the body filters."""

    def last_chunk(self) -> "bytes | Deferred[bytes]":
        """The body is over: what the body filters held back."""

    def body_done(self) -> None:
        """The body was written whole: finish the response."""

    def broke(self, reason: Failure) -> None:
        """The service's body stopped before its end."""

    def cut(self, failure: Failure) -> None:
        """A body filter failed mid-body: the client's connection was cut."""


class StreamedRequest(typing.Protocol):
    """
    What L{BodyStreamer} needs from the client's request
    (L{echogate.proxy.request.GatewayRequest} provides it).
    """

    producer: Any

    @property
    def client_gone(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def registerProducer(self, producer: Any, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def loseConnection(self) -> None: ...


@implementer(IBodyProducer)
class BytesProducer:
    """
    A small request body already in memory, written in one go.
    """

    def __init__(self, data: bytes):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class RequestBody:
    """
    The body to send upstream: bytes in memory, or the request's spooled
    body file. Each attempt (retries) gets a fresh producer.
    """

    def __init__(self, data: bytes | None = None, file: Any = None):
        self._data = data
        self._file = file

    def producer(self) -> Any:
        if self._data is not None:
            return BytesProducer(self._data)
        # Its own descriptor: the request closes its body file when it
        # finishes, which may be before the producer's last read.
        own = os.fdopen(os.dup(self._file.fileno()), "rb")
        own.seek(0)
        return FileBodyProducer(own)

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        self._file.seek(0)
        data: bytes = self._file.read()
        return data

    @classmethod
    def of_request(cls, request: Any) -> "RequestBody | None":
        """
        The client's body, or C{None} when the request has none.
        """
        headers = request.requestHeaders
        if DIRECT and type(headers) is Headers:
            # (hasHeader's, without its calls)
            stored = headers._rawHeaders
            framed = _CONTENT_LENGTH in stored or _TRANSFER_ENCODING in stored
        else:
            framed = headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding")
        if not (framed or getattr(request, "head_first", False)):
            # (An HTTP/2 request's body needs neither: one whose head came
            # without the end of its stream has one.)
            return None
        content = request.content
        if isinstance(content, io.BytesIO):  # small bodies stay in memory
            return cls(data=content.getvalue())
        return cls(file=content)


#: Bodies up to this size (known in advance) are written without
#: registering the upstream connection as the client's producer.
SMALL_BODY = 65536

_END = object()  # marks the end of the body in a queue of chunks


class Drain(Protocol):
    """
    Reads and drops an upstream body we no longer want.
    """

    #: What L{echogate.interfaces.IUpstreamResponse.deliverBody} connects it
    #: to: the upstream's body, paused, resumed and stopped through it.
    transport: IPushProducer  # type: ignore[assignment]  # (a producer, not a whole ITransport)

    def connectionMade(self) -> None:
        self.transport.stopProducing()


class BodyStreamer(Protocol):
    """
    Streams the upstream body to the client with back-pressure: the client
    connection pauses and resumes the upstream connection (it is
    registered as the request's producer), and C{body_filter} runs on
    every chunk (when C{filters}) through the owner.
    """

    #: As L{Drain}'s: the upstream's body, paused, resumed and stopped.
    transport: IPushProducer  # type: ignore[assignment]  # (a producer, not a whole ITransport)

    def __init__(self, owner: StreamOwner, request: StreamedRequest, filters: Any, read_timeout: float,
                 length: int | None = None):
        self._owner = owner
        self._request = request
        self._filters = bool(filters)
        self._queue: list[Any] | None = None
        self._read_timeout = read_timeout
        self._length = length
        self._timer: Any = None
        self._done = False

    def connectionMade(self) -> None:
        if self._request.client_gone:
            self.transport.stopProducing()
            return
        if self._length is None or self._length > SMALL_BODY:
            # Back-pressure: the client connection pauses the upstream one.
            # A small body of known length fits in the client's buffer, so
            # it is not worth the producer round trips.
            self._request.registerProducer(self.transport, True)

    def started(self) -> None:
        """
        Called once the body was handed over: bounds the wait for the rest
        (C{read_timeout} between chunks) unless it all came at once.
        """
        if not self._done:
            self._timer = self._owner.clock.callLater(self._read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self.transport.stopProducing()

    def stop(self) -> None:
        """
        The client went away: stop the service's body.
        """
        if not self._done:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if data is _END:
            if self._queue is not None:
                self._queue.append(_END)
            else:
                self._finish()
            return
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(self._read_timeout)
        if self._queue is not None:
            self._queue.append(data)
            return
        if not self._filters:
            self._request.write(data)
            return
        try:
            out = self._owner.chunk(data)
        except BaseException:
            self._abort(Failure())
            return
        if type(out) is not bytes and isinstance(out, Deferred):  # (a bytes check first: it is cheaper)
            self._queue = []
            self.transport.pauseProducing()
            out.addCallbacks(self._written_async, self._abort)
        elif out:
            self._request.write(out)

    def _written_async(self, out: bytes) -> None:
        if out and not self._request.client_gone:
            self._request.write(out)
        queue, self._queue = self._queue, None
        if not self._done:
            self.transport.resumeProducing()
        # Replay in order; a filter that goes asynchronous again queues the
        # rest (the end marker included) behind itself.
        for chunk in queue or ():
            self.dataReceived(chunk)

    def _abort(self, failure: Failure) -> None:
        self.transport.stopProducing()
        self._request.loseConnection()
        self._owner.cut(failure)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        request = self._request
        if request.producer is not None and not request.client_gone:
            request.unregisterProducer()
        if not isinstance(reason.value, (ResponseDone, PotentialDataLoss)):
            self._owner.broke(reason)
            return
        if self._queue is not None:
            self._queue.append(_END)  # finished once the queue drains
            return
        self._finish()

    def _finish(self) -> None:
        request = self._request
        owner = self._owner
        if self._filters and not request.client_gone:
            try:
                tail = owner.last_chunk()
            except BaseException:
                self._abort(Failure())
                return
            if isinstance(tail, Deferred):
                def written(t: bytes) -> None:
                    if t:
                        request.write(t)
                    owner.body_done()
                tail.addCallback(written)
                tail.addErrback(self._abort)
                return
            if tail:
                request.write(tail)
        owner.body_done()
