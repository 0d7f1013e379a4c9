"""
An in-memory L{IStore} (L{MemoryStore}, public as
L{echogate.testing.MemoryStore}) for tests, with PostgreSQL's behaviour:
unique fields, foreign keys that must point somewhere, services that cannot
be deleted while routes reference them, plugins and credentials deleted with
what they belong to, the same opaque page offsets, and writes that are
all or nothing. C{tests/store/test_contract.py} runs one suite against it
and against L{echogate.store.postgres.PostgresStore}.

Test hooks: L{MemoryStore.fail_next} makes the next call fail with a
given exception; L{MemoryStore.hang_version} makes C{version()} never
answer; L{MemoryStore.writes} counts successful writes.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from echogate.errors import (
    ForeignKeyViolation,
    NotFound,
    PrimaryKeyViolation,
    UniqueViolation,
)
from echogate.interfaces import IStore
from echogate.store.data import ConfigurationData
from echogate.store.offsets import decode_offset, encode_offset
from echogate.store.pgtables import table_of
from echogate.store.tagged import Position, decode_tag_offset, encode_tag_offset, tag_row

#: entity -> fields that are unique on their own.
UNIQUE: Mapping[str, tuple[str, ...]] = {
    "services": ("name",),
    "routes": ("name",),
    "consumers": ("username", "custom_id"),
    "plugins": (),
    "keyauth_credentials": ("key",),
    "basicauth_credentials": ("username",),
    "jwt_secrets": ("key",),
    "acls": (),
    "upstreams": ("name",),
    "targets": (),
    "target_health_overrides": (),
    "certificates": (),
    "snis": ("name",),
    "ca_certificates": ("cert_digest",),
}

#: entity -> the fields C{get} accepts besides the id: the PostgreSQL
#: store's, so that the two stores address records alike.
ENDPOINT_KEYS: Mapping[str, tuple[str, ...]] = {entity: table_of(entity).keys for entity in UNIQUE}

#: entity -> foreign key field -> (referenced entity, on delete).
FOREIGN: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "services": {"client_certificate": ("certificates", "restrict")},
    "routes": {"service": ("services", "restrict")},
    "consumers": {},
    "plugins": {
        "service": ("services", "cascade"),
        "route": ("routes", "cascade"),
        "consumer": ("consumers", "cascade"),
    },
    "keyauth_credentials": {"consumer": ("consumers", "cascade")},
    "basicauth_credentials": {"consumer": ("consumers", "cascade")},
    "jwt_secrets": {"consumer": ("consumers", "cascade")},
    "acls": {"consumer": ("consumers", "cascade")},
    "upstreams": {},
    "targets": {"upstream": ("upstreams", "cascade")},
    "target_health_overrides": {
        "upstream": ("upstreams", "cascade"),
        "target": ("targets", "cascade"),
    },
    "certificates": {},
    "snis": {"certificate": ("certificates", "cascade")},
    "ca_certificates": {},
}

#: entity -> the fields that are unique together (a plugin's name within
#: its scope, a consumer's ACL group).
UNIQUE_TOGETHER: Mapping[str, tuple[str, ...]] = {
    "plugins": ("name", "service", "route", "consumer"),
    "acls": ("consumer", "group"),
    "targets": ("upstream", "target"),
    "target_health_overrides": ("target", "address"),
}

#: The tables L{MemoryStore.load} reads (L{ConfigurationData}'s fields;
#: C{plugin_entities} is every declared entity's records).
_LOADED = tuple(f.name for f in attrs.fields(ConfigurationData) if f.name not in ("version", "plugin_entities"))

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
    _subscribers: list[Callable[[int | None], object]] = attrs.field(factory=list)
    #: Entities that plugins declare: name -> (unique fields, endpoint keys,
    #: foreign key field -> parent collection), see L{declare}.
    _declared: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]] = attrs.field(factory=dict)

    def declare(self, entity: str, *, unique: Iterable[str] = (), keys: Iterable[str] = (),
                foreign: Mapping[str, str] | None = None) -> None:
        """
        Store the records of C{entity}, an entity a plugin declares (as the
        generic table of L{echogate.store.postgres.PostgresStore} does):
        C{unique} fields unique among its records, C{keys} accepted by
        C{get} besides the id, C{foreign} fields referencing a parent
        (consumers, services or routes), deleted with it.
        """
        if entity in UNIQUE:
            raise ValueError(f"{entity!r} is a core entity")
        self._declared[entity] = (tuple(unique), tuple(keys), dict(foreign or {}))
        self.tables.setdefault(entity, {})

    def _unique(self, entity: str) -> tuple[str, ...]:
        declared = self._declared.get(entity)
        return declared[0] if declared is not None else UNIQUE[entity]

    def _keys(self, entity: str) -> tuple[str, ...]:
        declared = self._declared.get(entity)
        return declared[1] if declared is not None else ENDPOINT_KEYS[entity]

    def _foreign(self) -> dict[str, Mapping[str, tuple[str, str]]]:
        every: dict[str, Mapping[str, tuple[str, str]]] = dict(FOREIGN)
        for name, (_, _, foreign) in self._declared.items():
            every[name] = {field: (parent, "cascade") for field, parent in foreign.items()}
        return every

    def _table(self, entity: str) -> dict[str, dict[str, Any]]:
        if entity not in UNIQUE and entity not in self._declared:
            raise ValueError(f"unknown entity {entity!r}")
        return self.tables[entity]

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
        others = [r for r in self._table(entity).values() if r["id"] != record["id"]]
        for field in self._unique(entity):
            value = record.get(field)
            if value is not None and any(r.get(field) == value for r in others):
                raise UniqueViolation({field: value})
        together = UNIQUE_TOGETHER.get(entity)
        if together:
            scope = {field: record.get(field) for field in together}
            for other in others:
                if all(other.get(field) == value for field, value in scope.items()):
                    raise UniqueViolation(scope)

    def _check_foreign(self, entity: str, record: Mapping[str, Any]) -> None:
        for field, (parent, _) in self._foreign()[entity].items():
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
            if record["id"] in self._table(entity):
                raise PrimaryKeyViolation(
                    f"primary key violation on key '{_pretty({'id': record['id']})}'",
                    {"id": record["id"]},
                )
            return self._write(entity, record)

        return self._answer(insert)

    def update(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        def update() -> dict[str, Any]:
            if record["id"] not in self._table(entity):
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
            if operation == "delete":
                self._delete_record(entity, record["id"]).addBoth(outcome.append)
            else:
                getattr(self, operation)(entity, record).addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                self.tables = saved
                self.configuration_version, self.writes = counters
                return fail(outcome[0])
            results.append(outcome[0])
        return succeed(results)

    def _referrers(self, entity: str, id: str) -> Iterable[tuple[str, str, str]]:
        for child, fields in self._foreign().items():
            for field, (parent, on_delete) in fields.items():
                if parent != entity:
                    continue
                for record in self.tables[child].values():
                    if (record.get(field) or {}).get("id") == id:
                        yield child, record["id"], on_delete

    def _delete_record(self, entity: str, id: str) -> Deferred[dict[str, Any]]:
        """
        Delete as L{delete} does; fire with the record deleted, or fail
        with L{NotFound} (C{write}'s C{"delete"}).
        """
        found = copy.deepcopy(self.tables[entity].get(id))

        def deleted(existed: bool) -> dict[str, Any]:
            if not existed or found is None:
                raise NotFound(
                    f"could not find the entity with primary key '{_pretty({'id': id})}'",
                    {"id": id},
                )
            return found

        return self.delete(entity, id).addCallback(deleted)

    def delete(self, entity: str, id: str) -> Deferred[bool]:
        def delete() -> bool:
            if id not in self._table(entity):
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
        table = self._table(entity)
        if _UUID.match(key):
            return table.get(key.lower())
        for field in self._keys(entity):
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
            records = sorted(self._table(entity).values(), key=lambda r: r["id"])
            if offset is not None:
                last_id = decode_offset(offset)
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

    def tagged(self, tag: str | None, size: int, offset: str | None = None,
               ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        """
        See L{IStore.tagged}: every table's records, in the order
        L{echogate.store.tagged} describes.
        """
        def tagged() -> tuple[list[dict[str, Any]], str | None]:
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"size must be a positive integer, not {size!r}")
            after = decode_tag_offset(offset) if offset is not None else None
            rows: list[tuple[Position, str]] = sorted(
                ((record["id"], name, ordinality), value)
                for name in (*_LOADED, *self._declared)
                for record in self.tables[name].values()
                for ordinality, value in enumerate(record.get("tags") or (), 1)
                if tag is None or value == tag)
            if after is not None:
                rows = [row for row in rows if row[0] > after]
            chunk = rows[:size]
            next_offset = encode_tag_offset(chunk[-1][0]) if len(rows) > size else None
            return [tag_row(id, name, value) for (id, name, _), value in chunk], next_offset

        return self._answer(tagged)

    def load(self) -> Deferred[ConfigurationData]:
        def load() -> ConfigurationData:
            # In the order PostgreSQL reads them: by creation time, then id.
            def ordered(name: str) -> list[dict[str, Any]]:
                return sorted(self.tables[name].values(), key=lambda r: (r.get("created_at") or 0, r["id"]))

            declared = sorted(((r.get("created_at") or 0, r["id"]), name, r)
                              for name in self._declared for r in self.tables[name].values())
            return ConfigurationData(version=self.configuration_version, **{
                name: tuple(copy.deepcopy(ordered(name))) for name in _LOADED},
                plugin_entities=tuple({"entity": name, "record": copy.deepcopy(record)}
                                      for _, name, record in declared))

        return self._answer(load)

    def version(self) -> Deferred[int]:
        if self.hang_version:
            return Deferred()
        return self._answer(lambda: self.configuration_version)

    def subscribe(self, callback: Callable[[int | None], object]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)


__all__ = ["MemoryStore", "encode_offset"]
