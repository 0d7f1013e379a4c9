"""
Headers as plugins read and change them (L{HeaderEditor}): over wire
pairs (L{HeaderPairs}) until something asks for a L{Headers}, names
checked and values cleaned as L{Headers} checks and cleans them.
"""
from __future__ import annotations

import re
from collections import abc
from typing import Iterable, Mapping

from twisted.web.http_headers import Headers, InvalidHeaderName

#: CR and LF as ints: "13 in line" is a byte search, while b"\r" in line
#: first tries b"\r" as an int and raises (and clears) a TypeError, seven
#: times slower, on every value a plugin sets.
_CR, _LF = 13, 10


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _s(value: bytes) -> str:
    return value.decode("latin-1")


#: Header lines as they go on the wire: (name, value) pairs.
HeaderPairs = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


_NAMES: dict[str | bytes, bytes] = {}
_MAX_NAMES = 10_000  # plugins use a few names; a bound keeps odd ones from filling memory


def _name(name: str | bytes) -> bytes:
    """
    A header name for the wire, refused (L{InvalidHeaderName}) unless it
    is a token (RFC 9110, section 5.1), as L{Headers} refuses it. Checked
    names are remembered.
    """
    raw = _NAMES.get(name)
    if raw is not None:
        return raw
    raw = _b(name)
    if _TOKEN.fullmatch(raw) is None:
        raise InvalidHeaderName(raw)
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[name] = raw
    return raw


def _value(value: str | bytes) -> bytes:
    """
    A header value for the wire: line breaks become spaces, as L{Headers}
    makes them.
    """
    raw = _b(value)
    if _CR in raw or _LF in raw:
        return b" ".join(raw.splitlines())
    return raw


_KEYS: dict[tuple[str, ...], tuple[frozenset[bytes], frozenset[int]]] = {}


def _keys(names: Iterable[str]) -> tuple[frozenset[bytes], frozenset[int]]:
    """
    C{names} lower-cased for the wire, and their lengths (remembered for a
    tuple of names, which plugins pass as constants).
    """
    if isinstance(names, tuple):
        known = _KEYS.get(names)
        if known is not None:
            return known
    keys = frozenset(_b(name).lower() for name in names)
    found = (keys, frozenset(len(k) for k in keys))
    if isinstance(names, tuple) and len(_KEYS) < _MAX_NAMES:
        _KEYS[names] = found
    return found


def headers_of(pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
    """
    A L{Headers} holding C{pairs}, in order.
    """
    headers = Headers()
    add = headers.addRawHeader
    for name, value in pairs:
        add(name, value)
    return headers


class HeaderEditor:
    """
    Read and change a set of HTTP headers by name, case-insensitively.

    The headers may start as a list of C{(name, value)} pairs, the lines as
    they go on the wire (names as sent, repeated names kept in order), and
    the methods below read and change that list: a L{Headers} object is
    built from it only when something asks for C{headers}, after which the
    methods work on that object. A request whose plugins use only these
    methods goes upstream, and its response to the client, without one.
    """

    __slots__ = ("_headers", "_pairs")

    def __init__(self, headers: Headers | None = None, pairs: HeaderPairs | None = None):
        self._headers = headers
        self._pairs = pairs

    @property
    def headers(self) -> Headers:
        """
        The headers, as a L{twisted.web.http_headers.Headers}.
        """
        headers = self._headers
        if headers is None:
            headers = self._headers = headers_of(self._pairs or ())
            self._pairs = None
        return headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers
        self._pairs = None

    def as_is(self) -> Headers | HeaderPairs:
        """
        The headers without building anything: the L{Headers} if it
        exists, else the pairs.
        """
        return self._headers if self._headers is not None else (self._pairs or [])

    def get_header(self, name: str) -> str | None:
        """
        The first value of header C{name}, or C{None}.
        """
        headers = self._headers
        if headers is None:
            key = _b(name).lower()
            size = len(key)
            # (Lengths first: most names differ in length, and lower()
            # makes a new bytes object.)
            for raw, value in self._pairs or ():
                if len(raw) == size and raw.lower() == key:
                    return _s(value)
            return None
        values = headers.getRawHeaders(_b(name))
        return _s(values[0]) if values else None

    def get_headers(self) -> dict[str, list[str]]:
        """
        Every header: lower-case name to its values.
        """
        if self._headers is None:
            out: dict[str, list[str]] = {}
            for raw, value in self._pairs or ():
                out.setdefault(_s(raw).lower(), []).append(_s(value))
            return out
        return {_s(k).lower(): [_s(v) for v in vs] for k, vs in self._headers.getAllRawHeaders()}

    def _without(self, key: bytes) -> HeaderPairs:
        """
        The pairs, without those named C{key} (lower case).
        """
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = []
            return pairs
        size = len(key)
        for raw, _ in pairs:
            if len(raw) == size and raw.lower() == key:
                pairs = self._pairs = [pair for pair in pairs if pair[0].lower() != key]
                break
        return pairs

    def _without_any(self, keys: frozenset[bytes] | set[bytes], sizes: frozenset[int] | set[int]) -> HeaderPairs:
        """
        The pairs, without those named any of C{keys} (lower case), whose
        lengths are C{sizes}: one pass, whatever the number of names.
        """
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = []
            return pairs
        for raw, _ in pairs:
            if len(raw) in sizes and raw.lower() in keys:
                pairs = self._pairs = [pair for pair in pairs
                                       if len(pair[0]) not in sizes or pair[0].lower() not in keys]
                break
        return pairs

    def set_header(self, name: str, value: str | bytes | Iterable[str | bytes]) -> None:
        """
        Replace header C{name} with C{value} (a string or bytes, or several
        values).
        """
        values = [value] if isinstance(value, (str, bytes)) else list(value)
        if self._headers is None:
            raw = _name(name)
            pairs = self._without(raw.lower())
            for one in values:
                pairs.append((raw, _value(one)))
            return
        self._headers.setRawHeaders(_b(name), [_b(v) for v in values])

    def add_header(self, name: str, value: str) -> None:
        """
        Add a value to header C{name}, keeping the ones it had.
        """
        if self._headers is None:
            if self._pairs is None:
                self._pairs = []
            line = value.encode("latin-1") if type(value) is str else _b(value)
            if _CR in line or _LF in line:
                line = b" ".join(line.splitlines())
            self._pairs.append((_NAMES.get(name) or _name(name), line))
            return
        self._headers.addRawHeader(_b(name), _b(value))

    def remove_header(self, name: str) -> None:
        """
        Remove header C{name} if present.
        """
        if self._headers is None:
            self._without(_b(name).lower())
            return
        self._headers.removeHeader(_b(name))

    def remove_headers(self, names: Iterable[str]) -> None:
        """
        Remove each header of C{names} that is present: as
        L{remove_header} for each, in one pass over the header lines.
        """
        if self._headers is None:
            self._without_any(*_keys(names))
            return
        for name in names:
            self._headers.removeHeader(_b(name))

    def set_headers(self, headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]) -> None:
        """
        Replace each header named in C{headers} (a mapping, or C{(name,
        value)} pairs) with its value: as L{set_header} for each, in one
        pass over the header lines. When a name comes more than once, the
        last value wins.
        """
        # (typing's Mapping makes isinstance slow: a dict is ruled in first.)
        items = list(headers.items()) if type(headers) is dict or isinstance(headers, abc.Mapping) \
            else list(headers)
        if self._headers is not None:
            for name, value in items:
                self._headers.setRawHeaders(_b(name), [_b(value)])
            return
        lines = []
        keys = set()
        sizes = set()
        for name, value in items:
            raw = _NAMES.get(name) or _name(name)
            # (_value, inline: this runs for every header of every request)
            line = value.encode("latin-1") if type(value) is str else _b(value)
            if _CR in line or _LF in line:
                line = b" ".join(line.splitlines())
            lines.append((raw, line))
            key = raw.lower()
            keys.add(key)
            sizes.add(len(key))
        if len(keys) < len(lines):
            # (A repeated name: the last value only, as set_header twice.)
            last = {raw.lower(): i for i, (raw, _) in enumerate(lines)}
            lines = [line for i, line in enumerate(lines) if last[line[0].lower()] == i]
        self._without_any(keys, sizes).extend(lines)
