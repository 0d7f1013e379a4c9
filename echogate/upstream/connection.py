"""
The wire side of echogate's HTTP/1.1 client: one persistent connection to
a service (L{HTTP11Connection}) writing a request head (and a body in
memory) in one write (L{echogate.upstream.h1request}) and parsing the
response strictly, with C{httptools} (llhttp) on CPython and
L{echogate.upstream.h1parse} elsewhere. The response it hands over, whose
body arrives with back-pressure, is in L{echogate.upstream.response}; the
pool, retries and deadlines are in L{echogate.upstream.lean}.
"""
from __future__ import annotations

import platform
import typing
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from echogate.upstream.h1request import NO_BODY_FRAMING, RequestBody, WireTransport, request_head, send_request
from echogate.upstream.hop_by_hop import split_response_head
from echogate.upstream.response import DONE, UpstreamResponse

#: The response parser class: C{httptools}' (llhttp) on CPython,
#: L{echogate.upstream.h1parse.ResponseParser} elsewhere (PyPy).
PARSER: Callable[[Any], Any]
if platform.python_implementation() == "CPython":
    import httptools

    PARSER = httptools.HttpResponseParser
else:
    # httptools goes through cpyext there, which the JIT cannot see into;
    # echogate's own parser is pure Python and as strict.
    from echogate.upstream import h1parse

    PARSER = h1parse.ResponseParser

_log = Logger(namespace="echogate.upstream")


class ConnectionOwner(typing.Protocol):
    """
    The client a connection belongs to (L{echogate.upstream.lean.LeanUpstreamClient}
    provides it): the write batcher its transport is wrapped in, and where
    the connection goes back to once a response is done (C{_release}) or
    once it is lost (C{_forget}).
    """

    write_batcher: Any

    def _release(self, conn: HTTP11Connection) -> None: ...

    def _forget(self, conn: HTTP11Connection) -> None: ...


class ConnectionExchange(typing.Protocol):
    """
    One request sent on a connection (the lean client's exchange provides
    it): what to write, and the callbacks for its response head and for a
    connection lost before the response ended.
    """

    method: bytes
    target: bytes
    headers: Headers | list[tuple[bytes, bytes]]
    body: RequestBody | None

    def got_head(self, response: UpstreamResponse) -> None: ...

    def lost(self, reason: Failure, stale: bool) -> None: ...


_NEW = object.__new__
#: Response head limits (status line and headers): bytes, header lines.
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 100


class _HeadTooLarge(Exception):
    """
    The response head has more header lines than L{MAX_HEADERS}.
    """


class HTTP11Connection(Protocol):
    """
    One persistent upstream connection: writes one request at a time and
    parses its response with L{PARSER}.
    """

    #: The transport, as it writes: L{transport}, typed.
    _wire: WireTransport

    def __init__(self, client: ConnectionOwner, key: tuple[Any, ...]):
        self._client = client
        self._key = key
        self._exchange: ConnectionExchange | None = None
        self._response: UpstreamResponse | None = None
        self._parser: Any = None
        # The parser of the last response, kept for the next one: one
        # parser reads every response of a kept-alive connection.
        self._spare_parser: Any = None
        self._producer: Any = None
        self._paused = False
        self._lost = False
        self._aborted = False
        #: When the pool took it back, or C{None} while it is not there.
        self.idle_since: float | None = None
        self._waiters: list[Deferred[None]] = []
        # A response head parsed but not yet handed to its exchange.
        self._handover: tuple[ConnectionExchange, UpstreamResponse] | None = None
        #: Called with the connection once it is made (when its factory
        #: gave it to the reactor itself, not through an endpoint).
        self.on_made: Callable[[HTTP11Connection], object] | None = None

    def makeConnection(self, transport: Any) -> None:
        self._wire = self._client.write_batcher.wrap(transport)
        super().makeConnection(self._wire)

    def connectionMade(self) -> None:
        made, self.on_made = self.on_made, None
        if made is not None:
            made(self)

    # -- one request ----------------------------------------------------------

    def start(self, exchange: ConnectionExchange, reused: bool) -> None:
        """
        Send C{exchange}'s request on this connection.
        """
        self._exchange = exchange
        self._reused = reused
        self._head_bytes = 0  # (also: whether anything was received)
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self._interim = False
        self._complete = False
        self._dirty = False
        self._until_close = False
        self._keep_alive = False
        method = exchange.method
        self._is_head = method == b"HEAD"
        parser = self._spare_parser
        if parser is None:
            parser = PARSER(self)
        else:
            self._spare_parser = None
        self._parser = parser
        body = exchange.body
        if body is None:
            self._wire.write(request_head(method, exchange.target, exchange.headers,
                                          NO_BODY_FRAMING.get(method, b"")))
            return
        sent = send_request(self._wire, method, exchange.target, exchange.headers, body)
        if isinstance(sent, Failure):
            self._lose_before_head(sent)
        elif sent is not None:
            producer, done, chunked = sent
            self._producer = producer
            done.addBoth(self._body_written, producer, chunked)

    def _body_written(self, outcome: Any, producer: Any, chunked: bool) -> None:
        if self._producer is not producer:
            return  # stopped: the connection is gone or the answer came first
        self._producer = None
        if self._lost:
            return
        self._wire.unregisterProducer()
        if isinstance(outcome, Failure):
            self.abort()
        elif chunked:
            self._wire.write(b"0\r\n\r\n")

    def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            if not self._lost:
                self._wire.unregisterProducer()
            try:
                producer.stopProducing()
            except Exception:
                # The request is over either way; the body's producer
                # failing to stop is its own bug, reported here.
                _log.failure("stopping a request body's producer")

    def abort(self) -> None:
        """
        Drop the connection (it is not reused).
        """
        self._aborted = True
        if not self._lost:
            self._wire.abortConnection()

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
        raw = self._raw_headers
        pairs, content_length, chunked, via = split_response_head(raw)
        # llhttp checked Content-Length (and that it does not conflict).
        length: int | str = UNKNOWN_LENGTH if content_length is None else content_length
        if self._is_head or code == 204 or code == 304:
            length = 0
        elif chunked:
            length = UNKNOWN_LENGTH
        elif content_length is None:
            self._until_close = True
        self._keep_alive = parser.should_keep_alive()
        self._raw_headers = []
        self._response = response = _NEW(UpstreamResponse)  # (UpstreamResponse(...): see lean.py's send)
        response.__init__(self, code, self._phrase.strip(),  # type: ignore[misc]
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
        parser = self._parser
        complete = self._complete  # (a local: the parser's callbacks change the attribute)
        if parser is None or complete:
            self.abort()  # nothing was asked: an idle connection talking
            return
        if self._response is None:
            self._head_bytes += len(data)
            try:
                if self._is_head:
                    self._feed_head(data)
                else:
                    parser.feed_data(data)
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
                handover[0].got_head(handover[1])
            return
        try:
            parser.feed_data(data)
        except Exception:
            self._parse_failed(Failure())
        else:
            if self._complete:
                self._done_message()

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
        parser, self._parser = self._parser, None
        reusable = (self._keep_alive and not self._dirty and self._producer is None and not self._aborted
                    and not self._lost)
        if reusable:
            if not self._is_head:
                # (after a HEAD, llhttp would read the body its head announces)
                self._spare_parser = parser
        else:
            self._stop_producer()
        if self._paused:
            self._paused = False
            self._wire.resumeProducing()
        if response is not None:
            if response._held:
                response._held = False
                self._wire.resumeProducing()
            response._conn = None
        if reusable:
            self._client._release(self)
        else:
            self._wire.loseConnection()
        if response is not None:
            response._finished(DONE)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._client._forget(self)
        self._stop_producer()
        exchange, self._exchange = self._exchange, None
        response, self._response = self._response, None
        self._parser = self._spare_parser = None
        if exchange is not None:
            stale = self._reused and not self._head_bytes
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

    def close(self) -> None:
        """
        Close the connection once what it wrote is sent.
        """
        self._wire.loseConnection()

    def close_idle(self) -> Deferred[None]:
        """
        Close the connection (an idle one).

        @return: A Deferred that fires once it is closed.
        """
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self._wire.loseConnection()
        return d


__all__ = ["HTTP11Connection", "ConnectionOwner", "ConnectionExchange", "MAX_HEAD_BYTES", "MAX_HEADERS"]
