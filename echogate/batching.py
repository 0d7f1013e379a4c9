"""
Write batching for echogate's own TCP connections (the proxy listener's
and the lean upstream client's): what a connection writes during one
reactor iteration is sent with one C{send} once the iteration's events are
handled, straight to its socket.

Twisted's own transports buffer every write and register the socket for
writability (an C{epoll_ctl}), then send when the next poll reports it
writable and unregister it (another C{epoll_ctl}): two system calls and
one more event to dispatch for every response and every upstream request,
about a sixth of a small proxied request's cost here. Sending at the end
of the iteration keeps what that buffering is good for (every connection's
writes of one iteration go out together, after its events are handled;
sending inside each C{write} call measured slower) without the
registration. When the socket does not take everything (a full send
buffer, an error), the rest goes to the transport, and the connection uses
the transport's own buffering, with its producer back-pressure and error
handling, from then on. A connection does not hold more than the
transport would before pausing its producer (C{bufferSize}): past that,
its writes are sent at once, so that a producer writing many times in one
iteration (a request body read from a file) meets the transport's
back-pressure instead of piling up here.
"""
from __future__ import annotations

import socket
from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime, ISSLTransport, ITCPTransport
from zope.interface import directlyProvides, providedBy


class WriteBatcher:
    """
    Sends the writes of its L{BatchedTransport}s at the end of each
    reactor iteration in which they wrote (one C{callLater(0)} per
    iteration, shared by every connection that wrote).

    @param reactor: the reactor the connections run on.
    """

    def __init__(self, reactor: IReactorTime):
        self._reactor = reactor
        self._due: list[BatchedTransport] = []
        self._call: Any = None

    def wrap(self, transport: Any) -> Any:
        """
        C{transport} with batched writes: a L{BatchedTransport} for a plain
        TCP connection, C{transport} itself for anything else (TLS, or a
        transport without a socket, as in tests).
        """
        if ISSLTransport.providedBy(transport) or not ITCPTransport.providedBy(transport):
            return transport
        handle = getattr(transport, "getHandle", None)
        sock = handle() if handle is not None else None
        if not isinstance(sock, socket.socket):
            return transport
        return BatchedTransport(transport, sock, self)

    def enlist(self, batched: "BatchedTransport") -> None:
        """
        Send C{batched}'s writes at the end of this iteration.
        """
        self._due.append(batched)
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Send every enlisted connection's writes (the end of an iteration).
        """
        self._call = None
        due, self._due = self._due, []
        for batched in due:
            batched.flush()


class BatchedTransport:
    """
    A TCP transport whose writes wait for the end of the reactor iteration
    (L{WriteBatcher}) and are then sent straight to its socket. Everything
    else is the wrapped transport's. It provides what the wrapped
    transport provides.

    Writes stay in order: after C{loseConnection}, C{loseWriteConnection}
    or a send that did not take everything, every write goes to the
    wrapped transport, behind what it already holds.

    Writes past the transport's C{bufferSize} in one iteration are sent
    at once (L{_hold}): what waits here is bounded as the transport's own
    buffer is, and a producer writing faster than the socket takes finds
    the transport, which pauses it.
    """

    def __init__(self, transport: Any, sock: socket.socket, batcher: WriteBatcher):
        self._transport = transport
        self._socket = sock
        self._batcher = batcher
        self._pending: list[bytes] = []
        #: The bytes in C{_pending}, and how many it may hold.
        self._pending_size = 0
        self._limit: int = getattr(transport, "bufferSize", 65536)
        #: Whether the batcher will flush it at the end of this iteration.
        self._enlisted = False
        #: Whether writes are still batched (else they go to the transport).
        self.batching = True
        #: Whether reading was paused through it (L{pauseProducing}) and
        #: not resumed since.
        self._paused = False
        directlyProvides(self, providedBy(transport))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def __repr__(self) -> str:
        return f"<BatchedTransport {self._transport!r}>"

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"Data must be bytes, not {type(data).__name__}")
        if not self.batching:
            self._transport.write(data)
        elif data:
            # (_hold, inline: every response and upstream request comes this way)
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > self._limit:
                self._send()
            elif not self._enlisted:
                self._enlisted = True
                self._batcher.enlist(self)

    def writeSequence(self, sequence: Iterable[bytes]) -> None:
        if not self.batching:
            self._transport.writeSequence(sequence)
            return
        # One join instead of a check and an append per piece (a response
        # head comes as some forty); join refuses str, as Twisted does.
        try:
            data = b"".join(sequence)
        except TypeError as e:
            raise TypeError(f"Data must be bytes: {e}") from None
        if data:
            self._hold(data)

    def _hold(self, data: bytes) -> None:
        """
        Keep C{data} for the end of the iteration, or send it with what
        is pending now when that is more than the transport's
        C{bufferSize}.

        @param data: Bytes written, not empty.
        """
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > self._limit:
            self._send()
        elif not self._enlisted:
            self._enlisted = True
            self._batcher.enlist(self)

    def flush(self) -> None:
        """
        Send what was written since the last flush (the end of the
        iteration).
        """
        self._enlisted = False
        self._send()

    def _send(self) -> None:
        """
        Send what is pending: straight to the socket while it takes
        everything, else the rest to the transport (which then reports
        errors and applies back-pressure as usual).
        """
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_size = 0
        try:
            sent = self._socket.send(data)
        except OSError:
            sent = 0  # would block, or the connection failed: the transport finds out
        if sent < len(data):
            self.batching = False
            self._transport.write(data[sent:])

    def _unbatch(self) -> None:
        self.flush()
        self.batching = False

    # -- the rest, with what is pending sent first -----------------------------

    def loseConnection(self) -> None:
        self._unbatch()
        self._transport.loseConnection()

    def loseWriteConnection(self) -> None:
        self._unbatch()
        self._transport.loseWriteConnection()

    def abortConnection(self) -> None:
        self._pending = []
        self._pending_size = 0
        self.batching = False
        self._transport.abortConnection()

    # -- delegated without the lookup, on the per-request path ---------------------

    @property
    def disconnecting(self) -> bool:
        # LineReceiver reads it after every line.
        disconnecting: bool = self._transport.disconnecting
        return disconnecting

    def getPeer(self) -> Any:
        return self._transport.getPeer()

    def getHost(self) -> Any:
        return self._transport.getHost()

    def pauseProducing(self) -> None:
        self._paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        # Only after a pause: HTTPChannel resumes its transport after every
        # request, and a TCP transport's resumeProducing takes five calls
        # (down to the reactor's addReader) to find it reading already.
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._unbatch()  # a transport's stopProducing closes it
        self._transport.stopProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()


__all__ = ["WriteBatcher", "BatchedTransport"]
