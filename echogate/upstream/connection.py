"""
The wire side of echogate's HTTP/1.1 client: one persistent connection to
a service (L{HTTP11Connection}) writing a request head (and a body in
memory) in one write and parsing the response strictly, with C{httptools}
(llhttp) on CPython and L{echogate.upstream.h1parse} elsewhere. The response it
hands over, whose body arrives with back-pressure, is in
L{echogate.upstream.response}; the pool, retries and deadlines are in
L{echogate.upstream.lean}.
"""
from __future__ import annotations

import typing
from typing import Any

import platform
from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from echogate.upstream.response import DONE, UpstreamResponse
from echogate.upstream.hop_by_hop import NOT_END_TO_END, listed_names

if platform.python_implementation() == "CPython":
    from httptools import HttpResponseParser as ResponseParser
else:
    # httptools goes through cpyext there, which the JIT cannot see into;
    # echogate's own parser is pure Python and as strict.
    from echogate.upstream.h1parse import ResponseParser  # type: ignore[assignment]

#: The response parser class: C{httptools}' (llhttp) on CPython,
#: L{echogate.upstream.h1parse.ResponseParser} elsewhere (PyPy).
PARSER: Callable[[Any], Any] = ResponseParser



class ConnectionOwner(typing.Protocol):
    """
    The client a connection belongs to (L{echogate.upstream.lean.LeanUpstreamClient}
    provides it): the write batcher its transport is wrapped in, and where
    the connection goes back to once a response is done (C{_release}) or
    once it is lost (C{_forget}).
    """

    write_batcher: Any

    def _release(self, conn: "HTTP11Connection") -> None: ...

    def _forget(self, conn: "HTTP11Connection") -> None: ...


class ConnectionExchange(typing.Protocol):
    """
    One request sent on a connection (the lean client's exchange provides
    it): what to write, and the callbacks for its response head and for a
    connection lost before the response ended.
    """

    method: bytes
    target: bytes
    headers: Any
    body: Any

    def got_head(self, response: UpstreamResponse) -> None: ...

    def lost(self, reason: Failure, stale: bool) -> None: ...

#: Response head limits (status line and headers): bytes, header lines.
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 100

# Connection header values that name no end-to-end header.
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close"))
_NEEDS_LENGTH = frozenset((b"POST", b"PUT", b"PATCH"))


class _HeadTooLarge(Exception):
    """
    The response head has more header lines than L{MAX_HEADERS}.
    """


class _BodyWriter:
    """
    The consumer a request body producer writes to: a list while the
    producer writes synchronously (sent with the head in one write), then
    the connection (chunk-framed when the length is unknown).
    """

    __slots__ = ("_transport", "_chunked", "buffer")

    def __init__(self, transport: Any, chunked: bool, head: bytes):
        self._transport = transport
        self._chunked = chunked
        self.buffer: list[bytes] | None = [head]

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self.buffer is not None:
            self.buffer.append(data)
        else:
            self._transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


def _request_head(method: bytes, target: bytes, headers: Headers | list[tuple[bytes, bytes]],
                  framing: bytes) -> bytes:
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


class HTTP11Connection(Protocol):
    """
    One persistent upstream connection: writes one request at a time and
    parses its response with L{PARSER}.
    """

    def __init__(self, client: ConnectionOwner, key: tuple):
        self._client = client
        self._key = key
        self._exchange: ConnectionExchange | None = None
        self._response: UpstreamResponse | None = None
        self._parser: Any = None
        self._producer: Any = None
        self._paused = False
        self._lost = False
        self._aborted = False
        #: When the pool took it back, or C{None} while it is not there.
        self.idle_since: float | None = None
        self._waiters: list[Deferred] = []
        # A response head parsed but not yet handed to its exchange.
        self._handover: tuple[ConnectionExchange, UpstreamResponse] | None = None

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(self._client.write_batcher.wrap(transport))

    # -- one request ----------------------------------------------------------

    def start(self, exchange: ConnectionExchange, reused: bool) -> None:
        """
        Send C{exchange}'s request on this connection.
        """
        self._exchange = exchange
        self._reused = reused
        self._received = False
        self._head_bytes = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self._interim = False
        self._complete = False
        self._dirty = False
        self._until_close = False
        self._keep_alive = False
        self._is_head = exchange.method == b"HEAD"
        self._parser = PARSER(self)
        body = exchange.body
        if body is None:
            framing = b"Content-Length: 0\r\n" if exchange.method in _NEEDS_LENGTH else b""
            self.transport.write(_request_head(exchange.method, exchange.target, exchange.headers, framing))
            return
        producer = body.producer()
        length = producer.length
        chunked = length is UNKNOWN_LENGTH
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
        writer = _BodyWriter(self.transport, chunked, _request_head(exchange.method, exchange.target,
                                                                    exchange.headers, framing))
        self._producer = producer
        done = producer.startProducing(writer)
        if done.called:  # written synchronously: one write for head and body
            self._producer = None
            outcome: list = []
            done.addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                self._lose_before_head(outcome[0])
                return
            if chunked:
                writer.buffer.append(b"0\r\n\r\n")
            self.transport.write(b"".join(writer.buffer))
            return
        self.transport.writeSequence(writer.buffer)
        writer.buffer = None
        self.transport.registerProducer(producer, True)
        done.addBoth(self._body_written, producer, chunked)

    def _body_written(self, outcome: Any, producer: Any, chunked: bool) -> None:
        if self._producer is not producer:
            return  # stopped: the connection is gone or the answer came first
        self._producer = None
        if self._lost:
            return
        self.transport.unregisterProducer()
        if isinstance(outcome, Failure):
            self.abort()
        elif chunked:
            self.transport.write(b"0\r\n\r\n")

    def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            if not self._lost:
                self.transport.unregisterProducer()
            try:
                producer.stopProducing()
            except Exception:
                pass

    def abort(self) -> None:
        """
        Drop the connection (it is not reused).
        """
        self._aborted = True
        if not self._lost:
            self.transport.abortConnection()

    def abandon(self) -> None:
        """
        The exchange gave up (cancelled or timed out) before the head.
        """
        self._exchange = None
        self._stop_producer()
        self.abort()

    # -- parser callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._dirty = True  # bytes after the response

    def on_status(self, status: bytes) -> None:
        self._phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._raw_headers
        if len(headers) >= MAX_HEADERS:
            raise _HeadTooLarge()
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            if code == 101:
                raise ValueError("unexpected 101 Switching Protocols")
            self._interim = True
            self._raw_headers = []
            self._phrase = b""
            return
        pairs: list[tuple[bytes, bytes]] = []
        add = pairs.append
        length: Any = UNKNOWN_LENGTH
        chunked = via = False
        listed: Any = ()
        raw = self._raw_headers
        for pair in raw:
            lower = pair[0].lower()
            if lower in NOT_END_TO_END:  # framing or hop-by-hop: not passed on
                if lower == b"content-length":
                    length = int(pair[1])  # llhttp checked it (and that it does not conflict)
                elif lower == b"transfer-encoding":
                    chunked = True
                elif lower == b"connection" and pair[1].lower() not in _PLAIN_CONNECTION:
                    listed = listed_names(value for n, value in raw if n.lower() == b"connection")
                continue
            if lower == b"via":
                via = True
            add(pair)
        if listed:
            pairs = [pair for pair in pairs if pair[0].lower() not in listed]
            via = via and b"via" not in listed
        if self._is_head or code == 204 or code == 304:
            length = 0
        elif chunked:
            length = UNKNOWN_LENGTH
        elif length is UNKNOWN_LENGTH:
            self._until_close = True
        self._keep_alive = parser.should_keep_alive()
        self._raw_headers = []
        self._response = response = UpstreamResponse(self, code, self._phrase.strip(),
                                              0 if parser.get_http_version() == "1.0" else 1, pairs, length, raw, via)
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            # Handed over once this read is parsed (see dataReceived): a
            # small answer's body and end are then already there.
            self._handover = (exchange, response)
        else:
            response.stopProducing()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None:
            response._data(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True

    # -- transport events -------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._lost:
            return
        if self._parser is None or self._complete:
            self.abort()  # nothing was asked: an idle connection talking
            return
        self._received = True
        response = self._response
        if response is None:
            self._head_bytes += len(data)
        try:
            if self._is_head and response is None:
                self._feed_head(data)
            else:
                self._parser.feed_data(data)
        except Exception:
            self._parse_failed(Failure())
        else:
            if self._response is None and self._head_bytes > MAX_HEAD_BYTES:
                self._parse_failed(Failure(_HeadTooLarge()))
            elif self._complete:
                self._done_message()
        handover = self._handover
        if handover is not None:
            self._handover = None
            exchange, response = handover
            exchange.got_head(response)

    def _feed_head(self, data: bytes) -> None:
        # HEAD: llhttp cannot be told there is no body, so feed byte by byte
        # up to the end of the head; anything after it is unsolicited.
        feed = self._parser.feed_data
        for i in range(len(data)):
            feed(data[i:i + 1])
            if self._response is not None:
                self._complete = True
                if i + 1 < len(data):
                    self._dirty = True
                break

    def _parse_failed(self, failure: Failure) -> None:
        response = self._response
        if response is None:
            self._lose_before_head(failure)
            return
        self._response = None
        self._parser = None
        self.abort()
        response._finished(Failure(ResponseFailed([failure])))

    def _lose_before_head(self, failure: Failure) -> None:
        exchange, self._exchange = self._exchange, None
        self._parser = None
        self._stop_producer()
        self.abort()
        if exchange is not None:
            exchange.lost(failure, stale=False)

    def _done_message(self) -> None:
        response, self._response = self._response, None
        self._parser = None
        reusable = self._keep_alive and not self._dirty and self._producer is None and not self._aborted and not self._lost
        self._stop_producer()
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if response is not None:
            if response._held:
                response._held = False
                self.transport.resumeProducing()
            response._conn = None
        if reusable:
            self._client._release(self)
        else:
            self.transport.loseConnection()
        if response is not None:
            response._finished(DONE)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._lost = True
        self._client._forget(self)
        self._stop_producer()
        exchange, self._exchange = self._exchange, None
        response, self._response = self._response, None
        self._parser = None
        if exchange is not None:
            stale = self._reused and not self._received
            exchange.lost(reason, stale=stale)
        elif response is not None:
            if self._until_close and not response._stopped:
                response._finished(Failure(PotentialDataLoss()))
            else:
                response._finished(Failure(ResponseFailed([reason])))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    # -- idle -------------------------------------------------------------------

    def close_idle(self) -> Deferred:
        if self._lost:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        self.transport.loseConnection()
        return d


class OneConnection(Factory):
    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, conn: HTTP11Connection):
        self._conn = conn

    def buildProtocol(self, addr: Any) -> HTTP11Connection:
        return self._conn


__all__ = ["HTTP11Connection", "OneConnection", "MAX_HEAD_BYTES", "MAX_HEADERS"]
