"""
response-transformer: change the response on its way to the client.

Headers are changed in C{header_filter}; a JSON body in C{body_filter}, in
Kong's order: remove, rename, replace, add, append.

Only a response whose body will change is held back: when the config has
JSON operations and the response's C{Content-Type} is
C{application/json} (and it has no C{Content-Encoding}), the chunks are collected (and nothing is sent) until
the last one, then the transformed body is sent whole, without
C{Content-Length}. Every other response streams through untouched, chunk
by chunk, as it arrives.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

from echogate._version import __version__
from echogate.bundled.transforms import (
    COLON_PAIR,
    append_value,
    check_header_rename,
    is_json_type,
    pairs,
    rename_key,
    strings,
)
from echogate.plugin import GatewayPlugin
from echogate.schema import Array, Record, String

JSON_TYPES = ("boolean", "number", "string")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_HEX = re.compile(r"^\s*0[xX][0-9a-fA-F]+\s*$")


def _json_types() -> Array:
    return Array(String(one_of=JSON_TYPES), default=[], required=True,
                 description="The JSON type of each json value, by position: boolean, number or string.")


def _typed_values(description: str) -> Record:
    return Record({
        "json": strings(f"JSON properties to {description}, as name:value.", match=COLON_PAIR),
        "json_types": _json_types(),
        "headers": strings(f"Headers to {description}, as name:value.", match=COLON_PAIR),
    })


def _number(value: str) -> int | float | None:
    if _HEX.match(value):
        return int(value, 16)
    if not _NUMBER.match(value):
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def json_value(value: str | None, json_type: str | None) -> Any:
    """
    A config value as a JSON value of C{json_type} (a string when none):
    C{"true"} is the only true boolean; a value that is not a number
    gives C{None} (the operation is skipped).
    """
    if value is None:
        return None
    if json_type == "number":
        return _number(value)
    if json_type == "boolean":
        return value == "true"
    return value


def _typed_pairs(section: Mapping[str, Any]) -> list[tuple[str, Any]]:
    types = section["json_types"]
    out = []
    for index, (name, value) in enumerate(pairs(section["json"])):
        out.append((name, json_value(value, types[index] if index < len(types) else None)))
    return out


def transform_json(config: Mapping[str, Any], body: bytes) -> bytes | None:
    """
    The transformed JSON body, or C{None} when C{body} is not a JSON
    object (it is then sent as it was).
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    for name, _ in pairs(config["remove"]["json"]):
        document.pop(name, None)
    for old, new in pairs(config["rename"]["json"]):
        if new is not None:
            rename_key(document, old, new)
    for name, value in _typed_pairs(config["replace"]):
        if name in document and value is not None:
            document[name] = value
    for name, value in _typed_pairs(config["add"]):
        if name not in document and value is not None:
            document[name] = value
    for name, value in _typed_pairs(config["append"]):
        if value is not None:
            document[name] = append_value(document.get(name), value)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _identity(encoding: str | None) -> bool:
    """
    Whether a C{Content-Encoding} leaves the body readable as it is.
    """
    return encoding is None or encoding.strip().lower() in ("", "identity")


def transforms_body(config: Mapping[str, Any]) -> bool:
    """
    Whether the config has any JSON body operation.
    """
    return any(config[op]["json"] for op in ("remove", "rename", "replace", "add", "append"))


class ResponseTransformer(GatewayPlugin):
    """
    Kong's response-transformer.
    """

    name = "response-transformer"
    version = __version__
    priority = 800
    config_schema = Record({
        "remove": Record({
            "json": strings("JSON properties to remove."),
            "headers": strings("Headers to remove."),
        }),
        "rename": Record({
            "json": strings("JSON properties to rename, as old:new.", match=COLON_PAIR),
            "headers": strings("Headers to rename, as old:new.", match=COLON_PAIR, check=check_header_rename),
        }),
        "replace": _typed_values("replace (only when present)"),
        "add": _typed_values("add (only when absent)"),
        "append": _typed_values("append (a further value)"),
    })

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        response = ctx.response
        for name, _ in pairs(config["remove"]["headers"]):
            response.remove_header(name)
        for old, new in pairs(config["rename"]["headers"]):
            values = response.headers.getRawHeaders(old.encode("latin-1"))
            if new is not None and values is not None:
                response.remove_header(old)
                response.headers.setRawHeaders(new.encode("latin-1"), values)
        for name, value in pairs(config["replace"]["headers"]):
            if value is not None and response.get_header(name) is not None:
                response.set_header(name, value)
        for name, value in pairs(config["add"]["headers"]):
            if value is not None and response.get_header(name) is None:
                response.set_header(name, value)
        for name, value in pairs(config["append"]["headers"]):
            if value is not None:
                response.add_header(name, value)
        if transforms_body(config) and is_json_type(response.get_header("content-type")) \
                and _identity(response.get_header("content-encoding")):
            response.remove_header("content-length")
            ctx.plugin["chunks"] = []

    def body_filter(self, ctx: Any, config: Mapping[str, Any], chunk: bytes) -> bytes | None:
        chunks = ctx.plugin.get("chunks")
        if chunks is None:
            return None
        if chunk:
            chunks.append(chunk)
        if not ctx.response.eof:
            return b""
        body = b"".join(chunks)
        del ctx.plugin["chunks"]
        if not body:
            return body
        transformed = transform_json(config, body)
        if transformed is None:
            ctx.log.warn("body transform failed: the response body is not a JSON object")
            return body
        return transformed
