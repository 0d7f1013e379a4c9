"""
request-transformer's body operations: JSON objects, URL-encoded forms
and multipart forms, each changed in Kong's order (remove, rename,
replace, add, append) and encoded again only when something changed.

Remove, rename and replace apply only to a non-empty body; add and append
also build a body from nothing, as in Kong.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from multipart import MultipartError, PushMultipartParser, parse_options_header

from echogate.bundled.transforms import Table, append_value, pairs, rename_key

JSON = "json"
FORM = "form_encoded"
MULTIPART = "multi_part"

Render = Callable[[str | None], str | None]


def body_kind(content_type: str | None) -> str | None:
    """
    Which of Kong's body kinds C{content_type} names (a case-insensitive
    substring match, as Kong does), or C{None}.
    """
    if not content_type:
        return None
    lowered = content_type.lower()
    if "application/json" in lowered:
        return JSON
    if "multipart/form-data" in lowered:
        return MULTIPART
    if "application/x-www-form-urlencoded" in lowered:
        return FORM
    return None


def _ops(config: Mapping[str, Any], render: Render, operation: str) -> list[tuple[str, str | None]]:
    return [(name, render(value)) for name, value in pairs(config[operation]["body"])]


def transform_json(config: Mapping[str, Any], body: bytes, render: Render) -> bytes | None:
    """
    The new JSON body, or C{None} when nothing changed (or the body is not
    a JSON object).
    """
    if body:
        try:
            parameters = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(parameters, dict):
            return None
    else:
        parameters = {}
    changed = False
    if body:
        for name, _ in pairs(config["remove"]["body"]):
            parameters.pop(name, None)
            changed = True
        for old, new in _ops(config, render, "rename"):
            if new is not None:
                changed = rename_key(parameters, old, new) or changed
        for name, value in _ops(config, render, "replace"):
            if name in parameters and value is not None:
                parameters[name] = value
                changed = True
    for name, value in _ops(config, render, "add"):
        if name not in parameters and value is not None:
            parameters[name] = value
            changed = True
    for name, value in _ops(config, render, "append"):
        if value is not None:
            parameters[name] = append_value(parameters.get(name), value)
            changed = True
    if not changed:
        return None
    return json.dumps(parameters, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def transform_form(config: Mapping[str, Any], body: bytes, render: Render) -> bytes | None:
    """
    The new URL-encoded body, or C{None} when nothing changed.
    """
    table = Table.parse(body.decode("utf-8", "replace"))
    changed = False
    if body:
        for name, _ in pairs(config["remove"]["body"]):
            table.remove(name)
            changed = True
        for old, new in _ops(config, render, "rename"):
            if new is not None:
                changed = table.rename(old, new) or changed
        for name, value in _ops(config, render, "replace"):
            if value is not None and table.replace(name, value):
                changed = True
    for name, value in _ops(config, render, "add"):
        if value is not None and table.add(name, value):
            changed = True
    for name, value in _ops(config, render, "append"):
        if value is not None:
            changed = table.append(name, value)
    if not changed:
        return None
    return table.encode().encode("ascii")


class _Part:
    """
    One part of a multipart body: its header lines and its content.
    """

    __slots__ = ("name", "headers", "data")

    def __init__(self, name: str, headers: list[tuple[str, str]], data: bytes):
        self.name = name
        self.headers = headers
        self.data = data

    @classmethod
    def simple(cls, name: str, value: str) -> "_Part":
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return cls(name, [("Content-Disposition", f'form-data; name="{quoted}"')], value.encode("utf-8"))


def _parse_parts(body: bytes, boundary: str) -> list[_Part] | None:
    parts: list[_Part] = []
    current: Any = None
    chunks: list[bytes] = []
    try:
        with PushMultipartParser(boundary, content_length=len(body), strict=False) as parser:
            for event in parser.parse(body):
                if event is None:
                    parts.append(_Part(current.name or "", list(current.headerlist), b"".join(chunks)))
                elif isinstance(event, (bytes, bytearray)):
                    chunks.append(bytes(event))
                else:
                    current = event
                    chunks = []
    except MultipartError:
        return None
    return parts


def _encode_parts(parts: list[_Part], boundary: str) -> bytes:
    out = []
    for part in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in part.headers)
        out.append(f"--{boundary}\r\n{head}\r\n".encode("utf-8") + part.data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode("utf-8"))
    return b"".join(out)


def transform_multipart(config: Mapping[str, Any], body: bytes, content_type: str,
                        render: Render) -> bytes | None:
    """
    The new multipart body (same boundary), or C{None} when nothing
    changed or it does not parse. Kong has no append for multipart bodies;
    neither has echogate.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        return None
    parts = _parse_parts(body, boundary) if body else []
    if parts is None:
        return None

    def find(name: str) -> _Part | None:
        return next((p for p in parts if p.name == name), None)

    changed = False
    if body:
        for old, new in _ops(config, render, "rename"):
            part = find(old)
            if part is not None and new is not None and old != new:
                parts[:] = [p for p in parts if p.name not in (old, new)]
                parts.append(_Part.simple(new, part.data.decode("utf-8", "replace")))
                changed = True
        for name, _ in pairs(config["remove"]["body"]):
            parts[:] = [p for p in parts if p.name != name]
            changed = True
        for name, value in _ops(config, render, "replace"):
            if value is not None and find(name) is not None:
                parts[:] = [p for p in parts if p.name != name]
                parts.append(_Part.simple(name, value))
                changed = True
    for name, value in _ops(config, render, "add"):
        if value is not None and find(name) is None:
            parts.append(_Part.simple(name, value))
            changed = True
    if not changed:
        return None
    return _encode_parts(parts, boundary)


def transform_body(config: Mapping[str, Any], content_type: str | None, body: bytes,
                   render: Render) -> bytes | None:
    """
    The new body for C{content_type}, or C{None} to leave it alone.
    """
    kind = body_kind(content_type)
    if kind == JSON:
        return transform_json(config, body, render)
    if kind == FORM:
        return transform_form(config, body, render)
    if kind == MULTIPART and content_type is not None:
        return transform_multipart(config, body, content_type, render)
    return None


def has_body_operations(config: Mapping[str, Any]) -> bool:
    """
    Whether any operation touches the body.
    """
    return any(config[op]["body"] for op in ("remove", "rename", "replace", "add", "append"))
