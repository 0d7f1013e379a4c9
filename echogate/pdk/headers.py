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

from echogate.pdk.rawheaders import headers_of

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


_LOWER: dict[str | bytes, bytes] = {}


def _lower(name: str | bytes) -> bytes:
    """
    C{name} for the wire, lower-cased (remembered: plugins use a few
    names).
    """
    key = _b(name).lower()
    if len(_LOWER) < _MAX_NAMES:
        _LOWER[name] = key
    return key


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


class HeaderNames:
    """
    A plugin's fixed list of header names, checked (as L{HeaderEditor}
    checks names) and lower-cased once, for L{HeaderEditor.set_named}: made
    when the plugin's config is worked out, used on every request.

    @ivar names: the names for the wire, in order.
    """

    __slots__ = ("names", "_keys", "_sizes")

    def __init__(self, names: Iterable[str | bytes]):
        """
        @raise InvalidHeaderName: a name is not an HTTP token.
        @raise ValueError: a name comes twice (in any case).
        """
        self.names = tuple(_name(name) for name in names)
        self._keys = frozenset(raw.lower() for raw in self.names)
        if len(self._keys) < len(self.names):
            raise ValueError(f"a header name comes twice: {self.names!r}")
        self._sizes = frozenset(len(key) for key in self._keys)

    def __repr__(self) -> str:
        return f"HeaderNames({self.names!r})"

    def lines(self, values: Iterable[str | bytes | None]) -> "HeaderLines":
        """
        The header lines of the names whose value (the one at its place
        in C{values}) is not C{None}, values cleaned as L{HeaderEditor.set_named}
        cleans them: what L{HeaderEditor.set_named} takes instead of the values, for
        values worked out once and set on many requests.
        """
        if type(values) is tuple and len(values) == len(self.names):
            # (Every value bytes, the usual case: checked in one piece.)
            try:
                joined = b"".join(values)
            except TypeError:
                pass
            else:
                if _CR not in joined and _LF not in joined:
                    return HeaderLines(zip(self.names, values))
        return HeaderLines((raw, _value(value)) for raw, value in zip(self.names, values) if value is not None)


class HeaderLines(tuple):
    """
    Header lines ready for the wire, C{(name, value)} pairs, for
    L{HeaderEditor.set_named}, which adds them as they are: made by
    L{HeaderNames.lines}, or from lines known to be ready (names of a
    L{HeaderNames}, values without a line break).
    """

    __slots__ = ()


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
            pairs = self._pairs
            if not pairs:
                return None
            key = _LOWER.get(name) or _lower(name)
            size = len(key)
            # (Lengths first: most names differ in length, and lower()
            # makes a new bytes object.)
            for raw, value in pairs:
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
        if self._headers is None:
            raw = _NAMES.get(name) or _name(name)
            pairs = self._without(_LOWER.get(name) or _lower(name))
            if type(value) is str:
                # (one value, the usual call: _value inline)
                line = value.encode("latin-1")
                if _CR in line or _LF in line:
                    line = b" ".join(line.splitlines())
                pairs.append((raw, line))
                return
            for one in [value] if isinstance(value, (str, bytes)) else list(value):
                pairs.append((raw, _value(one)))
            return
        values = [value] if isinstance(value, (str, bytes)) else list(value)
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

    def set_named(self, names: HeaderNames, values: Iterable[str | bytes | None] | HeaderLines) -> None:
        """
        Remove every header named in C{names}, then give each name whose
        value (the one at its place in C{values}) is not C{None} that
        value: L{set_headers} for the names with a value and
        L{remove_headers} for the others, in one pass over the header
        lines, the names checked once (when C{names} was made).

        @param values: the values, or C{names.lines(values)} (see
            L{HeaderNames.lines}).
        """
        headers = self._headers
        if headers is not None:
            for raw in names.names:
                headers.removeHeader(raw)
            for raw, line in values if type(values) is HeaderLines else names.lines(values):
                headers.addRawHeader(raw, line)
            return
        pairs = self._without_any(names._keys, names._sizes)
        if type(values) is HeaderLines:
            pairs.extend(values)
            return
        for raw, value in zip(names.names, values):
            if value is not None:
                line = value if type(value) is bytes else _b(value)
                if _CR in line or _LF in line:
                    line = b" ".join(line.splitlines())
                pairs.append((raw, line))

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
