"""
The active health checks' probe (L{Prober}): what an
L{echogate.balancer.health.ActiveChecker} sends to one address.

An HTTP or HTTPS check is a C{GET} of the upstream's C{http_path} with its
C{headers}, on a connection of its own (closed once the status is read:
the body is not read); it fires with the response status. A TCP check only
connects and closes. Either is given up after C{timeout} seconds (the
connection attempt too), failing with L{defer.TimeoutError}, which the
checker counts as a timeout; a refused or reset connection is a TCP
failure. HTTPS certificates are not verified: the address is an IP address,
which a service's certificate rarely names (Kong's
C{https_verify_certificate = false}).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping, cast

from twisted.internet import defer, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

__all__ = ["Prober"]


@implementer(IPolicyForHTTPS)
class _Unverified:
    """
    TLS for health checks: encrypted, certificates not checked.
    """

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """
        Options that accept any certificate (a context factory, which
        TLS connections take in place of a connection creator).
        """
        return cast(IOpenSSLClientConnectionCreator, ssl.CertificateOptions(verify=False))


class _Connected(Protocol):
    """
    The TCP check's protocol: connected is all it wanted.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _Ignore(Protocol):
    """
    Takes a health check response's body: stops it at once (the status was
    all the check wanted).
    """

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        pass


def _url(address: str, port: int, path: str, https: bool) -> bytes:
    host = f"[{address}]" if ":" in address else address
    if not path.startswith("/"):
        path = "/" + path
    return f"{'https' if https else 'http'}://{host}:{port}{path}".encode("utf-8")


def _headers(headers: Mapping[str, Any]) -> Headers:
    out = Headers()
    for name, value in headers.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        out.setRawHeaders(str(name).encode("latin-1"),
                          [str(item).encode("latin-1") for item in values])
    return out


class Prober:
    """
    Probes addresses for active health checks; an instance is a
    L{echogate.balancer.health.Probe}.

    @param reactor: provides C{IReactorTCP}, C{IReactorTime} (and
        C{IReactorSSL} for HTTPS checks).
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=False)
        self._pool = pool
        self._http: dict[float, Agent] = {}
        self._https: dict[float, Agent] = {}
        self._pending: set[Deferred[int]] = set()

    def _agent(self, timeout: float, https: bool) -> Agent:
        agents = self._https if https else self._http
        agent = agents.get(timeout)
        if agent is None:
            if https:
                agent = Agent(self._reactor, contextFactory=_Unverified(), connectTimeout=timeout,
                              pool=self._pool)
            else:
                agent = Agent(self._reactor, connectTimeout=timeout, pool=self._pool)
            agents[timeout] = agent
        return agent

    def __call__(self, address: str, port: int, http_path: str | None,
                 headers: Mapping[str, Any], timeout: float, https: bool) -> Deferred[int]:
        """
        Probe C{address:port}: fires with the response status of a C{GET}
        of C{http_path}, or with 0 once a TCP check (C{http_path} C{None})
        connected; fails when the connection fails or C{timeout} runs out.
        """
        if http_path is None:
            probing = self._connect(address, port, timeout)
        else:
            probing = self._get(address, port, http_path, headers, timeout, https)
        probing.addTimeout(timeout, self._reactor)
        self._pending.add(probing)

        def done(result: Any) -> Any:
            self._pending.discard(probing)
            return result

        return probing.addBoth(done)

    def _connect(self, address: str, port: int, timeout: float) -> Deferred[int]:
        kind = TCP6ClientEndpoint if ipaddress.ip_address(address).version == 6 else TCP4ClientEndpoint
        endpoint = kind(self._reactor, address, port, timeout=max(1, int(timeout + 0.999)))
        connecting: Deferred[Any] = endpoint.connect(Factory.forProtocol(_Connected))
        return connecting.addCallback(lambda _: 0)

    def _get(self, address: str, port: int, path: str, headers: Mapping[str, Any],
             timeout: float, https: bool) -> Deferred[int]:
        requesting: Deferred[IResponse] = self._agent(timeout, https).request(
            b"GET", _url(address, port, path, https), _headers(headers))

        def status(response: IResponse) -> int:
            response.deliverBody(_Ignore())
            return int(response.code)

        return requesting.addCallback(status)

    def close(self) -> Deferred[None]:
        """
        Cancel the probes under way and close their connections.
        """
        for probing in list(self._pending):
            probing.cancel()
        closing: Deferred[None] = defer.maybeDeferred(self._pool.closeCachedConnections)
        return closing
