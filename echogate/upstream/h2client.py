"""
echogate's HTTP/2 client for gRPC services: protocol C{grpc} (h2c with
prior knowledge, plain TCP) and C{grpcs} (TLS with ALPN C{h2}, verified as
the service's L{echogate.upstream.tls.TLSPolicy} says, like the lean
client's https).

Made as::

    H2UpstreamClient(reactor, *, idle_timeout=60.0, tls_verify=True)

C{tls_verify} is whether a policy that leaves verification open verifies
(the C{upstream_tls_verify} setting), C{idle_timeout} how long a
connection without streams is kept. It provides
L{echogate.interfaces.IUpstreamClient}: C{send(service, method, target,
headers, body, on_response, on_failure, args)} and C{close()}.

A pool per (host, port, TLS connector) of connections
(L{echogate.upstream.h2connection}), each multiplexing streams up to the
service's C{MAX_CONCURRENT_STREAMS}; a new one when all are full. Each
call is bounded up to its response head by the service's
C{write_timeout} + C{read_timeout} (as the lean client), and as a whole
by its C{grpc-timeout} header when it has a valid one.
"""
from __future__ import annotations

from typing import Any, Callable

from h2.errors import ErrorCodes
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.interfaces import IUpstreamClient
from echogate.upstream.deadlines import Deadline, DeadlineQueue
from echogate.upstream.endpoints import client_endpoint
from echogate.upstream.failures import failure_answer, is_connect_failure
from echogate.upstream.h1request import RequestBody
from echogate.upstream.h2connection import H2ClientConnection
from echogate.upstream.h2request import OfferH2, h2_headers
from echogate.upstream.h2response import H2Response
from echogate.upstream.h2stream import H2Stream
from echogate.upstream.tls import TLSConnectors, TLSSetupError, host_of

_log = Logger(namespace="echogate.upstream")

class _OneConnection(Factory):
    noisy = False

    def __init__(self, conn: H2ClientConnection):
        self._conn = conn

    def buildProtocol(self, addr: Any) -> H2ClientConnection:
        return self._conn


class _Call:
    """
    One request to a service (the handle C{send} returns): placed on a
    connection, retried after connection failures (up to C{retries}) and
    after a stream the service refused (GOAWAY, REFUSED_STREAM), bounded
    up to its head by C{head_seconds} per attempt and as a whole by
    C{call_seconds}.
    """

    def __init__(self, client: H2UpstreamClient, key: tuple[Any, ...], endpoint: Any, method: bytes,
                 target: bytes, headers: list[tuple[bytes, bytes]], body: RequestBody | None, retries: int,
                 head_seconds: float, call_seconds: float | None, callback: Callable[..., object],
                 errback: Callable[..., object], args: tuple[Any, ...]):
        self._client = client
        #: The pool key (host, port, TLS key) and how to connect there.
        self.key = key
        self.endpoint = endpoint
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self._retries = retries
        self._head_seconds = head_seconds
        self._callback = callback
        self._errback = errback
        self._args = args
        self.called = False
        self._cancelled = False
        self._timed_out = False
        self._attempts = 0
        self._refused_once = False
        self.conn: H2ClientConnection | None = None
        self._stream: H2Stream | None = None
        self._response: H2Response | None = None
        self._head_timer: Deadline | None = None
        self._call_timer = None if call_seconds is None else client._deadlines.add(call_seconds, self._expired)
        self._send()

    def _send(self) -> None:
        seconds = self._head_seconds
        if self._call_timer is not None:
            seconds = min(seconds, max(0.0, self._call_timer.time - self._client._reactor.seconds()))
        self._head_timer = self._client._deadlines.add(seconds, self._expired)
        self._client.place(self)

    def started(self, stream: H2Stream) -> None:
        self._stream = stream

    def got_head(self, response: H2Response) -> None:
        self._stop(head_only=True)
        self._response = response
        self.called = True
        try:
            self._callback(response, *self._args)
        except BaseException:
            _log.failure("delivering an upstream response")

    def ended(self) -> None:
        self._stream = None
        self._stop()

    def lost(self, value: BaseException, refused: bool) -> None:
        self._stream = None
        self.conn = None
        if self.called or self._cancelled:
            return
        self._stop(head_only=True)
        if (refused and not self._refused_once) or (
                (refused or is_connect_failure(value)) and self._attempts < self._retries):
            if refused and not self._refused_once:
                self._refused_once = True
            else:
                self._attempts += 1
            self._timed_out = False
            self._send()
            return
        self._fail(value)

    def _fail(self, value: BaseException) -> None:
        self._stop()
        self.called = True
        try:
            self._errback(Failure(failure_answer(value, self._timed_out)), *self._args)
        except BaseException:
            _log.failure("delivering an upstream failure")

    def _stop(self, head_only: bool = False) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not head_only and self._call_timer is not None:
            self._call_timer.cancel()
            self._call_timer = None

    def _give_up(self) -> None:
        stream, self._stream = self._stream, None
        conn, self.conn = self.conn, None
        if stream is not None:
            stream.abandon()
        elif conn is not None:
            conn.withdraw(self)

    def _expired(self) -> None:
        """
        Out of time: before the head, a 504; after it, the body fails.
        """
        if self._cancelled:
            return
        if not self.called:
            self._timed_out = True
            self._give_up()
            self._fail(ierror.TimeoutError())
            return
        self._call_timer = None
        stream = self._response._stream if self._response is not None else None
        if isinstance(stream, H2Stream):
            stream.reset(ErrorCodes.CANCEL, ierror.TimeoutError("grpc-timeout"))

    def cancel(self) -> None:
        """
        Give the request up before its head: its stream is reset; neither
        callback is called.
        """
        if self.called or self._cancelled:
            return
        self._cancelled = True
        self._stop()
        self._give_up()


@implementer(IUpstreamClient)
class H2UpstreamClient:
    """
    Sends requests to gRPC services over pooled HTTP/2 connections (see
    the module's docstring).
    """

    def __init__(self, reactor: Any, *, idle_timeout: float = 60.0, tls_verify: bool = True):
        self._reactor = reactor
        self._idle_timeout = idle_timeout
        self.tls = TLSConnectors(default_verify=tls_verify)
        self._deadlines = DeadlineQueue(reactor)
        self._pool: dict[tuple[Any, ...], list[H2ClientConnection]] = {}
        self._endpoints: dict[tuple[Any, ...], Any] = {}
        self._sweep_call: IDelayedCall | None = None

    def send(self, service: dict[str, Any], method: bytes, target: bytes,
             headers: Headers | list[tuple[bytes, bytes]], body: RequestBody | None,
             on_response: Callable[..., object], on_failure: Callable[..., object],
             args: tuple[Any, ...] = ()) -> _Call | _Failed:
        """
        L{IUpstreamClient.send} for a C{grpc} or C{grpcs} service: the
        response is an L{H2Response}, a failure a
        L{echogate.errors.ProxyError} (502, or 504 out of time).
        """
        host = service["host"]
        tls = service.get("protocol") == "grpcs"
        port = service.get("port") or (443 if tls else 80)
        connect_timeout = service.get("connect_timeout", 60000) / 1000.0
        tls_key = None
        if tls:
            try:
                policy = self.tls.policy_of(service)
                tls_key, connector = self.tls.connector(
                    policy, policy.server_name or host_of(headers) or host.strip("[]"))
            except TLSSetupError as e:
                return _Failed(e, on_failure, args)
        key = (host, port, tls_key)
        endpoint_key = (key, connect_timeout)
        if endpoint_key not in self._endpoints:
            if len(self._endpoints) >= 4096:
                self._endpoints.clear()
            endpoint = client_endpoint(self._reactor, host, port, connect_timeout)
            if tls:
                endpoint = wrapClientTLS(OfferH2(connector), endpoint)
            self._endpoints[endpoint_key] = endpoint
        hostport = f"[{host}]" if ":" in host and not host.startswith("[") else host
        authority = (hostport.encode() if hostport.isascii() else hostport.encode("idna")) + b":%d" % port
        fields, call_seconds = h2_headers(method, target, headers, b"https" if tls else b"http", authority)
        head_seconds = (service.get("read_timeout", 60000)
                        + (service.get("write_timeout", 60000) if body is not None else 0)) / 1000.0
        return _Call(self, key, self._endpoints[endpoint_key], method, target, fields, body,
                     service.get("retries", 5), head_seconds, call_seconds, on_response, on_failure, args)

    def place(self, call: Any) -> None:
        """
        Put C{call} on a connection of its pool with room for a stream, or
        on a new one.
        """
        key = call.key
        conns = self._pool.setdefault(key, [])
        for conn in conns:
            if conn.room() > 0:
                call.conn = conn
                conn.submit(call)
                return
        conn = H2ClientConnection(self, key, tls=key[2] is not None)
        conns.append(conn)
        call.conn = conn
        conn.submit(call)
        d = conn.connecting = call.endpoint.connect(_OneConnection(conn))
        d.addCallbacks(self._connected, conn.connect_failed, errbackArgs=())

    @staticmethod
    def _connected(conn: H2ClientConnection) -> None:
        conn.connecting = None

    def forget(self, conn: H2ClientConnection) -> None:
        """
        C{conn} takes no new streams (closing, or gone).
        """
        conn.idle_since = None
        conns = self._pool.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._pool[conn.key]

    def now_idle(self, conn: H2ClientConnection) -> None:
        """
        C{conn} has no streams: closed if it stays so C{idle_timeout}.
        """
        conn.idle_since = self._reactor.seconds()
        if self._sweep_call is None:
            self._sweep_call = self._reactor.callLater(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        self._sweep_call = None
        now = self._reactor.seconds()
        oldest = None
        for conn in [c for conns in self._pool.values() for c in conns]:
            since = conn.idle_since
            if since is None:
                continue
            if now - since >= self._idle_timeout:
                conn.close()
            elif oldest is None or since < oldest:
                oldest = since
        if oldest is not None:
            self._sweep_call = self._reactor.callLater(max(0.0, oldest + self._idle_timeout - now), self._sweep)

    def connection_count(self, host: str, port: int) -> int:
        """
        How many pooled connections to C{host}:C{port} there are.
        """
        return sum(len(conns) for key, conns in self._pool.items() if key[:2] == (host, port))

    def close(self) -> Deferred[None]:
        """
        Close every idle connection (and those not yet made); fires once
        they are closed. Requests in flight are no longer timed.
        """
        if self._sweep_call is not None:
            self._sweep_call.cancel()
            self._sweep_call = None
        self._deadlines.stop()
        waiting = [conn.close() for conns in list(self._pool.values()) for conn in list(conns)
                   if conn.idle_since is not None or conn.transport is None]
        return DeferredList(waiting).addCallback(lambda _: None)


class _Failed:
    """
    The handle of a request refused at once (a TLS policy that cannot be
    used): its failure is delivered before C{send} returns.
    """

    def __init__(self, error: BaseException, on_failure: Callable[..., object], args: tuple[Any, ...]):
        self.called = True
        on_failure(Failure(failure_answer(error, False)), *args)

    def cancel(self) -> None:
        """
        Nothing: it is over.
        """


__all__ = ["H2UpstreamClient"]
