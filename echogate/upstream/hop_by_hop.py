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

# Connection header values that name no end-to-end header.
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close"))


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


def split_response_head(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int | None, bool, bool]:
    """
    Split a parsed response head's header lines into those that go on to
    the client and what the others say of the body.

    @param raw: The header lines, as received (a parser has checked the
        framing ones: one valid Content-Length, not with
        Transfer-Encoding).
    @return: The end-to-end lines (without L{NOT_END_TO_END} names or the
        names a Connection header lists), in order; the Content-Length (or
        C{None}); whether there was a Transfer-Encoding; whether an
        end-to-end Via line is among them.
    """
    pairs: list[tuple[bytes, bytes]] = []
    add = pairs.append
    length: int | None = None
    chunked = via = False
    listed: set[bytes] = set()
    for pair in raw:
        lower = pair[0].lower()
        if lower in NOT_END_TO_END:  # framing or hop-by-hop: not passed on
            if lower == b"content-length":
                length = int(pair[1])
            elif lower == b"transfer-encoding":
                chunked = True
            elif lower == b"connection" and pair[1].lower() not in _PLAIN_CONNECTION:
                listed = listed_names(value for n, value in raw if n.lower() == b"connection")
            continue
        if lower == b"via":
            via = True
        add(pair)
    if listed:
        pairs = [pair for pair in pairs if pair[0].lower() not in listed]
        via = via and b"via" not in listed
    return pairs, length, chunked, via


__all__ = ["HOP_BY_HOP", "NOT_END_TO_END", "listed_names", "connection_tokens", "copy_end_to_end",
           "split_response_head"]
