"""
The hop-by-hop rules (RFC 9110 section 7.6.1): the header fields that
belong to one connection and never travel on, in either direction, and
the names a Connection header adds to them.
"""
from __future__ import annotations

from typing import Iterable

from twisted.web.http_headers import Headers

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


__all__ = ["HOP_BY_HOP", "NOT_END_TO_END", "listed_names", "connection_tokens", "copy_end_to_end"]
