"""
The Agent-based upstream client: requests to services through Twisted's
L{Agent} and one shared persistent L{HTTPConnectionPool}, with the
service's timeouts and retries. (The lean client, L{echogate.upstream.lean},
is the default; it hands https requests to this one.)
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IProtocol, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer

from echogate.interfaces import IUpstreamClient, IUpstreamResponse
from echogate.pdk.messages import headers_of
from echogate.upstream.endpoints import client_endpoint
from echogate.upstream.failures import failure_answer, is_connect_failure
from echogate.upstream.h1request import RequestBody
from echogate.upstream.hop_by_hop import NOT_END_TO_END, copy_end_to_end
from echogate.upstream.tls import PolicyConnector, TLSConnectors, TLSSetupError, host_of

#: How many agents (addresses and TLS connectors) a client keeps before it
#: starts over.
_MAX_AGENTS = 4096


@implementer(IAgentEndpointFactory)
class _FixedEndpoint:
    def __init__(self, endpoint: Any):
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> Any:
        return self._endpoint


class _PoolShare:
    """
    The shared L{HTTPConnectionPool} as the agents of one TLS connector see
    it: Agent keys its connections by (scheme, host, port) only, so each
    key is extended by the connector's (policy, server name), and two
    services to one address with different TLS policies never share a
    connection.
    """

    __slots__ = ("_pool", "_extra")

    def __init__(self, pool: HTTPConnectionPool, extra: Any):
        self._pool = pool
        self._extra = extra

    @property
    def persistent(self) -> bool:
        """
        Whether the shared pool keeps connections.
        """
        return bool(self._pool.persistent)

    def getConnection(self, key: Any, endpoint: IStreamClientEndpoint) -> Deferred[Any]:
        """
        The shared pool's connection for C{key} and this connector.
        """
        return self._pool.getConnection((key, self._extra), endpoint)


@implementer(IUpstreamResponse)
class AgentResponse:
    """
    An L{IUpstreamResponse} over the L{twisted.web.iweb.IResponse} that
    L{Agent} delivers: its end-to-end headers computed once, when it
    arrives. Agent never has the whole body at hand with the head, so
    L{whole_body} is always C{None}.

    @ivar response: the Agent's response.
    """

    #: HTTP/1.1 responses carry no trailers (L{IUpstreamResponse.trailers}).
    trailers: list[tuple[bytes, bytes]] | None = None

    __slots__ = ("response", "code", "length", "raw_headers", "end_to_end", "via")

    def __init__(self, response: IResponse):
        self.response = response
        self.code: int = response.code
        length = response.length
        self.length: int | None = length if isinstance(length, int) else None
        #: Agent's L{Headers}: it has already set the connection's own
        #: headers (Connection, Keep-Alive, Transfer-Encoding,
        #: Content-Length, ...) apart; the other hop-by-hop ones are here.
        self.raw_headers: Headers = response.headers
        self.end_to_end: list[tuple[bytes, bytes]] = [
            (name, value)
            for name, values in copy_end_to_end(response.headers, NOT_END_TO_END).getAllRawHeaders()
            for value in values]
        self.via: bool = any(name.lower() == b"via" for name, _ in self.end_to_end)

    def whole_body(self) -> None:
        """
        Always C{None}: the body is read with L{deliverBody}.
        """
        return None

    def deliverBody(self, protocol: IProtocol) -> None:
        """
        Deliver the body to C{protocol}, as the Agent's response does.
        """
        self.response.deliverBody(protocol)


def _adapted(response: IResponse, callback: Callable[..., object], *args: Any) -> None:
    callback(AgentResponse(response), *args)


def _failed(failure: Failure, errback: Callable[..., object], *args: Any) -> None:
    if failure.check(CancelledError):
        return  # the caller cancelled: neither callback is called
    errback(failure, *args)


class _Exchange:
    """
    One request to a service: its attempts (connection failures retried up
    to C{retries}), each bounded by C{deadline} seconds up to the response
    head. C{result} fires with the response or fails with
    L{echogate.errors.ProxyError};
    cancelling it aborts the attempt in flight.
    """

    __slots__ = ("_reactor", "_agent", "_method", "_uri", "_headers", "_body", "_retries", "_deadline",
                 "result", "_current", "_timed_out", "_attempts")

    def __init__(self, reactor: Any, agent: Agent, method: bytes, uri: bytes, headers: Headers,
                 body: RequestBody | None, retries: int, deadline: float):
        self._reactor = reactor
        self._agent = agent
        self._method = method
        self._uri = uri
        self._headers = headers
        self._body = body
        self._retries = retries
        self._deadline = deadline
        self._current: Deferred[IResponse] | None = None
        self._timed_out = False
        self._attempts = 0
        self.result: Deferred[IResponse] = Deferred(self._cancel)
        self._send()

    def _cancel(self, _: Deferred[IResponse]) -> None:
        if self._current is not None:
            self._current.cancel()

    def _send(self) -> None:
        producer = self._body.producer() if self._body is not None else None
        d = self._current = self._agent.request(self._method, self._uri, self._headers, producer)
        timer = self._reactor.callLater(self._deadline, self._timeout, d)
        d.addBoth(self._done, timer)

    def _timeout(self, d: Deferred[IResponse]) -> None:
        self._timed_out = True
        d.cancel()

    def _done(self, outcome: IResponse | Failure, timer: IDelayedCall) -> None:
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


@implementer(IUpstreamClient)
class UpstreamClient:
    """
    Sends requests to services through one persistent
    L{HTTPConnectionPool}, with one cached endpoint (and L{Agent}) per
    (scheme, host, port, connect timeout, TLS connector), so no request
    builds an endpoint, an OpenSSL context or encodes a hostname.

    https services are verified as their L{echogate.upstream.tls.TLSPolicy}
    says (the record's C{"tls_policy"}, see L{echogate.upstream.tls}); a
    policy that leaves it open verifies when C{tls_verify} is true (the
    C{upstream_tls_verify} setting).
    """

    def __init__(self, reactor: Any, pool: HTTPConnectionPool | None = None,
                 max_per_host: int = 1000, idle_timeout: float = 60.0, tls_verify: bool = True):
        self._reactor = reactor
        self.tls = TLSConnectors(default_verify=tls_verify)
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=max_per_host > 0)
            pool.maxPersistentPerHost = max(max_per_host, 1)
            # (Twisted's default, 240, makes mypy take the seconds for an int)
            pool.cachedConnectionTimeout = idle_timeout  # type: ignore[assignment]
            pool.retryAutomatically = True
        self.pool = pool
        self._agents: dict[tuple[Any, ...], tuple[Agent, bytes]] = {}

    def _agent(self, scheme: str, host: str, port: int, connect_timeout: float,
               tls: tuple[Any, PolicyConnector] | None = None) -> tuple[Agent, bytes]:
        """
        The agent for this upstream address (and, for https, TLS connector:
        its pool key and connector), and its origin
        (C{b"http://host:port"}), both made once.
        """
        key = (scheme, host, port, connect_timeout, tls[0] if tls is not None else None)
        cached = self._agents.get(key)
        if cached is None:
            if len(self._agents) >= _MAX_AGENTS:
                self._agents.clear()  # (TLS policies come and go with the configuration)
            endpoint = client_endpoint(self._reactor, host, port, connect_timeout)
            pool: Any = self.pool
            if tls is not None:
                endpoint = wrapClientTLS(tls[1], endpoint)
                pool = _PoolShare(self.pool, tls[0])
            agent = Agent.usingEndpointFactory(self._reactor, _FixedEndpoint(endpoint), pool=pool)
            hostport = host if ":" not in host else f"[{host}]"
            cached = self._agents[key] = (agent, f"{scheme}://{hostport}:{port}".encode())
        return cached

    def request(
        self,
        service: dict[str, Any],
        method: bytes,
        target: bytes,
        headers: Headers | list[tuple[bytes, bytes]],
        body: RequestBody | None = None,
    ) -> Deferred[IResponse]:
        """
        Send one request to C{service}, retrying connection failures up to
        the service's C{retries}. C{target} is the path and query;
        C{headers} a L{Headers} or C{(name, value)} pairs; C{body}
        (an L{echogate.proxy.streaming.RequestBody} or C{None}) makes a fresh
        producer for each attempt. The whole exchange up to the response headers is
        bounded by the service's write and read timeouts.

        An https service's certificate is checked as its TLS policy says
        (see L{echogate.upstream.tls}), for the policy's server name, else
        the Host header's host, else the service's host; a certificate that
        does not verify fails the request (502, its cause a
        L{echogate.upstream.tls.TLSVerificationError}).

        @return: a Deferred firing with the L{twisted.web.iweb.IResponse},
            or failing with L{echogate.errors.ProxyError} (502 or 504);
            cancelling it aborts the upstream request.
        """
        scheme = service.get("protocol") or "http"
        tls = None
        if scheme == "https":
            try:
                policy = self.tls.policy_of(service)
                tls = self.tls.connector(policy, policy.server_name or host_of(headers) or service["host"].strip("[]"))
            except TLSSetupError as e:
                return fail(failure_answer(e, False))
        if not isinstance(headers, Headers):
            headers = headers_of(headers)
        port = service.get("port") or (443 if scheme == "https" else 80)
        agent, origin = self._agent(scheme, service["host"], port, service.get("connect_timeout", 60000) / 1000.0,
                                    tls)
        deadline = (service.get("read_timeout", 60000)
                    + (service.get("write_timeout", 60000) if body is not None else 0)) / 1000.0
        return _Exchange(self._reactor, agent, method, origin + target, headers, body,
                         service.get("retries", 5), deadline).result

    def send(self, service: dict[str, Any], method: bytes, target: bytes,
             headers: Headers | list[tuple[bytes, bytes]], body: RequestBody | None,
             callback: Callable[..., object], errback: Callable[..., object],
             args: tuple[Any, ...] = ()) -> Deferred[None]:
        """
        L{IUpstreamClient.send}: L{request}, with the response delivered as
        an L{AgentResponse} to C{callback(response, *args)}, or the
        L{echogate.errors.ProxyError} failure to C{errback(failure,
        *args)}.

        @return: the request's handle (a Deferred: C{cancel()} aborts the
            request, and neither callback is then called; C{called} says
            whether one was).
        """
        return self.request(service, method, target, headers, body).addCallbacks(
            _adapted, _failed, callbackArgs=(callback, *args), errbackArgs=(errback, *args))

    def close(self) -> Deferred[None]:
        """
        Close every idle pooled connection.
        """
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed


__all__ = ["UpstreamClient", "AgentResponse", "ResponseFailed"]
