"""
A raw TCP client for tests where the wire matters: send exact bytes to a
listener on 127.0.0.1 and read exactly what comes back, including whether
and when the connection is closed.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


class RawClient(Protocol):
    """
    Everything the server sent (C{data}); C{closed} fires when the
    connection is gone.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred = Deferred()
        self._waiting: list[tuple[Callable[[bytes], bool], Deferred]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for item in list(self._waiting):
            if item[0](self.data):
                self._waiting.remove(item)
                item[1].callback(self.data)

    def connectionLost(self, reason: Failure) -> None:
        for _, d in self._waiting:
            d.callback(self.data)
        self._waiting = []
        self.closed.callback(self.data)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def until(self, done: Callable[[bytes], bool]) -> Deferred:
        """
        Fires with what arrived once C{done} is true of it, or the
        connection closed.
        """
        if done(self.data) or self.closed.called:
            return _fired(self.data)
        d: Deferred = Deferred()
        self._waiting.append((done, d))
        return d

    def response(self) -> Deferred:
        """
        Fires once one whole response (head and, by Content-Length, body)
        has arrived, or the connection closed.
        """
        return self.until(whole_response)


def _fired(value: Any) -> Deferred:
    d: Deferred = Deferred()
    d.callback(value)
    return d


def whole_response(data: bytes) -> bool:
    """
    Whether C{data} holds at least one whole response: a final (not 1xx)
    head and as many body bytes as its Content-Length says (chunked
    bodies: up to the last chunk).
    """
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[:end].lower()
        if head.startswith(b"http/1.1 1") and not head.startswith(b"http/1.1 101"):
            data = data[end + 4:]
            continue
        body = data[end + 4:]
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return len(body) >= int(line.split(b":", 1)[1])
        if b"transfer-encoding: chunked" in head:
            return b"\r\n0\r\n\r\n" in b"\r\n" + body
        return True


async def connect(port: int) -> RawClient:
    """
    A raw client connected to 127.0.0.1:C{port}; close it with
    C{client.transport.abortConnection()} (tests add that as a cleanup).
    """
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


def status_of(data: bytes) -> int | None:
    """
    The status code of the last final response in C{data}.
    """
    codes = [int(line.split(b" ")[1]) for line in data.split(b"\r\n")
             if line.startswith(b"HTTP/1.") and len(line.split(b" ")) > 1 and not line.split(b" ")[1].startswith(b"1")]
    return codes[-1] if codes else None
