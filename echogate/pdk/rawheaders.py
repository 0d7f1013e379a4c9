"""
Reading Twisted's L{Headers} cheaply (L{raw_values}, L{lines_size}): the
key a L{Headers} keeps a name under (L{stored_name}), and whether this
Twisted keeps its lines in a dict keyed so (L{DIRECT}), found once at
import by asking a L{Headers}; with another layout every reading goes
through C{Headers}' own methods.
"""
from __future__ import annotations

from typing import Iterable

from twisted.web.http_headers import Headers

__all__ = ["DIRECT", "headers_of", "lines_size", "raw_values", "stored_name"]

_MAX_NAMES = 10_000  # plugins use a few names; a bound keeps odd ones from filling memory


def _b(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


_STORED: dict[str | bytes, bytes] = {}


def stored_name(name: str | bytes) -> bytes:
    """
    The key a L{Headers} keeps header C{name} under (its own spelling of
    the name), as C{Headers} itself works it out; refused
    (L{twisted.web.http_headers.InvalidHeaderName}) as C{Headers} refuses it. Remembered.
    """
    key = _STORED.get(name)
    if key is not None:
        return key
    probe = Headers()
    probe.addRawHeader(_b(name), b"")
    key = next(iter(probe.getAllRawHeaders()))[0]
    if len(_STORED) < _MAX_NAMES:
        _STORED[name] = key
    return key


def _stores_by_name() -> bool:
    """
    Whether this Twisted's L{Headers} keeps its lines in a C{_rawHeaders}
    dict keyed by L{stored_name}: then a lookup reads that dict directly
    (L{raw_values}), a dict lookup instead of three calls.
    """
    probe = Headers()
    probe.addRawHeader(b"x-echogate-Probe", b"1")
    return getattr(probe, "_rawHeaders", None) == {stored_name(b"x-echogate-Probe"): [b"1"]}


#: See L{_stores_by_name}.
DIRECT = _stores_by_name()


def raw_values(headers: Headers, name: str | bytes) -> list[bytes] | None:
    """
    The values of header C{name} in C{headers} as bytes (none: C{None}
    or an empty list): C{headers.getRawHeaders}, cheaper.
    """
    if DIRECT and type(headers) is Headers:
        values: list[bytes] | None = headers._rawHeaders.get(_STORED.get(name) or stored_name(name))
        return values
    return headers.getRawHeaders(_b(name))  # type: ignore[return-value]


def lines_size(headers: Headers | Iterable[tuple[bytes, bytes]]) -> int:
    """
    The size on the wire of header lines, C{name: value} and a CRLF each:
    those of a L{Headers} (names as it spells them), or wire pairs.
    """
    size = 0
    if type(headers) is list:
        # (wire pairs, the usual: a plain loop is the cheapest sum)
        for name, value in headers:
            size += len(name) + len(value)
        return size + 4 * len(headers)
    if isinstance(headers, Headers):
        for name, values in headers._rawHeaders.items() if DIRECT and type(headers) is Headers \
                else headers.getAllRawHeaders():
            for value in values:
                size += len(name) + len(value) + 4
        return size
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size


def headers_of(pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
    """
    A L{Headers} holding C{pairs}, in order.
    """
    headers = Headers()
    add = headers.addRawHeader
    for name, value in pairs:
        add(name, value)
    return headers
