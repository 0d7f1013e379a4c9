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


def parse(text: str | bytes) -> Any:
    """
    The data in C{text}: JSON when it reads as JSON, YAML (C{safe_load})
    otherwise.

    @raise DeclarativeError: neither parses, or the result is not an
        object (Kong's C{{"error": "failed parsing declarative
        configuration: ..."}}).
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
    if not parsed:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise _parse_error(" ".join(str(e).split())) from None
    if not isinstance(data, dict):
        raise _parse_error("expected an object")
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
