"""
Client endpoints for services' addresses.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure


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


def ip_literal(host: str) -> str | None:
    """
    The IP address C{host} is, in its usual spelling (an IPv6 one without
    brackets), or C{None} when it is a name.
    """
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class DirectEndpoint:
    """
    An IP address to connect to with the reactor's C{connectTCP} and a
    L{DirectAttempt}, whose protocol is the transport's own: unlike with a
    client endpoint, no wrapper protocol stands between the transport and
    it (every read reaches it without one more call).

    @ivar reactor: The reactor (an C{IReactorTCP}).
    @ivar host: The IP address.
    @ivar port: The port.
    @ivar timeout: Seconds to wait for the connection.
    """

    __slots__ = ("reactor", "host", "port", "timeout")

    def __init__(self, reactor: Any, host: str, port: int, timeout: float):
        self.reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout

    def start(self, attempt: DirectAttempt) -> None:
        """
        Start C{attempt}: it reports its outcome, this call raising
        nothing (a failure to start is reported as C{TCP4ClientEndpoint}
        reports it, a failure at once).
        """
        try:
            self.reactor.connectTCP(self.host, self.port, attempt, timeout=self.timeout)
        except BaseException:
            attempt.clientConnectionFailed(None, Failure())


class DirectAttempt(ClientFactory):
    """
    One attempt to connect a given protocol to a L{DirectEndpoint}, which
    reports its outcome as an endpoint's Deferred would: C{made(protocol)}
    once the protocol's connection is made, or C{failed(reason)} (the
    reactor's reason: refused, timed out, ...; or a
    C{ConnectingCancelledError} failure when the attempt is cancelled),
    once, and neither after C{cancel}. The reactor builds the protocol
    itself, which calls its C{on_made} attribute (set here) with itself
    from its C{connectionMade}.
    """

    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, protocol: Any, made: Callable[[Any], object], failed: Callable[[Failure], object]):
        self._protocol = protocol
        self._made: Callable[[Any], object] | None = made
        self._failed: Callable[[Failure], object] | None = failed
        self._connector: Any = None

    def startedConnecting(self, connector: Any) -> None:
        self._connector = connector

    def buildProtocol(self, addr: Any) -> Any:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.on_made = self._connected
        return protocol

    def _connected(self, protocol: Any) -> None:
        made = self._made
        self._made = self._failed = None
        if made is None:
            protocol.transport.abortConnection()  # (given up as it was made)
        else:
            made(protocol)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        failed = self._failed
        self._made = self._failed = None
        if failed is not None:
            failed(reason)

    def cancel(self) -> None:
        """
        Give the attempt up: report a C{ConnectingCancelledError}, then
        stop connecting (as cancelling an endpoint's Deferred does).
        """
        failed = self._failed
        self._made = self._failed = None
        if failed is not None:
            connector = self._connector
            failed(Failure(ConnectingCancelledError(connector.getDestination())))
            connector.stopConnecting()


def direct_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    Where to connect for C{host}: a L{DirectEndpoint} for an IP address, a
    L{HostnameEndpoint} for a name (resolved, and each address tried, as
    L{client_endpoint} does).
    """
    address = ip_literal(host)
    if address is None:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    return DirectEndpoint(reactor, address, port, timeout)


__all__ = ["client_endpoint", "direct_endpoint", "ip_literal", "DirectEndpoint", "DirectAttempt"]
