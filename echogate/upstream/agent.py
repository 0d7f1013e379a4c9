"""
The Agent-based upstream client: requests to services through Twisted's
L{Agent} and one shared persistent L{HTTPConnectionPool}, with the
service's timeouts and retries. (The lean client, L{echogate.upstream.lean},
is the default; it hands https requests to this one.)
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from echogate.pdk.messages import headers_of
from echogate.upstream.endpoints import client_endpoint
from echogate.upstream.failures import failure_answer, is_connect_failure


@implementer(IAgentEndpointFactory)
class _FixedEndpoint:
    def __init__(self, endpoint: Any):
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> Any:
        return self._endpoint


def send_with_request(client: Any, service: dict, method: bytes, target: bytes, headers: Any, body: Any,
                      callback: Any, errback: Any, args: tuple = ()) -> Deferred:
    """
    C{send} (see L{echogate.upstream.lean.LeanUpstreamClient.send}) for a
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
        (an L{echogate.proxy.streaming.RequestBody} or C{None}) makes a fresh
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


__all__ = ["UpstreamClient", "send_with_request", "ResponseFailed"]
