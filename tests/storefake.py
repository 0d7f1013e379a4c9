"""
An in-memory L{IStore} for unit tests, with the real store's error
behaviour: unique fields, foreign keys that must point somewhere, services
that cannot be deleted while routes reference them, and plugins deleted
with what they are scoped to.

Test hooks: L{MemoryStore.fail_next} makes the next call fail with a
given exception; L{MemoryStore.hang_version} makes C{version()} never
answer; L{MemoryStore.writes} counts successful writes.
"""
from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.python.failure import Failure
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from echogate.errors import (
    ForeignKeyViolation,
    NotFound,
    PrimaryKeyViolation,
    UniqueViolation,
)
from echogate.interfaces import IStore
from echogate.store.offsets import InvalidOffset
from echogate.store.data import ConfigurationData

#: entity -> fields that are unique on their own.
UNIQUE: Mapping[str, tuple[str, ...]] = {
    "services": ("name",),
    "routes": ("name",),
    "consumers": ("username", "custom_id"),
    "plugins": (),
}

#: entity -> the fields C{get} accepts besides the id.
ENDPOINT_KEYS: Mapping[str, tuple[str, ...]] = {
    "services": ("name",),
    "routes": ("name",),
    "consumers": ("username", "custom_id"),
    "plugins": (),
}

#: entity -> foreign key field -> (referenced entity, on delete).
FOREIGN: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "services": {},
    "routes": {"service": ("services", "restrict")},
    "consumers": {},
    "plugins": {
        "service": ("services", "cascade"),
        "route": ("routes", "cascade"),
        "consumer": ("consumers", "cascade"),
    },
}

#: A plugin's name is unique within its scope.
PLUGIN_SCOPE = ("name", "service", "route", "consumer")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _pretty(fields: Mapping[str, Any]) -> str:
    def one(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, Mapping):
            return _pretty(value)
        if isinstance(value, str):
            return f'"{value}"'
        return str(value)

    return "{" + ",".join(f"{k}={one(v)}" for k, v in sorted(fields.items())) + "}"


def encode_offset(last_id: str) -> str:
    """
    The opaque offset that continues a page after the record C{last_id}.
    """
    return base64.urlsafe_b64encode(last_id.encode("ascii")).decode("ascii").rstrip("=")


def _decode_offset(offset: str) -> str:
    try:
        padded = offset + "=" * (-len(offset) % 4)
        last_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidOffset(offset)
    if not _UUID.match(last_id):
        raise InvalidOffset(offset)
    return last_id


@implementer(IStore)
@attrs.define
class MemoryStore:
    """
    An L{IStore} that keeps records in dictionaries.

    @ivar tables: entity -> id -> record.
    @ivar configuration_version: bumped by every write.
    @ivar writes: the number of successful writes.
    """

    tables: dict[str, dict[str, dict[str, Any]]] = attrs.field(
        factory=lambda: {name: {} for name in UNIQUE}
    )
    configuration_version: int = 0
    writes: int = 0
    hang_version: bool = False
    _failure: Exception | None = None
    _subscribers: list[Callable[[int | None], None]] = attrs.field(factory=list)

    def fail_next(self, exception: Exception) -> None:
        """
        Make the next call of any method fail with C{exception}.
        """
        self._failure = exception

    def _check_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _bump(self) -> None:
        self.configuration_version += 1
        self.writes += 1
        for callback in list(self._subscribers):
            callback(self.configuration_version)

    def _check_unique(self, entity: str, record: Mapping[str, Any]) -> None:
        others = [r for r in self.tables[entity].values() if r["id"] != record["id"]]
        for field in UNIQUE[entity]:
            value = record.get(field)
            if value is not None and any(r.get(field) == value for r in others):
                raise UniqueViolation({field: value})
        if entity == "plugins":
            scope = {field: record.get(field) for field in PLUGIN_SCOPE}
            for other in others:
                if all(other.get(field) == value for field, value in scope.items()):
                    raise UniqueViolation(scope)

    def _check_foreign(self, entity: str, record: Mapping[str, Any]) -> None:
        for field, (parent, _) in FOREIGN[entity].items():
            reference = record.get(field)
            if reference is None:
                continue
            if reference.get("id") not in self.tables[parent]:
                raise ForeignKeyViolation(
                    f"the foreign key '{_pretty(reference)}' does not reference"
                    f" an existing '{parent}' entity.",
                    {field: reference},
                )

    def _write(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        self._check_unique(entity, record)
        self._check_foreign(entity, record)
        stored = copy.deepcopy(dict(record))
        self.tables[entity][stored["id"]] = stored
        self._bump()
        return copy.deepcopy(stored)

    def _answer(self, call: Callable[[], Any]) -> Deferred[Any]:
        try:
            self._check_failure()
            return succeed(call())
        except Exception as e:
            return fail(e)

    def insert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        def insert() -> dict[str, Any]:
            if record["id"] in self.tables[entity]:
                raise PrimaryKeyViolation(
                    f"primary key violation on key '{_pretty({'id': record['id']})}'",
                    {"id": record["id"]},
                )
            return self._write(entity, record)

        return self._answer(insert)

    def update(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        def update() -> dict[str, Any]:
            if record["id"] not in self.tables[entity]:
                raise NotFound(
                    f"could not find the entity with primary key '{_pretty({'id': record['id']})}'",
                    {"id": record["id"]},
                )
            return self._write(entity, record)

        return self._answer(update)

    def upsert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        return self._answer(lambda: self._write(entity, record))

    def write(self, operations: list[tuple[str, str, Mapping[str, Any]]]) -> Deferred[list[dict[str, Any]]]:
        """
        Several writes, all or nothing (like one transaction).
        """
        saved = {name: dict(rows) for name, rows in self.tables.items()}
        counters = (self.configuration_version, self.writes)
        results: list[Any] = []
        for operation, entity, record in operations:
            outcome: list[Any] = []
            getattr(self, operation)(entity, record).addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                self.tables = saved
                self.configuration_version, self.writes = counters
                return fail(outcome[0])
            results.append(outcome[0])
        return succeed(results)

    def _referrers(self, entity: str, id: str) -> Iterable[tuple[str, str, str]]:
        for child, fields in FOREIGN.items():
            for field, (parent, on_delete) in fields.items():
                if parent != entity:
                    continue
                for record in self.tables[child].values():
                    if (record.get(field) or {}).get("id") == id:
                        yield child, record["id"], on_delete

    def delete(self, entity: str, id: str) -> Deferred[bool]:
        def delete() -> bool:
            if id not in self.tables[entity]:
                return False
            referrers = list(self._referrers(entity, id))
            for child, _, on_delete in referrers:
                if on_delete == "restrict":
                    raise ForeignKeyViolation(
                        f"an existing '{child}' entity references this '{entity}' entity",
                        {"@referenced_by": child},
                    )
            for child, child_id, _ in referrers:
                self.tables[child].pop(child_id, None)
            del self.tables[entity][id]
            self._bump()
            return True

        return self._answer(delete)

    def _find(self, entity: str, key: str) -> dict[str, Any] | None:
        table = self.tables[entity]
        if _UUID.match(key):
            return table.get(key.lower())
        for field in ENDPOINT_KEYS[entity]:
            for record in table.values():
                if record.get(field) == key:
                    return record
        return None

    def get(self, entity: str, key: str) -> Deferred[dict[str, Any] | None]:
        def get() -> dict[str, Any] | None:
            return copy.deepcopy(self._find(entity, key))

        return self._answer(get)

    def page(
        self,
        entity: str,
        size: int,
        offset: str | None = None,
        tags: Iterable[str] | None = None,
        tags_any: bool = False,
        where: Mapping[str, str] | None = None,
    ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        def page() -> tuple[list[dict[str, Any]], str | None]:
            records = sorted(self.tables[entity].values(), key=lambda r: r["id"])
            if offset is not None:
                last_id = _decode_offset(offset)
                records = [r for r in records if r["id"] > last_id]
            if tags is not None:
                wanted = set(tags)
                test = wanted.intersection if tags_any else wanted.issubset
                records = [r for r in records if test(r.get("tags") or ())]
            for field, id in (where or {}).items():
                records = [r for r in records if (r.get(field) or {}).get("id") == id]
            chunk = records[:size]
            next_offset = encode_offset(chunk[-1]["id"]) if len(records) > size else None
            return copy.deepcopy(chunk), next_offset

        return self._answer(page)

    def load(self) -> Deferred[ConfigurationData]:
        def load() -> ConfigurationData:
            return ConfigurationData(
                version=self.configuration_version,
                services=tuple(copy.deepcopy(list(self.tables["services"].values()))),
                routes=tuple(copy.deepcopy(list(self.tables["routes"].values()))),
                plugins=tuple(copy.deepcopy(list(self.tables["plugins"].values()))),
            )

        return self._answer(load)

    def version(self) -> Deferred[int]:
        if self.hang_version:
            return Deferred()
        return self._answer(lambda: self.configuration_version)

    def subscribe(self, callback: Callable[[int | None], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)
