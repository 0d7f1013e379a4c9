"""
Headers on the data path (L{echogate.proxy.gateway}): the request's headers as the
router reads them (L{RequestHeaders}), and the pieces of a response head
the gateway writes: the headers plugins set before the head existed laid
over it (L{overlay_pairs}), and latencies in milliseconds (L{latency_ms}).
"""
from __future__ import annotations

from typing import Iterator, Mapping

from twisted.web.http_headers import Headers

from echogate.pdk.context import HeaderPairs

__all__ = ["RequestHeaders", "overlay_pairs", "latency_ms"]


class RequestHeaders(Mapping):
    """
    The request's headers as the router reads them (lower-case name to
    values), decoded only when asked.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers):
        self._headers = headers

    def __getitem__(self, name: str) -> list[str]:
        values = self._headers.getRawHeaders(name.encode("latin-1"))
        if values is None:
            raise KeyError(name)
        return [v.decode("latin-1") for v in values]

    def __iter__(self) -> Iterator[str]:
        return (k.decode("latin-1").lower() for k, _ in self._headers.getAllRawHeaders())

    def __len__(self) -> int:
        return sum(1 for _ in self._headers.getAllRawHeaders())


def overlay_pairs(pairs: HeaderPairs, early: Headers | HeaderPairs) -> HeaderPairs:
    """
    C{pairs} with the headers plugins set before the response head existed
    (C{early}) in place of the ones of the same names.
    """
    if isinstance(early, Headers):
        early = [(name, value) for name, values in early.getAllRawHeaders() for value in values]
    names = {name.lower() for name, _ in early}
    return [pair for pair in pairs if pair[0].lower() not in names] + list(early)


def latency_ms(start: float | None, end: float | None) -> bytes:
    if start is None or end is None:
        return b"0"
    ms = round((end - start) * 1000)
    return b"%d" % ms if ms > 0 else b"0"
