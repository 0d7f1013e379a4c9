"""
A lean, strict HTTP/1.1 client for services: persistent connections per
(host, port), requests written in one go, responses parsed by
C{httptools} (llhttp), the same retries, deadlines and errors as
L{echogate.upstream.UpstreamClient}, whose https requests it delegates.
"""
from __future__ import annotations

from typing import Any

import httptools
from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from echogate.errors import BAD_UPSTREAM, UPSTREAM_TIMEOUT, ProxyError
from echogate.upstream import HOP_BY_HOP, UpstreamClient, _endpoint, _is_connect_failure, _tokens

#: Methods whose request may be sent again after a kept-alive connection
#: turned out to be closed before answering.
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"))

#: Response head limits (status line and headers): bytes, header lines.
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 100

#: Body bytes held before C{deliverBody} is called; beyond this, the
#: connection is paused.
BUFFER_LIMIT = 65536

# Kept out of the response's headers: they describe the connection (the
# body's length is C{response.length}), or are hop-by-hop (with the names
# the Connection header lists), so C{headers} is what goes on to the client.
_CONNECTION_CONTROL = HOP_BY_HOP | {b"content-length", b"connection"}
# Connection header values that name no end-to-end header.
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close"))
_NEEDS_LENGTH = frozenset((b"POST", b"PUT", b"PATCH"))


#: The end of every complete body: one shared Failure (it carries no
#: traceback, and its readers only check it), not one per response.
_DONE = Failure(ResponseDone())


class _HeadTooLarge(Exception):
    """
    The response head has more header lines than L{MAX_HEADERS}.
    """


class _Response:
    """
    An L{twisted.web.iweb.IResponse}-like upstream response; it is also the
    transport of the body's protocol (pause, resume and stop reach the
    upstream connection while the body is being read).
    """

    __slots__ = ("code", "phrase", "version", "headers", "raw_headers", "length", "request", "previousResponse",
                 "_conn", "_protocol", "_buffer", "_buffered", "_end", "_held", "_stopped")

    def __init__(self, conn: "_Connection", code: int, phrase: bytes, minor: int, headers: Headers,
                 length: Any, raw_headers: list[tuple[bytes, bytes]] | None = None):
        self.code = code
        self.phrase = phrase
        self.version = (b"HTTP", 1, minor)
        #: The end-to-end headers (no hop-by-hop or framing ones): a fresh
        #: object the caller may change and pass on.
        self.headers = headers
        #: Every header line as the upstream sent it.
        self.raw_headers = raw_headers if raw_headers is not None else []
        self.length = length
        self.request = None
        self.previousResponse = None
        self._conn: _Connection | None = conn
        self._protocol: Any = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._end: Failure | None = None
        self._held = False  # paused by us, for want of a protocol
        self._stopped = False

    @property
    def _transport(self) -> "_Response":
        return self

    def deliverBody(self, protocol: Any) -> None:
        """
        Give the body to C{protocol}: what already arrived at once, the rest
        as it comes, then C{connectionLost} with L{ResponseDone},
        L{PotentialDataLoss} (close-delimited) or another failure.
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
        if self._protocol is not None:
            self._protocol.connectionLost(reason)
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


class _Connection(Protocol):
    """
    One persistent upstream connection: writes one request at a time and
    parses its response with L{httptools.HttpResponseParser}.
    """

    def __init__(self, client: "LeanUpstreamClient", key: tuple):
        self._client = client
        self._key = key
        self._exchange: _Exchange | None = None
        self._response: _Response | None = None
        self._parser: Any = None
        self._producer: Any = None
        self._paused = False
        self._lost = False
        self._aborted = False
        self.idle_since = 0.0
        self._waiters: list[Deferred] = []
        self._head_for: _Exchange | None = None
        self._head_response: _Response | None = None

    # -- one request ----------------------------------------------------------

    def start(self, exchange: "_Exchange", reused: bool) -> None:
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
        self._parser = httptools.HttpResponseParser(self)
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
        headers = Headers()
        add = headers.addRawHeader
        length: Any = UNKNOWN_LENGTH
        chunked = False
        listed: Any = ()
        raw = self._raw_headers
        for name, value in raw:
            lower = name.lower()
            if lower in _CONNECTION_CONTROL:
                if lower == b"content-length":
                    length = int(value)  # llhttp checked it (and that it does not conflict)
                elif lower == b"transfer-encoding":
                    chunked = True
                elif lower == b"connection" and value.lower() not in _PLAIN_CONNECTION:
                    listed = _tokens(value for n, value in raw if n.lower() == b"connection")
                continue
            add(name, value)
        if listed:
            for name in listed:
                headers.removeHeader(name)
        if self._is_head or code == 204 or code == 304:
            length = 0
        elif chunked:
            length = UNKNOWN_LENGTH
        elif length is UNKNOWN_LENGTH:
            self._until_close = True
        self._keep_alive = parser.should_keep_alive()
        self._raw_headers = []
        self._response = response = _Response(self, code, self._phrase.strip(),
                                              0 if parser.get_http_version() == "1.0" else 1, headers, length, raw)
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            # Handed over once this read is parsed (see dataReceived): a
            # small answer's body and end are then already there.
            self._head_for = exchange
            self._head_response = response
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
        exchange = self._head_for
        if exchange is not None:
            self._head_for = None
            exchange.got_head(self._head_response)
        self._head_response = None

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
            response._finished(_DONE)

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


class _OneConnection(Factory):
    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, conn: _Connection):
        self._conn = conn

    def buildProtocol(self, addr: Any) -> _Connection:
        return self._conn


class _Exchange:
    """
    One request to a service, as L{echogate.upstream._Exchange}: connection
    failures retried up to C{retries}, each attempt bounded by C{deadline}
    seconds up to the response head, a stale kept-alive connection retried
    once for an idempotent method; C{result} fires with the response or
    fails with L{ProxyError} (502, or 504 on timeouts).
    """

    __slots__ = ("_client", "_key", "_endpoint", "method", "target", "headers", "body", "_retries",
                 "_deadline", "result", "_attempts", "_timer", "_timed_out", "_connecting", "_conn",
                 "_stale_retried", "_cancelled")

    def __init__(self, client: "LeanUpstreamClient", key: tuple, endpoint: Any, method: bytes,
                 target: bytes, headers: Headers, body: Any, retries: int, deadline: float):
        self._client = client
        self._key = key
        self._endpoint = endpoint
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self._retries = retries
        self._deadline = deadline
        self._attempts = 0
        self._timer: Any = None
        self._timed_out = False
        self._connecting: Deferred | None = None
        self._conn: _Connection | None = None
        self._stale_retried = False
        self._cancelled = False
        self.result: Deferred = Deferred(self._cancel)
        self._send(reuse=True)

    def _send(self, reuse: bool) -> None:
        self._timer = self._client._reactor.callLater(self._deadline, self._timeout)
        conn = self._client._take(self._key) if reuse else None
        if conn is not None:
            self._conn = conn
            conn.start(self, reused=True)
            return
        conn = _Connection(self._client, self._key)
        d = self._connecting = self._endpoint.connect(_OneConnection(conn))
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, conn: _Connection) -> None:
        self._connecting = None
        self._conn = conn
        conn.start(self, reused=False)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self._failed(failure.value)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.abandon()
            self._failed(ierror.TimeoutError(), retry=False)

    def _cancel(self, _: Deferred) -> None:
        self._cancelled = True
        self._stop_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.abandon()

    def got_head(self, response: _Response) -> None:
        self._stop_timer()
        self._conn = None
        self.result.callback(response)

    def lost(self, failure: Failure, stale: bool) -> None:
        """
        The connection closed (or sent garbage) before the response head.
        """
        self._conn = None
        if stale and not self._stale_retried and self.method in IDEMPOTENT and not self.result.called:
            self._stale_retried = True
            self._stop_timer()
            self._send(reuse=False)
            return
        self._failed(failure.value if isinstance(failure, Failure) else failure, retry=False)

    def _failed(self, value: BaseException, retry: bool = True) -> None:
        self._stop_timer()
        result = self.result
        if result.called or self._cancelled:
            return
        if retry and _is_connect_failure(value) and self._attempts < self._retries:
            self._attempts += 1
            self._timed_out = False
            self._send(reuse=True)
            return
        if self._timed_out or isinstance(value, (ierror.TimeoutError, ierror.ConnectingCancelledError)):
            result.errback(ProxyError(504, UPSTREAM_TIMEOUT))
        elif isinstance(value, CancelledError):
            result.errback(ProxyError(504, UPSTREAM_TIMEOUT))
        else:
            result.errback(ProxyError(502, BAD_UPSTREAM))


class LeanUpstreamClient:
    """
    Sends requests to services over its own persistent HTTP/1.1
    connections (at most C{max_idle_per_host} idle ones per (host, port),
    each closed after C{idle_timeout} seconds unused). https services go
    through an L{UpstreamClient}.
    """

    def __init__(self, reactor: Any, *, max_idle_per_host: int = 100, idle_timeout: float = 60.0):
        self._reactor = reactor
        self._max_idle = max_idle_per_host
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple, list[_Connection]] = {}
        self._sweep_call: Any = None
        self._endpoints: dict[tuple, Any] = {}
        self._tls: UpstreamClient | None = None

    def request(self, service: dict, method: bytes, target: bytes, headers: Headers | list[tuple[bytes, bytes]],
                body: Any = None) -> Deferred:
        """
        Send one request to C{service}, as L{UpstreamClient.request}
        (C{headers}: a L{Headers} or C{(name, value)} pairs).

        @return: a Deferred firing with the response, or failing with
            L{ProxyError} (502 or 504); cancelling it aborts the request.
        """
        scheme = service.get("protocol") or "http"
        if scheme == "https":
            if self._tls is None:
                self._tls = UpstreamClient(self._reactor, max_per_host=self._max_idle, idle_timeout=self._idle_timeout)
            return self._tls.request(service, method, target, headers, body)
        host = service["host"]
        port = service.get("port") or 80
        connect_timeout = service.get("connect_timeout", 60000) / 1000.0
        key = (host, port)
        endpoint = self._endpoints.get((host, port, connect_timeout))
        if endpoint is None:
            endpoint = self._endpoints[(host, port, connect_timeout)] = _endpoint(
                self._reactor, host, port, connect_timeout)
        deadline = (service.get("read_timeout", 60000)
                    + (service.get("write_timeout", 60000) if body is not None else 0)) / 1000.0
        return _Exchange(self, key, endpoint, method, target, headers, body,
                         service.get("retries", 5), deadline).result

    def _take(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn._lost:
                return conn
        return None

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.get(conn._key)
        if idle is None:
            idle = self._idle[conn._key] = []
        if len(idle) >= self._max_idle:
            conn.transport.loseConnection()
            return
        # Idle connections are timed by one sweep, not a timer each: a
        # timer set and cancelled per request costs more than the sweep.
        conn.idle_since = self._reactor.seconds()
        idle.append(conn)
        if self._sweep_call is None:
            self._sweep_call = self._reactor.callLater(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """
        Close the connections idle for C{idle_timeout} seconds; come back
        when the next one will be.
        """
        self._sweep_call = None
        now = self._reactor.seconds()
        oldest = None
        for idle in self._idle.values():
            # The list is in release order: the expired ones are in front.
            expired = 0
            for conn in idle:
                if now - conn.idle_since < self._idle_timeout:
                    break
                expired += 1
            for conn in idle[:expired]:
                conn.transport.loseConnection()
            del idle[:expired]
            if idle and (oldest is None or idle[0].idle_since < oldest):
                oldest = idle[0].idle_since
        if oldest is not None:
            self._sweep_call = self._reactor.callLater(max(0.0, oldest + self._idle_timeout - now), self._sweep)

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn._key)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle and self._sweep_call is not None and not any(self._idle.values()):
                self._sweep_call.cancel()
                self._sweep_call = None

    def idle_count(self, host: str, port: int) -> int:
        """
        How many idle connections to C{host}:C{port} are kept.
        """
        return len(self._idle.get((host, port), ()))

    def close(self) -> Deferred:
        """
        Close every idle connection; fires when they are all closed.
        """
        if self._sweep_call is not None:
            self._sweep_call.cancel()
            self._sweep_call = None
        waiting = []
        for idle in list(self._idle.values()):
            for conn in list(idle):
                waiting.append(conn.close_idle())
        self._idle.clear()
        if self._tls is not None:
            waiting.append(self._tls.close())
        return DeferredList(waiting).addCallback(lambda _: None)


__all__ = ["LeanUpstreamClient", "IDEMPOTENT", "MAX_HEAD_BYTES", "MAX_HEADERS"]
