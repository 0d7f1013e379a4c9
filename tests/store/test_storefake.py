"""
Tests for L{tests.storefake.MemoryStore}: the test double must fail the
way the real store does, or the Admin API's tests prove nothing.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.errors import (
    DatabaseUnavailable,
    ForeignKeyViolation,
    NotFound,
    PrimaryKeyViolation,
    UniqueViolation,
)
from echogate.interfaces import IStore
from echogate.store.offsets import InvalidOffset
from tests.storefake import MemoryStore, encode_offset

S1 = "00000000-0000-4000-8000-000000000001"
S2 = "00000000-0000-4000-8000-000000000002"
R1 = "00000000-0000-4000-8000-000000000011"
P1 = "00000000-0000-4000-8000-000000000021"
C1 = "00000000-0000-4000-8000-000000000031"


def service(id: str, name: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:
    return {"id": id, "name": name, "host": "example.com", "tags": tags}


def route(id: str, service_id: str | None, name: str | None = None) -> dict[str, Any]:
    return {"id": id, "name": name, "paths": ["/"],
            "service": {"id": service_id} if service_id else None, "tags": None}


def plugin(id: str, name: str = "p", **scope: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": id, "name": name, "config": {}, "tags": None}
    for field in ("service", "route", "consumer"):
        record[field] = {"id": scope[field]} if field in scope else None
    return record


class MemoryStoreTests(SynchronousTestCase):
    """
    Tests for L{MemoryStore}.
    """

    def setUp(self) -> None:
        self.store = MemoryStore()

    def insert(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.successResultOf(self.store.insert(entity, record))

    def test_interface(self) -> None:
        """
        L{MemoryStore} provides L{IStore}.
        """
        verifyObject(IStore, self.store)

    def test_insert_get(self) -> None:
        """
        An inserted record can be read back by id or by name, as a copy.
        """
        stored = self.insert("services", service(S1, "one"))
        self.assertEqual(stored, service(S1, "one"))
        self.assertEqual(self.successResultOf(self.store.get("services", S1)), stored)
        found = self.successResultOf(self.store.get("services", "one"))
        found["host"] = "changed"
        self.assertEqual(self.successResultOf(self.store.get("services", "one"))["host"],
                         "example.com")
        self.assertIsNone(self.successResultOf(self.store.get("services", "two")))

    def test_uuid_key_is_id(self) -> None:
        """
        A key written as a UUID is only ever an id, never a name.
        """
        self.insert("services", service(S1, S2))
        self.assertIsNone(self.successResultOf(self.store.get("services", S2)))
        self.assertEqual(self.successResultOf(self.store.get("services", S1.upper()))["id"], S1)

    def test_consumer_keys(self) -> None:
        """
        A consumer is found by username or custom_id.
        """
        self.insert("consumers", {"id": C1, "username": "u", "custom_id": "c", "tags": None})
        self.assertEqual(self.successResultOf(self.store.get("consumers", "u"))["id"], C1)
        self.assertEqual(self.successResultOf(self.store.get("consumers", "c"))["id"], C1)

    def test_primary_key(self) -> None:
        """
        Inserting an id twice is a L{PrimaryKeyViolation}.
        """
        self.insert("services", service(S1))
        self.failureResultOf(self.store.insert("services", service(S1)), PrimaryKeyViolation)

    def test_unique(self) -> None:
        """
        A unique field's value taken by another record is a L{UniqueViolation}.
        """
        self.insert("services", service(S1, "one"))
        f = self.failureResultOf(self.store.insert("services", service(S2, "one")),
                                 UniqueViolation)
        self.assertEqual(f.value.fields, {"name": "one"})
        self.failureResultOf(self.store.upsert("services", service(S2, "one")), UniqueViolation)
        self.insert("services", service(S2))
        self.successResultOf(self.store.update("services", service(S1, "one")))

    def test_plugin_scope_unique(self) -> None:
        """
        A plugin name is unique within one scope.
        """
        self.insert("services", service(S1))
        self.insert("plugins", plugin(P1, service=S1))
        self.insert("plugins", plugin(R1))
        self.failureResultOf(self.store.insert("plugins", plugin(S2, service=S1)),
                             UniqueViolation)

    def test_foreign_key(self) -> None:
        """
        A foreign key naming no record is a L{ForeignKeyViolation}.
        """
        f = self.failureResultOf(self.store.insert("routes", route(R1, S1)), ForeignKeyViolation)
        self.assertEqual(f.value.fields, {"service": {"id": S1}})
        self.assertEqual(self.store.tables["routes"], {})

    def test_restrict(self) -> None:
        """
        A service that a route references cannot be deleted.
        """
        self.insert("services", service(S1))
        self.insert("routes", route(R1, S1))
        f = self.failureResultOf(self.store.delete("services", S1), ForeignKeyViolation)
        self.assertEqual(f.value.body(), {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"},
        })
        self.assertIn(S1, self.store.tables["services"])

    def test_cascade(self) -> None:
        """
        Deleting what a plugin is scoped to deletes the plugin.
        """
        self.insert("services", service(S1))
        self.insert("plugins", plugin(P1, service=S1))
        self.assertTrue(self.successResultOf(self.store.delete("services", S1)))
        self.assertEqual(self.store.tables["plugins"], {})

    def test_delete_absent(self) -> None:
        """
        Deleting what is not there fires C{False} and writes nothing.
        """
        self.assertFalse(self.successResultOf(self.store.delete("services", S1)))
        self.assertEqual(self.store.writes, 0)

    def test_update_absent(self) -> None:
        """
        Updating what is not there is L{NotFound}.
        """
        self.failureResultOf(self.store.update("services", service(S1)), NotFound)

    def test_page(self) -> None:
        """
        Pages follow each other by offset until the offset is C{None}.
        """
        for id in (S2, S1, R1):
            self.insert("services", service(id))
        records, offset = self.successResultOf(self.store.page("services", 2))
        self.assertEqual([r["id"] for r in records], [S1, S2])
        records, offset = self.successResultOf(self.store.page("services", 2, offset))
        self.assertEqual(([r["id"] for r in records], offset), ([R1], None))

    def test_page_exact(self) -> None:
        """
        A page that ends exactly at the last record is the last page.
        """
        self.insert("services", service(S1))
        self.assertEqual(self.successResultOf(self.store.page("services", 1))[1], None)

    def test_page_bad_offset(self) -> None:
        """
        An offset the store did not hand out is L{InvalidOffset}.
        """
        for offset in ("!!", encode_offset("not-an-id")):
            f = self.failureResultOf(self.store.page("services", 1, offset), InvalidOffset)
            self.assertEqual(f.value.body(), {
                "code": 7, "name": "invalid offset",
                "message": f"'{offset}' is not a valid offset: bad base64 encoding"})

    def test_page_tags(self) -> None:
        """
        Tags filter records carrying all, or any, of them.
        """
        self.insert("services", service(S1, tags=["a", "b"]))
        self.insert("services", service(S2, tags=["b"]))
        self.insert("services", service(R1))

        def ids(**kw: Any) -> list[str]:
            return [r["id"] for r in self.successResultOf(self.store.page("services", 10, **kw))[0]]

        self.assertEqual(ids(tags=["a", "b"]), [S1])
        self.assertEqual(ids(tags=["a", "b"], tags_any=True), [S1, S2])

    def test_page_where(self) -> None:
        """
        C{where} keeps records whose foreign key names the given id.
        """
        self.insert("services", service(S1))
        self.insert("services", service(S2))
        self.insert("routes", route(R1, S1))
        self.insert("routes", route(P1, S2))
        records, _ = self.successResultOf(self.store.page("routes", 10, where={"service": S1}))
        self.assertEqual([r["id"] for r in records], [R1])

    def test_version_and_subscribe(self) -> None:
        """
        Every write bumps the version and tells subscribers.
        """
        seen: list[int | None] = []
        unsubscribe = self.store.subscribe(seen.append)
        self.insert("services", service(S1))
        self.successResultOf(self.store.delete("services", S1))
        unsubscribe()
        self.insert("services", service(S2))
        self.assertEqual(seen, [1, 2])
        self.assertEqual(self.successResultOf(self.store.version()), 3)
        self.assertEqual(self.successResultOf(self.store.load()).services, (service(S2),))

    def test_fail_next(self) -> None:
        """
        C{fail_next} makes only the next call fail.
        """
        self.store.fail_next(DatabaseUnavailable())
        self.failureResultOf(self.store.version(), DatabaseUnavailable)
        self.successResultOf(self.store.version())

    def test_hang_version(self) -> None:
        """
        C{hang_version} makes C{version()} never answer.
        """
        self.store.hang_version = True
        self.assertNoResult(self.store.version())


class WriteManyTests(SynchronousTestCase):
    """
    The double's C{write} is all or nothing, like the real store's.
    """

    def test_allOrNothing(self) -> None:
        """
        A failing operation leaves the tables and the version as they were.
        """
        from echogate.errors import UniqueViolation

        store = MemoryStore()
        first = {"id": "00000000-0000-4000-8000-00000000000a", "name": "a", "tags": None}
        clash = {"id": "00000000-0000-4000-8000-00000000000b", "name": "a", "tags": None}
        self.failureResultOf(store.write([("insert", "services", first), ("insert", "services", clash)]),
                             UniqueViolation)
        self.assertEqual(store.tables["services"], {})
        self.assertEqual(store.configuration_version, 0)
        self.assertEqual(self.successResultOf(store.write([("insert", "services", first)])), [first])
