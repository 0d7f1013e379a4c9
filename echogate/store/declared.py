"""
The store of a DB-less node (C{database = off}): L{DeclaredStore}, an
L{IStore} whose entities are those of the current declarative
configuration, read-only.

Reads (C{get}, C{page}, C{tagged}, C{load}, C{version}, C{subscribe})
answer from the records last given to L{DeclaredStore.replace}, with the
same semantics and opaque offsets as the other stores. Writes of the
configured entities fail with L{OperationUnsupported}, which the Admin API
answers as Kong does without a database (405, code 12). The one thing that
may be written is what Kong lets a DB-less node change too: the health of
upstreams' targets set through the Admin API (C{target_health_overrides}),
kept in memory until the next configuration replaces them.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from echogate.errors import GatewayError
from echogate.interfaces import IStore
from echogate.store.data import ConfigurationData
from echogate.store.memory import UNIQUE, MemoryStore

__all__ = ["DeclaredStore", "OperationUnsupported", "WRITABLE"]

#: The entities a DB-less node still writes (in memory).
WRITABLE = frozenset({"target_health_overrides"})

#: What Kong's DB-less strategy says each refused write does.
_VERBS = {"insert": "create", "update": "update", "upsert": "create or update", "delete": "remove"}


class OperationUnsupported(GatewayError):
    """
    A write of a declared entity on a node without a database (405, Kong's
    code 12, C{"operation unsupported"}): C{"cannot create 'services'
    entities when not using a database"}.
    """

    status = 405
    code = 12
    name = "operation unsupported"

    @classmethod
    def refusing(cls, operation: str, entity: str) -> "OperationUnsupported":
        """
        The error for C{operation} (C{"insert"}, C{"update"}, C{"upsert"},
        C{"delete"}) of an C{entity}.
        """
        return cls(f"cannot {_VERBS.get(operation, operation)} '{entity}' entities when not using a database")


@implementer(IStore)
@attrs.define
class DeclaredStore:
    """
    An L{IStore} over the records of a declarative configuration.

    @ivar configuration_version: 0 until the first L{replace}, then
        increased by every L{replace} (and by every write of
        L{WRITABLE}); never goes back, as the live configuration expects.
    @ivar config_hash: the hash of the current records (as given to
        L{replace}), or C{None} before the first.
    """

    configuration_version: int = 0
    config_hash: str | None = None
    _tables: MemoryStore = attrs.field(factory=MemoryStore)
    _subscribers: list[Callable[[int | None], object]] = attrs.field(factory=list)

    def replace(self, records: Mapping[str, Iterable[Mapping[str, Any]]], config_hash: str) -> int:
        """
        Make C{records} (entity name to records, Kong-shaped, complete and
        valid: a loaded declarative configuration's) the store's content in
        one step, and tell the subscribers.

        @return: the new configuration version.
        """
        tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in UNIQUE}
        for entity, rows in records.items():
            if entity in tables and entity not in WRITABLE:
                tables[entity] = {row["id"]: dict(row) for row in rows}
        self._tables = MemoryStore(tables=tables)
        self.config_hash = config_hash
        return self._bump()

    def _bump(self) -> int:
        self.configuration_version += 1
        for callback in list(self._subscribers):
            callback(self.configuration_version)
        return self.configuration_version

    # -- writes ---------------------------------------------------------------

    def _write(self, operation: str, entity: str, *args: Any) -> Deferred[Any]:
        if entity not in WRITABLE:
            return fail(OperationUnsupported.refusing(operation, entity))
        d: Deferred[Any] = getattr(self._tables, operation)(entity, *args)

        def written(result: Any) -> Any:
            if operation != "delete" or result:
                self._bump()
            return result

        return d.addCallback(written)

    def insert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        return self._write("insert", entity, record)

    def update(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        return self._write("update", entity, record)

    def upsert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        return self._write("upsert", entity, record)

    def write(self, operations: list[tuple[str, str, Mapping[str, Any]]]) -> Deferred[list[dict[str, Any]]]:
        """
        Refused as its first refused operation would be (all or nothing:
        nothing is written then).
        """
        for operation, entity, _ in operations:
            if entity not in WRITABLE:
                return fail(OperationUnsupported.refusing(operation, entity))
        tables = self._tables
        d: Deferred[list[dict[str, Any]]] = tables.write(operations)
        return d.addCallback(lambda stored: (self._bump(), stored)[1])

    def delete(self, entity: str, id: str) -> Deferred[bool]:
        return self._write("delete", entity, id)

    # -- reads ------------------------------------------------------------------

    def get(self, entity: str, key: str) -> Deferred[dict[str, Any] | None]:
        return self._tables.get(entity, key)

    def page(self, entity: str, size: int, offset: str | None = None, tags: Iterable[str] | None = None,
             tags_any: bool = False, where: Mapping[str, Any] | None = None,
             ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        return self._tables.page(entity, size, offset, tags, tags_any, where)

    def tagged(self, tag: str | None, size: int, offset: str | None = None,
               ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        return self._tables.tagged(tag, size, offset)

    def load(self) -> Deferred[ConfigurationData]:
        """
        Every record, at the current L{configuration_version}.
        """
        version = self.configuration_version
        d: Deferred[ConfigurationData] = self._tables.load()
        return d.addCallback(lambda data: attrs.evolve(data, version=version))

    def version(self) -> Deferred[int]:
        return succeed(self.configuration_version)

    def subscribe(self, callback: Callable[[int | None], object]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)
