"""
Streamed uploads: the body of a request on a route with
C{request_buffering: false} goes to the service as it arrives, never to a
file (L{StreamedBody}), with back-pressure: while the upstream
connection's write buffer is full, the client's connection is not read.

The head is routed and authorised first (the head-first path of
L{echogate.proxy.request.GatewayRequest}); the body is read only once the
upstream connection is made and the request head written, so a connect
failure before that can be retried with the body intact, and a body of
which any byte was sent is never sent again.
"""
from __future__ import annotations

import typing
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

__all__ = ["BodyAlreadySent", "StreamedBody", "UploadChannel", "UploadRequest", "response_started",
           "response_over", "streams"]


class BodyAlreadySent(Exception):
    """
    A streamed body was (partly) sent on an attempt that failed: it is not
    sent again (the failure is answered 502).
    """


class UploadChannel(typing.Protocol):
    """
    What a streamed body needs from the client's connection
    (L{echogate.proxy.channel.GatewayChannel} provides it).
    """

    persistent: bool

    def pause_body(self) -> None:
        """Stop reading the body (the service is not taking it)."""

    def resume_body(self) -> None:
        """Read the body again."""

    def close_after_response(self) -> None:
        """Read nothing more; close once the response is written."""


class UploadRequest(typing.Protocol):
    """
    What a streamed body needs from the client's request
    (L{echogate.proxy.request.GatewayRequest} provides it).
    """

    channel: Any
    requestHeaders: Any
    responseHeaders: Any

    @property
    def body_pending(self) -> bool: ...

    def stream_body(self, sink: "StreamedBody") -> None: ...


def streams(route: dict[str, Any] | None) -> bool:
    """
    Whether C{route} streams request bodies (its C{request_buffering} is
    false).
    """
    return route is not None and route.get("request_buffering") is False


def response_started(request: UploadRequest) -> None:
    """
    The response head is about to be written while the client's body is
    still streaming: the connection closes after this response (the rest
    of the body is read only as long as the service takes it).
    """
    if request.body_pending:
        request.channel.persistent = False
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])


def response_over(request: UploadRequest) -> None:
    """
    The response is written whole before the client's body ended: read
    nothing more of it, and close.
    """
    if request.body_pending:
        request.channel.close_after_response()


class _Gone:
    """
    The connection of a request that is over: nothing to pause.
    """

    persistent = False

    def pause_body(self) -> None:
        pass

    def resume_body(self) -> None:
        pass

    def close_after_response(self) -> None:
        pass


_GONE = _Gone()


@implementer(IBodyProducer)
class _UploadProducer:
    """
    One attempt's producer of a L{StreamedBody}: what the upstream client
    registers with its connection (pausing it pauses the client's).
    """

    def __init__(self, body: "StreamedBody", length: int | object):
        self._body = body
        self.length = length
        self.done: Deferred[None] = Deferred()
        self.consumer: Any = None

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self.consumer = consumer
        self._body.attach(self)
        return self.done

    def pauseProducing(self) -> None:
        self._body.pause(self)

    def resumeProducing(self) -> None:
        self._body.resume(self)

    def stopProducing(self) -> None:
        self._body.detach(self)


@implementer(IBodyProducer)
class _Refused:
    """
    The producer of a second attempt, once bytes of the body were sent:
    fails at once, sending nothing.
    """

    def __init__(self, length: int | object):
        self.length = length

    def startProducing(self, consumer: Any) -> Deferred[None]:
        return fail(BodyAlreadySent("the streamed request body was already (partly) sent"))

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class StreamedBody:
    """
    The client's body, streamed to the service (an
    L{echogate.upstream.h1request.RequestBody} for the upstream clients):
    each attempt gets a producer; the first to start makes the request
    read its body, which goes to the attempt's connection as it arrives
    (C{Content-Length} framing when the client sent one, chunked when it
    sent chunked). While no producer takes it (between attempts, or once
    stopped), what arrives is kept and the client's connection paused.

    @ivar sent: how many bytes of the body were written to a connection.
    """

    def __init__(self, request: UploadRequest):
        self._request = request
        self._producer: _UploadProducer | None = None
        self._kept: list[bytes] = []
        self._complete = False
        self._started = False
        self._paused = False
        self.sent = 0
        length = request.requestHeaders.getRawHeaders(b"content-length")
        self._length: int | object = UNKNOWN_LENGTH
        if length and not request.requestHeaders.hasHeader(b"transfer-encoding"):
            self._length = int(length[0])

    def producer(self) -> IBodyProducer:
        """
        A producer for one attempt; one that fails at once when bytes of
        the body were sent already.
        """
        if self.sent:
            return _Refused(self._length)
        return _UploadProducer(self, self._length)

    # -- the producers' side ------------------------------------------------

    def attach(self, producer: _UploadProducer) -> None:
        """
        C{producer}'s attempt is connected: it takes the body from now on.
        """
        previous, self._producer = self._producer, producer
        if previous is not None and previous is not producer:
            previous.consumer = None
        if not self._started:
            self._started = True
            self._request.stream_body(self)
        kept, self._kept = self._kept, []
        for data in kept:
            self._pass(data)
        if self._complete:
            self._end()
        elif self._paused:
            self._paused = False
            self._channel().resume_body()

    def pause(self, producer: _UploadProducer) -> None:
        """
        The connection of C{producer} is full: stop reading the client.
        """
        if producer is self._producer and not self._paused:
            self._paused = True
            self._channel().pause_body()

    def resume(self, producer: _UploadProducer) -> None:
        """
        The connection of C{producer} takes more: read the client again.
        """
        if producer is self._producer and self._paused:
            self._paused = False
            self._channel().resume_body()

    def detach(self, producer: _UploadProducer) -> None:
        """
        C{producer}'s attempt is over (its connection went, or the
        response ended): nothing more goes to it.
        """
        if producer is not self._producer:
            return
        self._producer = None
        producer.consumer = None
        if not self._complete and not self._paused:
            self._paused = True
            self._channel().pause_body()

    def _channel(self) -> UploadChannel:
        """
        The client's connection, or one that does nothing once the
        request let go of it (it is over).
        """
        channel: UploadChannel | None = self._request.channel
        return channel if channel is not None else _GONE

    # -- the request's side (a sink) ----------------------------------------

    def write(self, data: bytes) -> None:
        """
        Bytes of the body arrived from the client.
        """
        if self._producer is None:
            self._kept.append(data)
            return
        self._pass(data)

    def finished(self) -> None:
        """
        The client's body ended.
        """
        self._complete = True
        if self._producer is not None:
            self._end()

    def _pass(self, data: bytes) -> None:
        producer = self._producer
        consumer = producer.consumer if producer is not None else None
        if consumer is None:
            self._kept.append(data)
            return
        self.sent += len(data)
        consumer.write(data)

    def _end(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None and not producer.done.called:
            producer.consumer = None
            producer.done.callback(None)
