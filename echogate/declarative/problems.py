"""
What is wrong with a declarative configuration, in the two shapes Kong
answers C{POST /config} with: the nested one (C{fields} mirrors the file:
C{{"services": [null, {"routes": [{"paths": ...}]}]}}) and the flattened
one of C{?flatten_errors=1} (one entry per entity in error, with its type,
name, id, tags, the entity as given and its errors as C{field}/C{message}
pairs).

L{Problems} collects errors while a file is loaded, each at its path in
the file; L{DeclarativeError} carries both shapes.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from echogate.errors import GatewayError
from echogate.schema import ENTITY
from echogate.schema.containers import ElementErrors
from echogate.schema.fields import is_uuid

__all__ = ["DeclarativeError", "Problems", "Path", "lua_text"]

#: A place in the file: keys and 0-based list positions, e.g.
#: C{("services", 0, "routes", 1)}.
Path = tuple["str | int", ...]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class DeclarativeError(GatewayError):
    """
    A declarative configuration is invalid (400, code 14, Kong's
    C{"invalid declarative configuration"}); nothing of it was loaded.

    @ivar fields: Kong's nested errors (JSON-ready: lists with C{None} at
        the positions of good entries), what L{body} answers.
    @ivar flattened_errors: Kong's C{flattened_errors}: one dict per entity
        in error (C{entity_type}, C{entity_name}, C{entity_id},
        C{entity_tags} when valid, C{entity}, C{errors}).
    @ivar remaining: the nested errors that belong to no entity (the
        top-level keys, entries that are not records): the C{fields} of
        L{flattened_body}.
    """

    status = 400
    code = 14
    name = "invalid declarative configuration"

    def __init__(self, fields: Mapping[str, Any], flattened_errors: Sequence[Mapping[str, Any]] = (),
                 remaining: Mapping[str, Any] | None = None, *, lua: str | None = None,
                 remaining_lua: str | None = None):
        super().__init__(f"declarative config is invalid: {lua if lua is not None else lua_text(fields)}",
                         fields)
        self.flattened_errors = [dict(e) for e in flattened_errors]
        self.remaining = dict(remaining) if remaining is not None else {}
        self._remaining_lua = remaining_lua if remaining_lua is not None else lua_text(self.remaining)

    def flattened_body(self) -> dict[str, Any]:
        """
        The JSON-ready body Kong answers with C{flatten_errors=1}: the
        entities' errors in C{flattened_errors}, C{fields} and C{message}
        only what belongs to no entity.
        """
        return {"code": self.code, "name": self.name,
                "message": f"declarative config is invalid: {self._remaining_lua}",
                "fields": self.remaining, "flattened_errors": self.flattened_errors}


# ---------------------------------------------------------------------------
# Kong's message: the error table as Penlight's pretty.write prints it.


def _lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _lua(value: Any) -> str:
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        value = {i: v for i, v in enumerate(value, 1) if v is not None}
    if not isinstance(value, Mapping):
        return _lua_string(str(value))
    numbers = sorted(k for k in value if isinstance(k, int))
    names = sorted(str(k) for k in value if not isinstance(k, int))
    parts: list[str] = []
    sequential = numbers == list(range(1, len(numbers) + 1))
    for n in numbers:
        parts.append(_lua(value[n]) if sequential else f"[{n}]={_lua(value[n])}")
    for name in names:
        key = name if _IDENTIFIER.match(name) else f"[{_lua_string(name)}]"
        parts.append(f"{key}={_lua(value[name])}")
    return "{" + ",".join(parts) + "}"


def lua_text(errors: Mapping[str, Any]) -> str:
    """
    C{errors} written as Kong writes its error table in the message
    (C{{services={[2]="..."}}}): lists 1-based, their good entries left out.
    """
    return _lua(errors)


# ---------------------------------------------------------------------------
# Collecting


def _json(node: Any) -> Any:
    """
    The JSON-ready form of a tree whose lists are dicts keyed by 0-based ints.
    """
    if isinstance(node, ElementErrors):
        node = node.as_list()
    if isinstance(node, Mapping):
        if node and all(isinstance(k, int) for k in node):
            out: list[Any] = [None] * (max(node) + 1)
            for k, v in node.items():
                out[k] = _json(v)
            return out
        return {str(k): _json(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_json(v) for v in node]
    return node


def _lua_tree(node: Any) -> Any:
    """
    The tree with 1-based list positions, for L{lua_text}.
    """
    if isinstance(node, ElementErrors):
        return {int(k) if k.isdigit() else k: _lua_tree(v) for k, v in node.items()}
    if isinstance(node, Mapping):
        return {(k + 1 if isinstance(k, int) else k): _lua_tree(v) for k, v in node.items()}
    return node


def _merge(into: dict[Any, Any], errors: Mapping[Any, Any]) -> None:
    for key, value in errors.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping) and not isinstance(value, ElementErrors):
            _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            old.extend(value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) and not isinstance(value, ElementErrors) \
                else value


def _singular(entity: str) -> str:
    return entity[:-1] if entity.endswith("s") else entity


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _categorize(errors: Mapping[Any, Any], prefix: str, out: list[dict[str, Any]]) -> None:
    for key in sorted(errors, key=lambda k: (isinstance(k, str) and k.isdigit() and int(k), str(k))):
        value = errors[key]
        messages = value if isinstance(value, list) else [value]
        if key == ENTITY and not prefix:
            out.extend({"type": "entity", "message": str(m)} for m in messages)
        elif isinstance(value, Mapping):
            _categorize(value, _join(prefix, key), out)
        else:
            out.extend({"type": "field", "field": _join(prefix, key), "message": str(m)}
                       for m in messages)


class Problems:
    """
    The errors found in one file, each at its path: the errors of an entity
    (L{entity_fields}, L{entity_message}: at the entity's path, from which
    its nested entities' errors hang) and the others (L{at}).
    """

    def __init__(self) -> None:
        self._entities: dict[Path, tuple[str, Mapping[str, Any]]] = {}
        self._fields: dict[Path, dict[Any, Any]] = {}
        self._messages: dict[Path, list[str]] = {}
        self._other: dict[Path, Any] = {}

    def __bool__(self) -> bool:
        return bool(self._fields or self._messages or self._other)

    def entity(self, path: Path, entity: str, given: Mapping[str, Any]) -> None:
        """
        Make C{path} the place of an entity of type C{entity}, as C{given}
        in the file (without its nested entities; what the flattened
        errors show).
        """
        self._entities[path] = (entity, given)

    def entity_fields(self, path: Path, errors: Mapping[str, Any]) -> None:
        """
        Field errors of the entity at C{path} (as a L{SchemaViolation
        <echogate.errors.SchemaViolation>} gives them).
        """
        _merge(self._fields.setdefault(path, {}), errors)

    def entity_message(self, path: Path, message: str) -> None:
        """
        An error of the entity at C{path} as a whole (a uniqueness violation).
        """
        self._messages.setdefault(path, []).append(message)

    def at(self, path: Path, message: str) -> None:
        """
        An error that belongs to no entity: a top-level key, an entry that is
        not a record.
        """
        self._other[path] = message

    def _tree(self, include_entities: bool) -> dict[Any, Any]:
        tree: dict[Any, Any] = {}

        def place(path: Path, value: Any) -> None:
            node = tree
            for step in path[:-1]:
                child = node.get(step)
                if not isinstance(child, dict):
                    child = node[step] = {} if child is None else {ENTITY: [child]}
                node = child
            last = path[-1]
            if isinstance(value, dict) and isinstance(node.get(last), dict):
                _merge(node[last], value)
            else:
                node[last] = value

        for path, message in self._other.items():
            place(path, message)
        if not include_entities:
            return tree
        for path in sorted(set(self._fields) | set(self._messages), key=len, reverse=True):
            fields = dict(self._fields.get(path, {}))
            messages = self._messages.get(path, [])
            if messages and not fields and not _has_children(tree, path):
                place(path, messages[0] if len(messages) == 1 else list(messages))
                continue
            if messages:
                fields[ENTITY] = [*fields.get(ENTITY, []), *messages]
            place(path, fields)
        return tree

    def error(self) -> DeclarativeError:
        """
        The error to raise: both of Kong's shapes.
        """
        nested = self._tree(True)
        remaining = self._tree(False)
        flattened: list[dict[str, Any]] = []
        for path, (entity, given) in self._entities.items():
            errors: list[dict[str, Any]] = []
            _categorize(self._fields.get(path, {}), "", errors)
            errors.extend({"type": "entity", "message": m} for m in self._messages.get(path, []))
            if not errors:
                continue
            entry: dict[str, Any] = {"entity_type": _singular(entity)}
            name = given.get("name")
            if isinstance(name, str) and name:
                entry["entity_name"] = name
            if isinstance(given.get("id"), str) and is_uuid(given["id"]):
                entry["entity_id"] = given["id"]
            tags = given.get("tags")
            if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
                entry["entity_tags"] = tags
            entry["entity"] = _json(dict(given))
            entry["errors"] = errors
            flattened.append(entry)
        return DeclarativeError(_json(nested), flattened, _json(remaining),
                                lua=lua_text(_lua_tree(nested)), remaining_lua=lua_text(_lua_tree(remaining)))


def _has_children(tree: Mapping[Any, Any], path: Path) -> bool:
    node: Any = tree
    for step in path:
        if not isinstance(node, Mapping) or step not in node:
            return False
        node = node[step]
    return isinstance(node, Mapping) and bool(node)
