"""
A lean, strict HTTP/1.1 client for services: persistent connections per
(host, port), requests written in one go, responses parsed by
C{httptools} (llhttp), the same retries, deadlines and errors as
L{echogate.upstream.agent.UpstreamClient}, whose https requests it delegates.
This module keeps the pool, retries and deadlines; one connection's wire
protocol is L{echogate.upstream.connection}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.batching import WriteBatcher
from echogate.interfaces import IUpstreamClient
from echogate.upstream.agent import UpstreamClient
from echogate.upstream.connection import HTTP11Connection
from echogate.upstream.deadlines import Deadline, DeadlineQueue
from echogate.upstream.endpoints import DirectAttempt, DirectEndpoint, direct_endpoint
from echogate.upstream.failures import failure_answer, is_connect_failure
from echogate.upstream.h1request import RequestBody
from echogate.upstream.response import UpstreamResponse

#: Methods whose request may be sent again after a kept-alive connection
#: turned out to be closed before answering.
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"))
_log = Logger(namespace="echogate.upstream")
_NEW = object.__new__


class OneConnection(Factory):
    """
    Builds one given connection (for an endpoint's C{connect}).
    """

    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, conn: HTTP11Connection):
        self._conn = conn

    def buildProtocol(self, addr: Any) -> HTTP11Connection:
        return self._conn


class _Exchange:
    """
    One request to a service, as L{echogate.upstream.agent._Exchange}: connection
    failures retried up to C{retries}, each attempt bounded by C{deadline}
    seconds up to the response head, a stale kept-alive connection retried
    once for an idempotent method. Exactly one of C{callback(response,
    *args)} or C{errback(failure, *args)} (a L{echogate.errors.ProxyError}: 502, or 504 on
    timeouts) is called, unless it is cancelled first; C{called} says
    whether it was.
    """

    __slots__ = ("_client", "_key", "_endpoint", "method", "target", "headers", "body", "_retries",
                 "_deadline", "_callback", "_errback", "_args", "called", "_attempts", "_timer", "_timed_out",
                 "_connecting", "_conn", "_stale_retried", "_cancelled")

    def __init__(self, client: LeanUpstreamClient, key: tuple[Any, ...], endpoint: Any, method: bytes,
                 target: bytes, headers: Headers | list[tuple[bytes, bytes]], body: RequestBody | None,
                 retries: int, deadline: float, callback: Any, errback: Any, args: tuple[Any, ...]):
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
        self._timer: Deadline | None = None
        self._timed_out = False
        # The connection attempt: an endpoint's Deferred, or a DirectAttempt.
        self._connecting: Deferred[HTTP11Connection] | DirectAttempt | None = None
        self._conn: HTTP11Connection | None = None
        self._stale_retried = False
        self._cancelled = False
        self._callback = callback
        self._errback = errback
        self._args = args
        self.called = False
        self._send(True)

    def _send(self, reuse: bool) -> None:
        client = self._client
        self._timer = client._deadlines.add(self._deadline, self._timeout)
        if reuse:
            idle = client._idle.get(self._key)
            while idle:
                conn = idle.pop()
                conn.idle_since = None
                if not conn._lost:
                    self._conn = conn
                    conn.start(self, True)
                    return
        conn = HTTP11Connection(client, self._key)
        endpoint = self._endpoint
        if type(endpoint) is DirectEndpoint:
            # (the connection is the transport's protocol: no wrapper
            # protocol on every read, as an endpoint's connect would put)
            attempt = self._connecting = DirectAttempt(conn, self._connected, self._connect_failed)
            endpoint.start(attempt)
            return
        d = self._connecting = endpoint.connect(OneConnection(conn))
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, conn: HTTP11Connection) -> None:
        self._connecting = None
        self._conn = conn
        conn.start(self, False)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self._failed(failure.value)

    def _stop_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _timeout(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.abandon()
            self._failed(ierror.TimeoutError(), retry=False)

    def cancel(self) -> None:
        """
        Give the request up: abort its connection (or connection attempt);
        neither callback is called.
        """
        if self.called or self._cancelled:
            return
        self._cancelled = True
        self._stop_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.abandon()

    def got_head(self, response: UpstreamResponse) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        self._conn = None
        self.called = True
        args = self._args
        try:
            if args:
                self._callback(response, *args)
            else:
                self._callback(response)  # (a call without * is made from Python, not from C)
        except BaseException:
            _log.failure("delivering an upstream response")

    def lost(self, failure: Failure, stale: bool) -> None:
        """
        The connection closed (or sent garbage) before the response head.
        """
        self._conn = None
        # (never when bytes of a streamed body were sent: it is not replayed)
        if stale and not self._stale_retried and self.method in IDEMPOTENT and not self.called \
                and not getattr(self.body, "sent", 0):
            self._stale_retried = True
            self._stop_timer()
            self._send(reuse=False)
            return
        self._failed(failure.value if isinstance(failure, Failure) else failure, retry=False)

    def _failed(self, value: BaseException | None, retry: bool = True) -> None:
        self._stop_timer()
        if self.called or self._cancelled:
            return
        if retry and is_connect_failure(value) and self._attempts < self._retries:
            self._attempts += 1
            self._timed_out = False
            self._send(reuse=True)
            return
        self.called = True
        try:
            self._errback(Failure(failure_answer(value, self._timed_out)), *self._args)
        except BaseException:
            _log.failure("delivering an upstream failure")


@implementer(IUpstreamClient)
class LeanUpstreamClient:
    """
    Sends requests to services over its own persistent HTTP/1.1
    connections (at most C{max_idle_per_host} idle ones per (host, port),
    each closed after C{idle_timeout} seconds unused). https services go
    through an L{UpstreamClient} (made with C{tls_verify}: whether a
    service whose TLS policy leaves it open is verified, the
    C{upstream_tls_verify} setting). The requests' deadlines share one
    L{DeadlineQueue}.
    """

    def __init__(self, reactor: Any, *, max_idle_per_host: int = 1000, idle_timeout: float = 60.0,
                 write_batcher: WriteBatcher | None = None, tls_verify: bool = True):
        self._reactor = reactor
        self._tls_verify = tls_verify
        self._max_idle = max_idle_per_host
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple[Any, ...], list[HTTP11Connection]] = {}
        self._sweep_call: IDelayedCall | None = None
        self._deadlines = DeadlineQueue(reactor)
        self._endpoints: dict[tuple[Any, ...], Any] = {}
        self._tls: UpstreamClient | None = None
        #: Batches the connections' writes (L{echogate.batching}); a node
        #: shares one with its listener site: one flush per iteration.
        self.write_batcher = write_batcher or WriteBatcher(reactor)

    def request(self, service: dict[str, Any], method: bytes, target: bytes,
                headers: Headers | list[tuple[bytes, bytes]], body: RequestBody | None = None) -> Deferred[Any]:
        """
        Send one request to C{service}, as L{UpstreamClient.request}
        (C{headers}: a L{Headers} or C{(name, value)} pairs).

        @return: a Deferred firing with the response, or failing with
            L{echogate.errors.ProxyError} (502 or 504); cancelling it aborts
            the request.
        """
        # (cancel only comes once this returned, so sent is set by then)
        result: Deferred[Any] = Deferred(lambda _: sent.cancel())
        sent = self.send(service, method, target, headers, body, result.callback, result.errback)
        return result

    def send(self, service: dict[str, Any], method: bytes, target: bytes,
             headers: Headers | list[tuple[bytes, bytes]], body: RequestBody | None, callback: Any, errback: Any,
             args: tuple[Any, ...] = ()) -> Any:
        """
        L{IUpstreamClient.send}: L{request} without a Deferred, for the
        gateway's data path: call C{callback(response, *args)} with the
        response (an L{echogate.interfaces.IUpstreamResponse}: an L{UpstreamResponse}, or for an
        https service an L{echogate.upstream.agent.AgentResponse}), or
        C{errback(failure, *args)} with a L{echogate.errors.ProxyError} failure (either may
        be called before this returns).

        @return: the request's handle: C{cancel()} aborts it (neither
            callback is then called), C{called} says whether one was.
        """
        if service.get("protocol") == "https":
            if self._tls is None:
                self._tls = UpstreamClient(self._reactor, max_per_host=self._max_idle, idle_timeout=self._idle_timeout,
                                           tls_verify=self._tls_verify)
            return self._tls.send(service, method, target, headers, body, callback, errback, args)
        host = service["host"]
        port = service.get("port") or 80
        connect_timeout = service.get("connect_timeout", 60000) / 1000.0
        key = (host, port)
        endpoint = self._endpoints.get((host, port, connect_timeout))
        if endpoint is None:
            endpoint = self._endpoints[(host, port, connect_timeout)] = direct_endpoint(
                self._reactor, host, port, connect_timeout)
        deadline = (service.get("read_timeout", 60000)
                    + (service.get("write_timeout", 60000) if body is not None else 0)) / 1000.0
        # (_Exchange(...), without type's call of __init__ from C: a
        # Python call of it costs less, and every request makes one)
        exchange = _NEW(_Exchange)
        exchange.__init__(self, key, endpoint, method, target, headers, body,  # type: ignore[misc]
                          service.get("retries", 5), deadline, callback, errback, args)
        return exchange

    def _release(self, conn: HTTP11Connection) -> None:
        idle = self._idle.get(conn._key)
        if idle is None:
            idle = self._idle[conn._key] = []
        if len(idle) >= self._max_idle:
            conn.close()
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
                since = conn.idle_since
                if since is not None and now - since < self._idle_timeout:
                    break
                expired += 1
            for conn in idle[:expired]:
                conn.idle_since = None
                conn.close()
            del idle[:expired]
            first = idle[0].idle_since if idle else None
            if first is not None and (oldest is None or first < oldest):
                oldest = first
        if oldest is not None:
            self._sweep_call = self._reactor.callLater(max(0.0, oldest + self._idle_timeout - now), self._sweep)

    def _forget(self, conn: HTTP11Connection) -> None:
        if conn.idle_since is None:
            return  # not in the pool: no need to look for it there
        conn.idle_since = None
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

    def close(self) -> Deferred[None]:
        """
        Close every idle connection; fires when they are all closed.
        Requests still waiting for their response head are no longer
        timed.
        """
        if self._sweep_call is not None:
            self._sweep_call.cancel()
            self._sweep_call = None
        self._deadlines.stop()
        waiting: list[Deferred[None]] = []
        for idle in list(self._idle.values()):
            for conn in list(idle):
                waiting.append(conn.close_idle())
        self._idle.clear()
        if self._tls is not None:
            waiting.append(self._tls.close())
        return DeferredList(waiting).addCallback(lambda _: None)


__all__ = ["LeanUpstreamClient", "IDEMPOTENT"]
