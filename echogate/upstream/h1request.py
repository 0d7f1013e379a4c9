"""
The request side of echogate's HTTP/1.1 client on the wire: the request
head (L{request_head}), with the framing of its body, and the consumer a
body producer writes to (L{BodyWriter}), which lets a body written at once
go out with the head in one write. L{echogate.upstream.connection} sends
them.
"""
from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.web.http_headers import Headers

#: Methods whose request without a body still says C{Content-Length: 0}
#: (a service may refuse them without a length).
NEEDS_LENGTH = frozenset((b"POST", b"PUT", b"PATCH"))


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
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    if isinstance(headers, Headers):
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
    else:
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
    parts.append(framing)
    parts.append(b"\r\n")
    return b"".join(parts)


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

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """
        Nothing: the connection registers the producer with its transport.
        """

    def unregisterProducer(self) -> None:
        """
        Nothing, as L{registerProducer}.
        """


__all__ = ["NEEDS_LENGTH", "request_head", "BodyWriter"]
