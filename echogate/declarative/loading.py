"""
Reading a declarative configuration: parse (YAML or JSON), check the
format, flatten the nesting, resolve references by name or id, give
every entity its id, and validate and complete each one as the Admin API
would (L{echogate.entities.writes.prepare_insert}). Every error is
collected with its path before anything is returned.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path as FilePath
from typing import Any, Mapping

import attrs
import yaml

from echogate.declarative.config import Declarative
from echogate.declarative.layout import (
    ENTITY_ORDER,
    FORMAT_VERSIONS,
    IGNORED_KEYS,
    META_KEYS,
    NESTED,
    REFERENCE_KEYS,
    UNIQUE_TOGETHER,
    derived_id,
    entity_order,
    migrate_path,
    natural_key,
    nesting,
    types_of,
)
from echogate.declarative.problems import DeclarativeError, Path, Problems
from echogate.entities import credentials, writes
from echogate.entities.schemas import EntityType
from echogate.errors import SchemaViolation
from echogate.schema.fields import Foreign, is_uuid

__all__ = ["load", "load_file", "load_data", "parse"]

#: Stands in for a reference that names nothing, so that validation does
#: not report the field a second time.
_UNRESOLVED = "00000000-0000-0000-0000-000000000000"


def _parse_error(reason: str) -> DeclarativeError:
    message = f"failed parsing declarative configuration: {reason}"
    problems = Problems()
    problems.at(("error",), message)
    return problems.error()


#: The deepest nesting of objects and arrays a configuration may have
#: (Kong's own are a dozen deep at most).
MAX_DEPTH = 64

#: How many values the aliases of a YAML document (or any value a JSON
#: body shares) may add to it once expanded, strings counted by
#: L{_STRING_UNIT} characters: a "billion laughs" document of a few
#: hundred bytes expands to billions.
MAX_ALIAS_EXPANSION = 100_000

_STRING_UNIT = 64

#: The longest integer scalar YAML may hold (in characters): PyYAML turns
#: C{1:2:3:...} (base 60) into an integer in quadratic time.
MAX_INTEGER_TEXT = 64


class _SafeLoader(yaml.SafeLoader):
    """
    PyYAML's safe loader (no Python tags), except that an integer written
    with more than L{MAX_INTEGER_TEXT} characters is refused.
    """

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if isinstance(node.value, str) and len(node.value) > MAX_INTEGER_TEXT:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of more than {MAX_INTEGER_TEXT} characters", node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _SafeLoader.construct_yaml_int)


def _weight(value: Any) -> int:
    if isinstance(value, str):
        return 1 + len(value) // _STRING_UNIT
    return 1


def check_shape(data: Any) -> str | None:
    """
    Why C{data} (parsed YAML or JSON) is refused before anything walks it,
    or C{None}: it refers to itself (a YAML alias inside its own anchor),
    it is nested more than L{MAX_DEPTH} deep, or values it shares (YAML
    aliases) expand it by more than L{MAX_ALIAS_EXPANSION}. Each shared
    object is measured once, without recursion, so the check itself takes
    time in proportion to the text.
    """
    # id of a container -> (expanded weight, depth); written: the weight of
    # each distinct value once.
    measured: dict[int, tuple[int, int]] = {}
    open_: set[int] = set()
    long_strings: set[int] = set()
    written = 0
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, done = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        key = id(value)
        children = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value
        if done:
            weight, depth = 1, 1
            for child in children:
                if isinstance(child, (dict, list)):
                    child_weight, child_depth = measured[id(child)]
                    weight += child_weight
                    depth = max(depth, child_depth + 1)
                else:
                    weight += _weight(child)
            open_.discard(key)
            measured[key] = (weight, depth)
            if depth > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            continue
        if key in measured:
            continue
        if key in open_:
            return "a value contains itself (a recursive alias)"
        open_.add(key)
        written += 1
        for child in children:
            weight = _weight(child) if not isinstance(child, (dict, list)) else 0
            if weight > 1:
                # A long string may be shared (an alias to a scalar): its
                # text counts as written once.
                if id(child) in long_strings:
                    continue
                long_strings.add(id(child))
            written += weight
        stack.append((value, True))
        for child in children:
            if isinstance(child, (dict, list)):
                if id(child) in open_:
                    return "a value contains itself (a recursive alias)"
                stack.append((child, False))
    if isinstance(data, (dict, list)):
        total = measured[id(data)][0]
        if total - written > MAX_ALIAS_EXPANSION:
            return f"aliases expand the document by more than {MAX_ALIAS_EXPANSION} values"
    return None


def parse(text: str | bytes) -> Any:
    """
    The data in C{text}: JSON when it reads as JSON, YAML otherwise (the
    safe loader, integers of at most L{MAX_INTEGER_TEXT} characters), and
    of a shape L{check_shape} accepts.

    @raise DeclarativeError: neither parses, the result is not an object,
        or L{check_shape} refuses it (Kong's C{{"error": "failed parsing
        declarative configuration: ..."}}).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _parse_error(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    text = text.lstrip("\ufeff")
    data: Any = None
    parsed = False
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
            parsed = True
        except ValueError:
            pass
        except RecursionError:
            raise _parse_error(f"nested more than {MAX_DEPTH} levels deep") from None
    if not parsed:
        try:
            data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as e:
            raise _parse_error(" ".join(str(e).split())) from None
        except ValueError as e:
            raise _parse_error(str(e)) from None
        except RecursionError:
            raise _parse_error(f"nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise _parse_error("expected an object")
    problem = check_shape(data)
    if problem is not None:
        raise _parse_error(problem)
    return data


@attrs.define
class _Item:
    """
    One entity of the file, flattened out of its nesting.
    """

    entity: str
    path: Path
    body: dict[str, Any]
    parent: "_Item | None" = None
    parent_field: str | None = None
    id: str = ""


def _walk(entity: str, values: Any, path: Path, parent: _Item | None, parent_field: str | None,
          items: list[_Item], problems: Problems,
          nested: Mapping[str, Mapping[str, str]] = NESTED) -> None:
    if not isinstance(values, list):
        if parent is None:
            problems.at(path, "expected an array")
        else:
            problems.entity_fields(parent.path, {str(path[-1]): "expected an array"})
        return
    children = nested.get(entity, {})
    for index, value in enumerate(values):
        where = (*path, index)
        if entity == "snis" and parent is not None and isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            problems.at(where, "expected a record")
            continue
        own = {k: v for k, v in value.items() if k not in children and k not in IGNORED_KEYS}
        given = dict(own)
        parent_id = parent.body.get("id") if parent is not None else None
        if parent is not None and parent_field not in given and isinstance(parent_id, str) and is_uuid(parent_id):
            given[parent_field or ""] = {"id": parent_id}
        problems.entity(where, entity, given)
        item = _Item(entity, where, own, parent, parent_field)
        items.append(item)
        for key, field in children.items():
            if value.get(key) is not None:
                _walk(key, value[key], (*where, key), item, field, items, problems, nested)


def _migrate(data: dict[str, Any]) -> None:
    """
    Format 1.1 and 2.1: mark regex paths of routes, top-level and nested
    in services, with C{~}.
    """
    top = data.get("routes")
    routes: list[Any] = list(top) if isinstance(top, list) else []
    services = data.get("services")
    for service in services if isinstance(services, list) else []:
        if isinstance(service, dict) and isinstance(service.get("routes"), list):
            routes.extend(service["routes"])
    for route in routes:
        if isinstance(route, dict) and isinstance(route.get("paths"), list):
            route["paths"] = [migrate_path(p) for p in route["paths"]]


def _check_meta(data: Mapping[str, Any], problems: Problems,
                order: tuple[str, ...] = ENTITY_ORDER) -> tuple[str | None, bool]:
    version = data.get("_format_version")
    if version is None:
        problems.at(("_format_version",), "required field missing")
    elif not isinstance(version, str):
        problems.at(("_format_version",), "expected a string")
    elif version not in FORMAT_VERSIONS:
        problems.at(("_format_version",), "expected one of: " + ", ".join(FORMAT_VERSIONS))
    transform = data.get("_transform", True)
    if transform is None:
        transform = True
    if not isinstance(transform, bool):
        problems.at(("_transform",), "expected a boolean")
        transform = True
    if data.get("_comment") is not None and not isinstance(data["_comment"], str):
        problems.at(("_comment",), "expected a string")
    for key in data:
        if key not in META_KEYS and key not in order:
            problems.at((str(key),), "unknown field")
    return (version if isinstance(version, str) else None), transform


def _uniqueness(entity: str, key: str, value: Any) -> str:
    return f"uniqueness violation: '{entity}' entity with {key} set to '{value}' already declared"


class _Loader:
    """
    The state of one load: the entities seen so far by id and by reference
    key, and the problems found.
    """

    def __init__(self, plugins: Mapping[str, Any], now: int, transform: bool, problems: Problems,
                 order: tuple[str, ...] = ENTITY_ORDER):
        self.plugins = plugins
        self.types: Mapping[str, EntityType] = types_of(plugins)
        self.now = now
        self.transform = transform
        self.problems = problems
        self.by_id: dict[str, dict[str, _Item]] = {e: {} for e in order}
        self.by_key: dict[str, dict[str, _Item]] = {e: {} for e in order}
        self.seen_keys: dict[str, int] = {}
        self.unique: dict[tuple[str, str], set[str]] = {}

    def resolve(self, item: _Item) -> None:
        """
        Set the parent's foreign key on a nested entity and turn references
        by name or id into C{{"id": ...}}.
        """
        body = item.body
        if item.parent is not None and item.parent_field is not None:
            body[item.parent_field] = {"id": item.parent.id}
        schema = self.types[item.entity].schema
        for field in self.types[item.entity].foreign:
            value = body.get(field)
            if field == item.parent_field or value is None:
                continue
            definition = schema.fields[field]
            target = definition.entity if isinstance(definition, Foreign) else field
            if isinstance(value, str):
                key = value
            elif isinstance(value, Mapping) and isinstance(value.get("id"), str):
                key = value["id"]
            else:
                continue
            found = self.by_key[target].get(key) if target in REFERENCE_KEYS else None
            if found is None:
                found = self.by_id[target].get(key.lower())
            if found is not None:
                body[field] = {"id": found.id}
                continue
            shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            self.problems.entity_fields(item.path, {
                field: f"invalid reference '{field}: {shown}' (no such entry in '{target}')"})
            body[field] = {"id": _UNRESOLVED}

    def identify(self, item: _Item) -> None:
        """
        Give C{item} its id (its own, or one derived from its natural key)
        and register it, reporting a duplicate id or reference key.
        """
        given = item.body.get("id")
        if isinstance(given, str) and is_uuid(given):
            item.id = given.lower()
        else:
            key = natural_key(item.entity, item.body, self.types[item.entity])
            seen = self.seen_keys.get(f"{item.entity}:{key}", 0)
            self.seen_keys[f"{item.entity}:{key}"] = seen + 1
            if seen and (item.entity not in REFERENCE_KEYS or item.body.get(REFERENCE_KEYS[item.entity]) is None):
                key = f"{key}#{seen}"
            item.id = derived_id(item.entity, key)
        failed = False
        field = REFERENCE_KEYS.get(item.entity)
        value = item.body.get(field) if field else None
        if field and isinstance(value, str):
            if value in self.by_key[item.entity]:
                self.problems.entity_message(item.path, _uniqueness(item.entity, field, value))
                failed = True
            else:
                self.by_key[item.entity][value] = item
        if item.id in self.by_id[item.entity]:
            if not failed:
                self.problems.entity_message(item.path, _uniqueness(item.entity, "primary key", item.id))
        else:
            self.by_id[item.entity][item.id] = item

    def prepare(self, item: _Item) -> dict[str, Any] | None:
        """
        The complete record of C{item}, or C{None} when it is invalid (its
        errors reported).
        """
        entity = item.entity
        body = dict(item.body)
        errors: dict[str, Any] = {}
        stamp = body.get("updated_at")
        now = self.now
        if stamp is not None:
            if isinstance(stamp, int) and not isinstance(stamp, bool):
                now = stamp
            else:
                errors["updated_at"] = "expected an integer"
        if entity in credentials.GENERATED:
            credentials.fill_generated(entity, body)
        try:
            record = writes.prepare_insert(entity, body, plugins=self.plugins, now=now, new_id=item.id)
        except SchemaViolation as e:
            errors = {**dict(e.fields or {}), **errors}
        if errors:
            self.problems.entity_fields(item.path, errors)
            return None
        if entity == "certificates":
            record.pop("snis", None)
        if entity == credentials.BASICAUTH and self.transform:
            record["password"] = credentials.hash_password(record["password"], salt=_salt(record["id"]))
        self._check_unique(item, record)
        return record

    def _check_unique(self, item: _Item, record: dict[str, Any]) -> None:
        entity = item.entity
        checks: list[tuple[str, ...]] = [(f,) for f in self.types[entity].unique
                                         if f != REFERENCE_KEYS.get(entity)]
        if entity in UNIQUE_TOGETHER:
            checks.append(UNIQUE_TOGETHER[entity])
        for fields in checks:
            values = [record.get(f) for f in fields]
            if all(v is None for v in values):
                continue
            shown = [v["id"] if isinstance(v, Mapping) else ("" if v is None else v) for v in values]
            seen = self.unique.setdefault((entity, ",".join(fields)), set())
            key = json.dumps(shown)
            if key in seen:
                self.problems.entity_message(item.path, _uniqueness(entity, ", ".join(fields), ", ".join(
                    str(s) for s in shown)))
            seen.add(key)


def _salt(record_id: str) -> bytes:
    """
    The salt of a basic-auth password hashed on load: fixed per credential
    id, so that the same file loads to the same records (and hash).
    """
    return hashlib.sha256(b"echogate declarative basic-auth salt\0" + record_id.encode("ascii")).digest()[:16]


def load_data(data: Mapping[str, Any], plugins: Mapping[str, Any], *, now: int | None = None) -> Declarative:
    """
    Load an already parsed declarative configuration (not changed).

    @param plugins: the enabled plugins by name (each with a
        C{config_schema}), as the Admin API takes them.
    @param now: the time, integer seconds, given to entities whose
        C{created_at}/C{updated_at} the file does not set (default: the
        current time).
    @raise DeclarativeError: listing every error.
    """
    problems = Problems()
    if not isinstance(data, Mapping):
        raise _parse_error("expected an object")
    problem = check_shape(dict(data))
    if problem is not None:
        raise _parse_error(problem)
    work: dict[str, Any] = copy.deepcopy(dict(data))
    order = entity_order(plugins)
    nested = nesting(plugins)
    version, transform = _check_meta(work, problems, order)
    if version in ("1.1", "2.1"):
        _migrate(work)
    items: list[_Item] = []
    for entity in order:
        if work.get(entity) is not None:
            _walk(entity, work[entity], (entity,), None, None, items, problems, nested)
    loader = _Loader(plugins, int(time.time()) if now is None else now, transform, problems, order)
    records: dict[str, list[dict[str, Any]]] = {e: [] for e in order}
    for entity in order:
        for item in items:
            if item.entity == entity:
                loader.resolve(item)
                loader.identify(item)
        for item in items:
            if item.entity == entity:
                record = loader.prepare(item)
                if record is not None:
                    records[entity].append(record)
    if problems:
        raise problems.error()
    return Declarative.build(version or FORMAT_VERSIONS[-1], transform,
                             {e: tuple(r) for e, r in records.items()}, plugins=plugins)


def load(text: str | bytes, plugins: Mapping[str, Any], *, now: int | None = None) -> Declarative:
    """
    Load a declarative configuration from its text (YAML or JSON).

    @param plugins: the enabled plugins by name.
    @param now: see L{load_data}.
    @return: every entity, validated and complete.
    @raise DeclarativeError: the text does not parse, or listing every
        error in it.
    """
    return load_data(parse(text), plugins, now=now)


def load_file(path: str | FilePath, plugins: Mapping[str, Any], *, now: int | None = None) -> Declarative:
    """
    Load a declarative configuration file (YAML or JSON).

    @raise OSError: the file cannot be read.
    @raise DeclarativeError: see L{load}.
    """
    return load(FilePath(path).read_bytes(), plugins, now=now)
