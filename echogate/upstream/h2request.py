"""
An HTTP/2 request to a gRPC service as it goes on the wire: its header
list (L{h2_headers}: pseudo-header fields, lowercased fields without the
connection-specific ones), gRPC's C{grpc-timeout} (L{grpc_timeout}), and
the TLS connections that offer C{h2} by ALPN (L{OfferH2}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.upstream.hop_by_hop import listed_names

#: Request header fields that belong to an HTTP/1.1 connection and are not
#: sent on HTTP/2 (Host becomes C{:authority}; TE is sent when "trailers").
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade", b"host", b"te"))

#: gRPC's C{grpc-timeout} units, in seconds.
_UNITS = {b"H": (3600, 1), b"M": (60, 1), b"S": (1, 1), b"m": (1, 1000), b"u": (1, 10**6), b"n": (1, 10**9)}


def grpc_timeout(value: bytes) -> float | None:
    """
    The seconds a C{grpc-timeout} value says (1 to 8 ASCII digits and a
    unit, C{H M S m u n}), or C{None} when it is not a valid one.
    """
    digits, unit = value[:-1], value[-1:]
    if not 1 <= len(digits) <= 8 or not digits.isdigit() or not digits.isascii():
        return None
    scale = _UNITS.get(unit)
    return None if scale is None else int(digits) * scale[0] / scale[1]


def h2_headers(method: bytes, target: bytes, headers: Headers | list[tuple[bytes, bytes]], scheme: bytes,
               authority: bytes) -> tuple[list[tuple[bytes, bytes]], float | None]:
    """
    A request's HTTP/2 header list: the pseudo-header fields, then the
    fields lowercased without the connection-specific ones (and the names
    Connection lists); C{te: trailers} is always sent (gRPC servers
    require it).

    @param authority: C{:authority} when there is no Host field.
    @return: the list, and the seconds of a valid C{grpc-timeout}.
    """
    pairs = ([(name, value) for name, values in headers.getAllRawHeaders() for value in values]
             if isinstance(headers, Headers) else headers)
    host = None
    timeout = None
    listed: set[bytes] = set()
    fields = []
    for name, value in pairs:
        lower = name.lower()
        if lower in CONNECTION_SPECIFIC or lower.startswith(b":"):
            if lower == b"host" and host is None:
                host = value
            elif lower == b"connection":
                listed |= listed_names([value])
            continue
        if lower == b"grpc-timeout":
            timeout = grpc_timeout(value.strip())
        fields.append((lower, value))
    if listed:
        fields = [pair for pair in fields if pair[0] not in listed]
    fields.append((b"te", b"trailers"))
    return [(b":method", method), (b":scheme", scheme), (b":path", target),
            (b":authority", host or authority)] + fields, timeout


@implementer(IOpenSSLClientConnectionCreator)
class OfferH2:
    """
    A TLS connector's connections, offering C{h2} by ALPN.
    """

    def __init__(self, connector: IOpenSSLClientConnectionCreator):
        self._connector = connector

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        connection = self._connector.clientConnectionForTLS(tlsProtocol)
        connection.set_alpn_protos([b"h2"])
        return connection


__all__ = ["CONNECTION_SPECIFIC", "grpc_timeout", "h2_headers", "OfferH2"]
