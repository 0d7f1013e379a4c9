"""
Client endpoints for services' addresses.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint


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
