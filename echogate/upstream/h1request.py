"""
The request side of echogate's HTTP/1.1 client on the wire
(L{send_request}): the request head (L{request_head}) with the framing of
its body, and the consumer a body producer writes to (L{BodyWriter}),
which lets a body written at once go out with the head in one write.
L{echogate.upstream.connection} sends requests with it.
"""
from __future__ import annotations

import typing
from typing import Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer


class WireTransport(typing.Protocol):
    """
    What a connection uses of its transport (a TCP transport, maybe
    wrapped by L{echogate.batching.WriteBatcher}): writing, the request
    body's producer, reading resumed, and closing.
    """

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


class RequestBody(typing.Protocol):
    """
    A request body that can be sent again: a fresh producer per attempt
    (L{echogate.proxy.streaming.RequestBody} provides it).
    """

    def producer(self) -> IBodyProducer: ...


#: Methods whose request without a body still says C{Content-Length: 0}
#: (a service may refuse them without a length).
NEEDS_LENGTH = frozenset((b"POST", b"PUT", b"PATCH"))
#: The framing line of a request without a body, by method (the others
#: have none).
NO_BODY_FRAMING = dict.fromkeys(NEEDS_LENGTH, b"Content-Length: 0\r\n")

# A header line from a (name, value) pair, without its CRLF.
_FIELD = b": ".join


def request_head(method: bytes, target: bytes, headers: Headers | list[tuple[bytes, bytes]],
                 framing: bytes) -> bytes:
    """
    A request head, ready to write.

    @param method: The request method.
    @param target: The request target (path and query).
    @param headers: The header lines: L{Headers}, or C{(name, value)}
        pairs in order.
    @param framing: The body's framing header line, CRLF included
        (C{Content-Length: 3\\r\\n}, C{Transfer-Encoding: chunked\\r\\n}),
        or C{b""}.
    @return: The head, its empty last line included.
    """
    if isinstance(headers, Headers):
        lines = [name + b": " + value for name, values in headers.getAllRawHeaders() for value in values]
    else:
        # (a join per line, then one of the lines: cheaper than one join
        # of every name, separator and value)
        lines = list(map(_FIELD, headers))
    # (one join of the pieces: a bytes format with %s costs more, on PyPy
    # over twice as much)
    if not lines:
        return b"".join((method, b" ", target, b" HTTP/1.1\r\n", framing, b"\r\n"))
    return b"".join((method, b" ", target, b" HTTP/1.1\r\n", b"\r\n".join(lines), b"\r\n", framing, b"\r\n"))


@implementer(IConsumer)
class BodyWriter:
    """
    The consumer a request body producer writes to: a list while the
    producer writes synchronously (sent with the head in one write), then
    the connection (chunk-framed when the length is unknown).

    @ivar buffer: The head and the body written so far, until the
        connection writes them and sets it to C{None}; from then on each
        write goes to the connection.
    """

    __slots__ = ("_write", "_chunked", "buffer")

    def __init__(self, write: Callable[[bytes], None], chunked: bool, head: bytes):
        """
        @param write: Writes to the connection.
        @param chunked: Whether each write is framed as a chunk.
        @param head: The request head, the first thing in L{buffer}.
        """
        self._write = write
        self._chunked = chunked
        self.buffer: list[bytes] | None = [head]

    def write(self, data: bytes) -> None:
        """
        Add C{data} to the body (nothing for empty data: an empty chunk
        would end a chunked body).
        """
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self.buffer is not None:
            self.buffer.append(data)
        else:
            self._write(data)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Nothing: the connection registers the producer with its transport.
        """

    def unregisterProducer(self) -> None:
        """
        Nothing, as L{registerProducer}.
        """


def send_request(wire: WireTransport, method: bytes, target: bytes, headers: Headers | list[tuple[bytes, bytes]],
                 body: RequestBody | None) -> tuple[IBodyProducer, Deferred[None], bool] | Failure | None:
    """
    Write a request on C{wire}: its head, and in the same write a body
    that its producer writes at once.

    @return: C{None} once the whole request is written; the producer's
        failure when it failed at once (nothing was written); else the body
        still being written: its producer (registered with C{wire} as a
        streaming producer), the Deferred that fires when it is done, and
        whether the body is chunked (its last chunk is for the caller to
        write then).
    """
    if body is None:
        wire.write(request_head(method, target, headers, NO_BODY_FRAMING.get(method, b"")))
        return None
    producer = body.producer()
    length = producer.length
    chunked = length is UNKNOWN_LENGTH
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
    writer = BodyWriter(wire.write, chunked, request_head(method, target, headers, framing))
    done: Deferred[None] = producer.startProducing(writer)
    buffer = writer.buffer or []
    if done.called:  # written synchronously: one write for head and body
        outcome: list[object] = []
        done.addBoth(outcome.append)
        if isinstance(outcome[0], Failure):
            return outcome[0]
        if chunked:
            buffer.append(b"0\r\n\r\n")
        wire.write(b"".join(buffer))
        return None
    wire.writeSequence(buffer)
    writer.buffer = None
    wire.registerProducer(producer, True)
    return producer, done, chunked


__all__ = ["NEEDS_LENGTH", "NO_BODY_FRAMING", "WireTransport", "RequestBody", "request_head", "BodyWriter",
           "send_request"]
