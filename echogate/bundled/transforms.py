"""
What request-transformer and response-transformer share: Kong's
C{"name:value"} config entries, header-name checks, the schema fields
built from them, and the operations on JSON objects and ordered
multi-valued tables (query strings, form bodies).

Both plugins apply their operations in Kong's order: remove, rename,
replace, add, append.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import quote, unquote_plus

from echogate.schema import Array, String

#: Kong's order of operations.
OPERATIONS = ("remove", "rename", "replace", "add", "append")

_HEADER_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
#: Kong's C{match = "^[^:]+:.*$"} for C{name:value} entries.
COLON_PAIR = r"^[^:]+:.*$"


def split_pair(entry: str) -> tuple[str, str | None]:
    """
    Split a C{"name:value"} entry as Kong does (C{^([^:]+):*(.-)$}): the
    name runs to the first colon, every colon after it is skipped, the rest
    is the value (C{None} when empty).
    """
    name, _, rest = entry.partition(":")
    value = rest.lstrip(":")
    return name, value or None


def pairs(entries: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """
    L{split_pair} over config entries.
    """
    for entry in entries:
        yield split_pair(entry)


def is_header_name(name: str) -> bool:
    """
    Whether C{name} is a header name Kong accepts: letters, digits, C{_}
    and C{-}.
    """
    return bool(_HEADER_NAME.match(name))


def header_message(name: str) -> str:
    return f"'{name}' is not a valid header"


def check_header_entry(entry: str) -> str | None:
    """
    An element check: the name part of C{entry} is a valid header name.
    """
    name, _ = split_pair(entry)
    return None if is_header_name(name) else header_message(name)


def check_header_rename(entry: str) -> str | None:
    """
    An element check: both parts of C{"old:new"} are valid header names.
    """
    name, value = split_pair(entry)
    if not is_header_name(name):
        return header_message(name)
    if value is None or not is_header_name(value):
        return header_message(value or "")
    return None


def strings(description: str = "", check: Any = None, match: str | None = None) -> Array:
    """
    Kong's C{{type = "array", default = {}, required = true}} of strings.
    """
    return Array(String(check=check, match=match), default=[], required=True, description=description)


def append_value(current: Any, value: Any) -> list[Any]:
    """
    Kong's append: a list gains C{value}; a single value becomes a list of
    it and C{value}; nothing becomes C{[value]}.
    """
    if current is None:
        return [value]
    if isinstance(current, list):
        return current + [value]
    return [current, value]


def is_json_type(content_type: str | None) -> bool:
    """
    Whether a C{Content-Type} value names C{application/json} (any of its
    comma-separated media types, parameters ignored, any case).
    """
    if not content_type:
        return False
    for part in content_type.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "application/json":
            return True
    return False


class Table:
    """
    An ordered multi-valued table (a query string or a URL-encoded form):
    name to a value, where a value is a string, C{None} for a name without
    C{=} (C{?debug}), or a list of those when the name repeats.
    """

    __slots__ = ("items",)

    def __init__(self, items: dict[str, Any] | None = None):
        self.items: dict[str, Any] = items if items is not None else {}

    @classmethod
    def parse(cls, text: str) -> "Table":
        """
        Parse C{a=1&b=2&a=3&flag} (plus signs and percent escapes decoded).
        """
        items: dict[str, Any] = {}
        for part in text.split("&"):
            if not part:
                continue
            raw_name, eq, raw_value = part.partition("=")
            name = unquote_plus(raw_name)
            value: str | None = unquote_plus(raw_value) if eq else None
            if name in items:
                items[name] = append_value(items[name], value)
            else:
                items[name] = value
        return cls(items)

    def encode(self) -> str:
        """
        The table as a query string, in order, percent-encoded.
        """
        out = []
        for name, value in self.items.items():
            values: Sequence[Any] = value if isinstance(value, list) else [value]
            for one in values:
                key = quote(name, safe="")
                out.append(key if one is None else f"{key}={quote(str(one), safe='')}")
        return "&".join(out)

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def remove(self, name: str) -> bool:
        return self.items.pop(name, _MISSING) is not _MISSING

    def rename(self, old: str, new: str) -> bool:
        return rename_key(self.items, old, new)

    def replace(self, name: str, value: str) -> bool:
        if name not in self.items:
            return False
        self.items[name] = value
        return True

    def add(self, name: str, value: str) -> bool:
        if name in self.items:
            return False
        self.items[name] = value
        return True

    def append(self, name: str, value: str) -> bool:
        self.items[name] = append_value(self.items.get(name), value)
        return True


_MISSING = object()


def rename_key(mapping: dict[str, Any], old: str, new: str) -> bool:
    """
    Rename C{mapping[old]} to C{new} in place, keeping its position (a
    value C{new} held before is dropped); C{False} when C{old} is absent or
    the names are equal.
    """
    if old == new or old not in mapping:
        return False
    items = [(new if k == old else k, v) for k, v in mapping.items() if k != new]
    mapping.clear()
    mapping.update(items)
    return True
