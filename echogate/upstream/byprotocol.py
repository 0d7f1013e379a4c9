"""
One upstream client for every kind of service (L{ByProtocol}): HTTP/1.1
services (C{http}, C{https}) through the node's HTTP/1.1 client (the lean
one or Agent's), gRPC services (C{grpc}, C{grpcs}) through the HTTP/2
client (L{echogate.upstream.h2client.H2UpstreamClient}), made the first
time a gRPC service is called.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from echogate.interfaces import IUpstreamClient

__all__ = ["ByProtocol", "GRPC_PROTOCOLS"]

#: The services' protocols spoken over HTTP/2.
GRPC_PROTOCOLS = frozenset(("grpc", "grpcs"))


@implementer(IUpstreamClient)
class ByProtocol:
    """
    An L{IUpstreamClient} that hands each request to the client of its
    service's protocol.

    @param http: the HTTP/1.1 client.
    @param reactor: the HTTP/2 client's.
    @param idle_timeout: how long an HTTP/2 connection without streams is kept.
    @param tls_verify: the C{upstream_tls_verify} setting.
    """

    def __init__(self, http: Any, reactor: IReactorTime, *, idle_timeout: float = 60.0, tls_verify: bool = True):
        self.http = http
        self._reactor = reactor
        self._idle_timeout = idle_timeout
        self._tls_verify = tls_verify
        self._h2: Any = None

    @property
    def h2(self) -> Any:
        """
        The HTTP/2 client (made on first use).
        """
        if self._h2 is None:
            from echogate.upstream.h2client import H2UpstreamClient

            self._h2 = H2UpstreamClient(self._reactor, idle_timeout=self._idle_timeout, tls_verify=self._tls_verify)
        return self._h2

    def send(self, service: dict[str, Any], method: bytes, target: bytes, headers: Any, body: Any,
             on_response: Callable[..., object], on_failure: Callable[..., object],
             args: tuple[Any, ...] = ()) -> Any:
        if service.get("protocol") in GRPC_PROTOCOLS:
            return self.h2.send(service, method, target, headers, body, on_response, on_failure, args)
        return self.http.send(service, method, target, headers, body, on_response, on_failure, args)

    def __getattr__(self, name: str) -> Any:
        # What else the node asks of its HTTP/1.1 client (pool statistics,
        # the WebSocket handshake) is the HTTP/1.1 client's.
        return getattr(self.http, name)

    def close(self) -> Deferred[None]:
        closing = [self.http.close()]
        if self._h2 is not None:
            closing.append(self._h2.close())
        d: Deferred[Any] = DeferredList(closing)
        return d.addCallback(lambda _: None)
