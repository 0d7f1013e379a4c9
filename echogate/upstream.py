"""
Talking to services: the upstream request's headers, and a client that
sends it through one shared persistent connection pool with the service's
timeouts and retries.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from echogate._version import __version__
from echogate.errors import BAD_UPSTREAM, UPSTREAM_TIMEOUT, ProxyError
from echogate.messages import headers_of

VIA = f"1.1 echogate/{__version__}".encode()

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    )
)

#: Response header names that do not go on to the client as they are: the
#: hop-by-hop ones, and Content-Length (the body's length travels apart).
NOT_END_TO_END = HOP_BY_HOP | {b"content-length"}

_REPLACED_UP = frozenset(
    (b"x-real-ip", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
     b"x-forwarded-path", b"x-forwarded-prefix")
)


def listed_names(values: Iterable[bytes]) -> set[bytes]:
    """
    The header names a Connection header's values list (lower case).
    """
    tokens: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return tokens


def connection_tokens(headers: Headers) -> set[bytes]:
    """
    The header names listed in the Connection header (lower case).
    """
    values = headers.getRawHeaders(b"connection")
    return listed_names(values) if values else set()


def copy_end_to_end(source: Headers, skip: frozenset[bytes] | set[bytes] = HOP_BY_HOP) -> Headers:
    """
    A copy of C{source} without hop-by-hop headers (and the names its
    Connection header lists) and without C{skip}.
    """
    listed = connection_tokens(source)
    out = Headers()
    for name, values in source.getAllRawHeaders():
        lower = name.lower()
        if lower in skip or lower in listed:
            continue
        out.setRawHeaders(name, list(values))
    return out


class TrustedNetworks:
    """
    The peers whose X-Forwarded-* headers echogate believes
    (the C{trusted_ips} setting).
    """

    def __init__(self, networks: Iterable[str] = ()):
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._all = any(n.prefixlen == 0 for n in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        if self._all:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self._networks)


def host_header(service: dict) -> bytes:
    """
    The Host header for C{service}: its host, plus C{:port} when the port
    is not the scheme's default.
    """
    host = service["host"]
    port = service.get("port")
    scheme = service.get("protocol") or "http"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or (scheme == "http" and port == 80) or (scheme == "https" and port == 443):
        return host.encode("idna") if not host.isascii() else host.encode()
    return f"{host}:{port}".encode()


# Request headers the gateway writes itself, replacing the client's.
_SET_UP = frozenset((b"host", b"x-real-ip", b"x-forwarded-for", b"via"))
_DROPPED_UP = HOP_BY_HOP | {b"content-length"} | _SET_UP
_DROPPED_UP_UNTRUSTED = _DROPPED_UP | _REPLACED_UP


def _one_line(value: bytes) -> bytes:
    # Values the gateway computes must not break the head (the client's own
    # values come from Twisted's parser, which cannot yield a line break).
    if b"\r" in value or b"\n" in value:
        return b" ".join(value.splitlines())
    return value


def upstream_headers(
    request_headers: Headers,
    *,
    service: dict,
    preserve_host: bool,
    client_ip: str,
    peer_trusted: bool,
    scheme: str,
    listener_port: int,
    path: str,
    stripped: str,
) -> list[tuple[bytes, bytes]]:
    """
    The header lines sent upstream, as Kong sends them: the client's
    end-to-end headers (in order, repeated ones kept), Host per
    C{preserve_host}, X-Real-IP, X-Forwarded-*, Via.

    @return: C{(name, value)} pairs, ready for the wire.
    """
    connection = request_headers.getRawHeaders(b"connection")
    listed = listed_names(connection) if connection else ()
    incoming_host = forwarded_for = via = None
    skip = _DROPPED_UP if peer_trusted else _DROPPED_UP_UNTRUSTED
    pairs: list[tuple[bytes, bytes]] = []
    append = pairs.append
    # The X-Forwarded-* a trusted peer sent stand; from another peer they
    # are dropped (in skip), so there is nothing to remember.
    kept: set[bytes] | frozenset[bytes] = set() if peer_trusted else frozenset()
    for name, values in request_headers.getAllRawHeaders():
        lower = name.lower()
        if lower in skip or lower in listed:
            # Host, X-Forwarded-For and Via are always in skip: rewritten.
            if lower == b"host":
                incoming_host = values
            elif lower == b"x-forwarded-for":
                forwarded_for = values
            elif lower == b"via":
                via = values
            continue
        if peer_trusted:
            kept.add(lower)  # type: ignore[union-attr]
        for value in values:
            append((name, value))
    if preserve_host and incoming_host:
        append((b"Host", incoming_host[0]))
    else:
        append((b"Host", host_header(service)))
    # The client's address is the peer's or a parsed header's value, and
    # the path comes from the request line (Twisted splits it on
    # whitespace): neither can hold a line break.
    ip = client_ip.encode("latin-1")
    append((b"X-Real-IP", ip))
    append((b"X-Forwarded-For", b", ".join(forwarded_for) + b", " + ip if forwarded_for else ip))
    # From a trusted peer, the X-Forwarded-* it sent stand (they were kept).
    if b"x-forwarded-proto" not in kept:
        append((b"X-Forwarded-Proto", scheme.encode("ascii")))
    if incoming_host and b"x-forwarded-host" not in kept:
        raw = incoming_host[0]
        append((b"X-Forwarded-Host", raw[: raw.index(b"]") + 1] if raw.startswith(b"[") else raw.split(b":", 1)[0]))
    if b"x-forwarded-port" not in kept:
        append((b"X-Forwarded-Port", b"%d" % listener_port))
    if b"x-forwarded-path" not in kept:
        append((b"X-Forwarded-Path", path.encode("latin-1")))
    if stripped and stripped != "/" and b"x-forwarded-prefix" not in kept:
        append((b"X-Forwarded-Prefix", _one_line(stripped.rstrip("/").encode("latin-1")) or b"/"))
    append((b"Via", b", ".join(via) + b", " + VIA if via else VIA))
    return pairs


@implementer(IAgentEndpointFactory)
class _FixedEndpoint:
    def __init__(self, endpoint: Any):
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> Any:
        return self._endpoint


def client_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    A client endpoint for C{host}: a plain TCP endpoint for an IP address
    (no name resolution at all), a L{HostnameEndpoint} for a name.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, str(address), port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, str(address), port, timeout=timeout)


def is_connect_failure(failure_value: BaseException) -> bool:
    """
    Whether an attempt failed before a connection existed (so it may be
    retried on another).
    """
    return isinstance(failure_value, (ierror.ConnectError, ierror.TimeoutError, ierror.ConnectingCancelledError))


def failure_answer(value: BaseException, timed_out: bool) -> ProxyError:
    """
    What the client gets when a request to a service failed for good: 504
    when it ran out of time (the deadline, a connect timeout, a cancelled
    connection attempt), else 502.
    """
    if timed_out or isinstance(value, (ierror.TimeoutError, ierror.ConnectingCancelledError, CancelledError)):
        return ProxyError(504, UPSTREAM_TIMEOUT)
    return ProxyError(502, BAD_UPSTREAM)


def send_with_request(client: Any, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
                      callback: Any, errback: Any, args: tuple = ()) -> Deferred:
    """
    C{send} (see L{echogate.httpclient.LeanUpstreamClient.send}) for a
    client that has only C{request}: its Deferred is the handle (it has
    C{cancel()} and C{called}).
    """
    result = client.request(service, method, target, headers, body)
    result.addCallbacks(callback, errback, args, None, args)
    return result


class _Exchange:
    """
    One request to a service: its attempts (connection failures retried up
    to C{retries}), each bounded by C{deadline} seconds up to the response
    head. C{result} fires with the response or fails with L{ProxyError};
    cancelling it aborts the attempt in flight.
    """

    __slots__ = ("_reactor", "_agent", "_method", "_uri", "_headers", "_body", "_retries", "_deadline",
                 "result", "_current", "_timed_out", "_attempts")

    def __init__(self, reactor: Any, agent: Agent, method: bytes, uri: bytes, headers: Headers,
                 body: Any, retries: int, deadline: float):
        self._reactor = reactor
        self._agent = agent
        self._method = method
        self._uri = uri
        self._headers = headers
        self._body = body
        self._retries = retries
        self._deadline = deadline
        self._current: Deferred | None = None
        self._timed_out = False
        self._attempts = 0
        self.result: Deferred = Deferred(self._cancel)
        self._send()

    def _cancel(self, _: Deferred) -> None:
        if self._current is not None:
            self._current.cancel()

    def _send(self) -> None:
        producer = self._body.producer() if self._body is not None else None
        d = self._current = self._agent.request(self._method, self._uri, self._headers, producer)
        timer = self._reactor.callLater(self._deadline, self._timeout, d)
        d.addBoth(self._done, timer)

    def _timeout(self, d: Deferred) -> None:
        self._timed_out = True
        d.cancel()

    def _done(self, outcome: Any, timer: Any) -> None:
        if timer.active():
            timer.cancel()
        result = self.result
        if result.called:
            return
        if not isinstance(outcome, Failure):
            result.callback(outcome)
            return
        value = outcome.value
        if isinstance(value, CancelledError) and not self._timed_out:
            return  # the caller cancelled
        if is_connect_failure(value) and self._attempts < self._retries:
            self._attempts += 1
            self._send()
            return
        result.errback(failure_answer(value, self._timed_out))


class UpstreamClient:
    """
    Sends requests to services through one persistent
    L{HTTPConnectionPool}, with one cached endpoint (and L{Agent}) per
    (scheme, host, port, connect timeout), so no request builds an
    endpoint or encodes a hostname.
    """

    def __init__(self, reactor: Any, pool: HTTPConnectionPool | None = None,
                 max_per_host: int = 1000, idle_timeout: float = 60.0):
        self._reactor = reactor
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=max_per_host > 0)
            pool.maxPersistentPerHost = max(max_per_host, 1)
            pool.cachedConnectionTimeout = idle_timeout
            pool.retryAutomatically = True
        self.pool = pool
        self._agents: dict[tuple, tuple[Agent, bytes]] = {}

    def _agent(self, scheme: str, host: str, port: int, connect_timeout: float) -> tuple[Agent, bytes]:
        """
        The agent for this upstream address, and its origin
        (C{b"http://host:port"}), both made once.
        """
        key = (scheme, host, port, connect_timeout)
        cached = self._agents.get(key)
        if cached is None:
            endpoint = client_endpoint(self._reactor, host, port, connect_timeout)
            if scheme == "https":
                from twisted.internet.ssl import CertificateOptions

                endpoint = wrapClientTLS(CertificateOptions(verify=False), endpoint)
            agent = Agent.usingEndpointFactory(self._reactor, _FixedEndpoint(endpoint), pool=self.pool)
            hostport = host if ":" not in host else f"[{host}]"
            cached = self._agents[key] = (agent, f"{scheme}://{hostport}:{port}".encode())
        return cached

    def request(
        self,
        service: dict,
        method: bytes,
        target: bytes,
        headers: Headers | list[tuple[bytes, bytes]],
        body: Any = None,
    ) -> Deferred:
        """
        Send one request to C{service}, retrying connection failures up to
        the service's C{retries}. C{target} is the path and query;
        C{headers} a L{Headers} or C{(name, value)} pairs; C{body}
        (an L{echogate.streaming.RequestBody} or C{None}) makes a fresh
        producer for each attempt. The whole exchange up to the response headers is
        bounded by the service's write and read timeouts.

        @return: a Deferred firing with the L{twisted.web.iweb.IResponse},
            or failing with L{ProxyError} (502 or 504); cancelling it
            aborts the upstream request.
        """
        if not isinstance(headers, Headers):
            headers = headers_of(headers)
        scheme = service.get("protocol") or "http"
        port = service.get("port") or (443 if scheme == "https" else 80)
        agent, origin = self._agent(scheme, service["host"], port, service.get("connect_timeout", 60000) / 1000.0)
        deadline = (service.get("read_timeout", 60000)
                    + (service.get("write_timeout", 60000) if body is not None else 0)) / 1000.0
        return _Exchange(self._reactor, agent, method, origin + target, headers, body,
                         service.get("retries", 5), deadline).result

    def close(self) -> Deferred:
        """
        Close every idle pooled connection.
        """
        return self.pool.closeCachedConnections()


__all__ = [
    "HOP_BY_HOP",
    "TrustedNetworks",
    "UpstreamClient",
    "copy_end_to_end",
    "upstream_headers",
    "ResponseFailed",
]
