"""
Form bodies (C{application/x-www-form-urlencoded} and multipart) decoded
into the dict a JSON body would have given, typed by the schema.

Names:

  - C{port=80}: a field; C{config.requestHeader=X}, C{service.id=...}:
    nested fields; C{headers.x-foo=bar} or C{headers[x-foo]=bar}: a map
    entry (use the bracket form for keys containing dots).
  - C{hosts=a&hosts=b}, C{hosts[]=a&hosts[]=b}, C{hosts[1]=a&hosts[2]=b}:
    the elements of an array or set, in order (numbered ones by number);
    arrays nest in records (C{config.methods[]=GET}) and records in arrays
    (C{sources[1].ip=...}).

Values, following Kong (C{kong/api/arguments.lua}):

  - C{""} is null (for an array field too: C{hosts=} clears it).
  - integer and number fields: decimal numbers become numbers.
  - boolean fields: C{true} and C{false} (only these, as in Kong).
  - array and set fields: one value is a one-element list.
  - map fields of arrays (a route's C{headers}): name to list of values.
  - foreign keys: C{service=<uuid>} is short for C{service.id=<uuid>}.

A value that cannot be typed (C{port=abc}, C{port=1&port=2}) is kept as
the string (or list of strings), and a name the schema does not know is
kept as given, so that validation reports it with the usual message.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from echogate.schema import Record
from echogate.schema.containers import Array, Map
from echogate.schema.fields import Boolean, Field, Foreign, Integer, Number

__all__ = ["decode_form", "parse_name"]

_INTEGER = re.compile(r"^[+-]?\d+\Z")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_APPEND = None


def parse_name(name: str) -> list[str | int | None] | None:
    """
    Split a form field name into its path: C{"config.methods[]"} is
    C{["config", "methods", None]}, C{"hosts[2]"} is C{["hosts", 2]},
    C{"headers[x-foo]"} is C{["headers", "x-foo"]}.

    @return: the segments (C{str} names, C{int} indices, C{None} for
        C{[]}), or C{None} when the name is not well formed (it is then
        used as given).
    """
    path: list[str | int | None] = []
    first = re.match(r"[^.\[\]]+", name)
    if first is None:
        return None
    path.append(first.group())
    pos = first.end()
    while pos < len(name):
        if name[pos] == ".":
            part = re.match(r"[^.\[\]]+", name[pos + 1:])
            if part is None:
                return None
            path.append(part.group())
            pos += 1 + part.end()
        elif name[pos] == "[":
            end = name.find("]", pos)
            if end < 0:
                return None
            inner = name[pos + 1:end]
            if inner == "":
                path.append(_APPEND)
            elif inner.isdigit():
                path.append(int(inner))
            else:
                path.append(inner)
            pos = end + 1
        else:
            return None
    return path


class _Node:
    """
    The values gathered under one name: plain values (C{name=v}), indexed
    items (C{name[i]=v}, C{name[]=v}) and named children (C{name.k=v}).
    """

    __slots__ = ("values", "items", "children")

    def __init__(self) -> None:
        self.values: list[str] = []
        self.items: list[tuple[int | None, int, _Node]] = []
        self.children: dict[str, _Node] = {}

    def ordered_items(self) -> list["_Node"]:
        ordered = sorted(
            self.items, key=lambda item: (item[0] is None, item[0] or 0, item[1])
        )
        return [node for _, _, node in ordered]


def _leaf(value: str) -> _Node:
    node = _Node()
    node.values.append(value)
    return node


def _insert(root: _Node, path: Sequence[str | int | None], value: str, seq: int) -> None:
    node = root
    for position, segment in enumerate(path):
        last = position == len(path) - 1
        if isinstance(segment, str):
            node = node.children.setdefault(segment, _Node())
            if last:
                node.values.append(value)
        elif last:
            node.items.append((segment, seq, _leaf(value)))
        else:
            existing = [n for i, _, n in node.items if segment is not None and i == segment]
            if existing:
                node = existing[0]
            else:
                child = _Node()
                node.items.append((segment, seq, child))
                node = child


def _raw(node: _Node) -> Any:
    if node.children and not node.values and not node.items:
        return {k: _raw(child) for k, child in node.children.items()}
    parts = list(node.values) + [_raw(n) for n in node.ordered_items()]
    if node.children:
        parts.append({k: _raw(child) for k, child in node.children.items()})
    if len(parts) == 1 and not node.items:
        return parts[0]
    return parts


def _scalar(value: str, field: Field) -> Any:
    if value == "":
        return None
    if isinstance(field, Integer):
        if _INTEGER.match(value):
            return int(value)
        if _NUMBER.match(value):
            return float(value)
    elif isinstance(field, Number):
        if _INTEGER.match(value):
            return int(value)
        if _NUMBER.match(value):
            return float(value)
    elif isinstance(field, Boolean):
        if value == "true":
            return True
        if value == "false":
            return False
    elif isinstance(field, Foreign):
        return {"id": value}
    return value


def _typed(node: _Node, field: Field | None) -> Any:
    if field is None:
        return _raw(node)
    only_children = bool(node.children) and not node.values and not node.items
    if isinstance(field, Array):
        if only_children:
            return _raw(node)
        if node.values == [""] and not node.items:
            return None
        parts = [_leaf(v) for v in node.values] + node.ordered_items()
        return [_typed(part, field.elements) for part in parts]
    if only_children:
        if isinstance(field, Record):
            return _typed_record(node, field)
        if isinstance(field, Map):
            return {k: _typed(child, field.values) for k, child in node.children.items()}
        return _raw(node)
    if len(node.values) == 1 and not node.items and not node.children:
        return _scalar(node.values[0], field)
    return _raw(node)


def _typed_record(node: _Node, schema: Record) -> dict[str, Any]:
    return {
        name: _typed(child, schema.fields.get(name)) for name, child in node.children.items()
    }


def decode_form(pairs: Sequence[tuple[str, str]], schema: Record) -> dict[str, Any]:
    """
    Decode form fields into a JSON-like body typed by C{schema}.

    @param pairs: C{(name, value)} in the order they were sent.
    @param schema: the record the body is for (see
        L{echogate.entities.writes.form_schema}).
    @return: the body, to be validated by C{schema}.
    """
    root = _Node()
    for seq, (name, value) in enumerate(pairs):
        path = parse_name(name)
        if path is None:
            path = [name]
        _insert(root, path, value, seq)
    return _typed_record(root, schema)
