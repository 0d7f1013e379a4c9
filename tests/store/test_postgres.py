"""
Tests for L{echogate.store.postgres.PostgresStore}, against real PostgreSQL servers
on 127.0.0.1 (see L{tests.postgres}): the L{IStore} interface, writes, and
the schema check.

The record builders and L{StoreTestCase} at the top are shared with the
other store test modules: L{tests.store.test_store_constraints},
L{tests.store.test_store_reads}, L{tests.store.test_store_notifications} and
L{tests.store.test_store_failures}.
"""
from __future__ import annotations

import uuid
from typing import Any

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from echogate.errors import NotFound, SchemaViolation, UniqueViolation
from echogate.interfaces import IStore
from echogate.store.migrations import MIGRATIONS
from echogate.store.postgres import PostgresStore, SchemaOutdated, check_schema_blocking
from tests.postgres import PostgresMixin


def _record(**fields: Any) -> dict[str, Any]:
    record = {"id": str(uuid.uuid4()), "created_at": 1700000000,
              "updated_at": 1700000000, "tags": None}
    record.update(fields)
    return record


def service(name: str | None = None, **fields: Any) -> dict[str, Any]:
    return _record(name=name, host="example.com", port=80, protocol="http",
                   path=None, **fields)


def route(service_id: str | None, name: str | None = None, **fields: Any) -> dict[str, Any]:
    return _record(name=name, paths=["/"], hosts=None,
                   service={"id": service_id} if service_id else None, **fields)


def consumer(username: str | None = None, custom_id: str | None = None) -> dict[str, Any]:
    return _record(username=username, custom_id=custom_id)


def plugin(name: str = "header-echo", service: str | None = None, route: str | None = None,
           consumer: str | None = None) -> dict[str, Any]:
    def ref(i: str | None) -> dict[str, str] | None:
        return {"id": i} if i else None

    return _record(name=name, service=ref(service), route=ref(route), consumer=ref(consumer),
                   config={"x": 1}, enabled=True, protocols=["http", "https"])


def _execute(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    connection = psycopg2.connect(dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


class StoreTestCase(PostgresMixin, TestCase):
    """
    A store on a fresh, migrated database.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.dsn = self.database()
        self.store = await self.started(self.dsn)

    async def started(self, dsn: str, **kwargs: Any) -> PostgresStore:
        store = PostgresStore(reactor, dsn, **kwargs)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def failure(self, d: Deferred[Any], kind: type[Exception]) -> Any:
        """
        Wait for C{d} to fail with C{kind}; return the exception.
        """
        try:
            await d
        except kind as e:
            return e
        self.fail(f"{kind.__name__} not raised")


class InterfaceTests(StoreTestCase):
    """
    The store provides L{IStore}.
    """

    def test_provides(self) -> None:
        """
        C{PostgresStore} provides every method of L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, self.store))

    def test_bad_arguments(self) -> None:
        """
        A pool below one connection or a non-positive timeout is refused.
        """
        self.assertRaises(ValueError, PostgresStore, reactor, self.dsn, pool_size=0)
        self.assertRaises(ValueError, PostgresStore, reactor, self.dsn, query_timeout=0)

    def test_bad_dsn(self) -> None:
        """
        A DSN that cannot be parsed is refused when the store is built.
        """
        self.assertRaises(ValueError, PostgresStore, reactor, "host=x port")

    async def test_unknown_entity(self) -> None:
        """
        An entity name that is not a table is a C{ValueError}.
        """
        await self.failure(self.store.get("no_such_entity", "x"), ValueError)
        await self.failure(self.store.insert("no_such_entity", service()), ValueError)


class WriteTests(StoreTestCase):
    """
    Inserting, updating, upserting and deleting.
    """

    async def test_insert(self) -> None:
        """
        An inserted record is returned and read back whole.
        """
        record = service("mock-service", tags=["a", "b"])
        self.assertEqual(await self.store.insert("services", record), record)
        self.assertEqual(await self.store.get("services", record["id"]), record)

    async def test_write_many(self) -> None:
        """
        C{write} stores several records in one transaction, one version
        bump for all.
        """
        s = service("linked")
        r = route(s["id"])
        self.assertEqual(await self.store.write([("insert", "services", s), ("insert", "routes", r)]), [s, r])
        self.assertEqual(await self.store.get("routes", r["id"]), r)
        self.assertEqual(await self.store.version(), 1)

    async def test_write_many_all_or_nothing(self) -> None:
        """
        When one of C{write}'s operations fails, none is stored.
        """
        s = service("first")
        clash = service("first")
        error = await self.assertFailure(
            self.store.write([("insert", "services", s), ("insert", "services", clash)]), UniqueViolation)
        self.assertEqual(error.fields, {"name": "first"})
        self.assertIsNone(await self.store.get("services", s["id"]))
        await self.assertFailure(
            self.store.write([("insert", "services", s), ("update", "routes", route(None))]), NotFound)
        self.assertIsNone(await self.store.get("services", s["id"]))
        self.assertEqual(await self.store.version(), 0)

    async def test_writes_bump_version(self) -> None:
        """
        Every write increases the configuration version by one.
        """
        self.assertEqual(await self.store.version(), 0)
        record = await self.store.insert("services", service())
        await self.store.update("services", dict(record, host="other"))
        await self.store.upsert("services", service())
        await self.store.delete("services", record["id"])
        self.assertEqual(await self.store.version(), 4)

    async def test_update(self) -> None:
        """
        C{update} replaces the record.
        """
        record = await self.store.insert("services", service("a"))
        changed = dict(record, name="b", host="other", updated_at=1800000000)
        self.assertEqual(await self.store.update("services", changed), changed)
        self.assertEqual(await self.store.get("services", "b"), changed)
        self.assertIsNone(await self.store.get("services", "a"))

    async def test_update_missing(self) -> None:
        """
        Updating a record that does not exist is L{NotFound}, and changes
        nothing.
        """
        record = service()
        e = await self.failure(self.store.update("services", record), NotFound)
        self.assertEqual(e.body(), {
            "code": NotFound.code, "name": "not found",
            "message": f"could not find the entity with primary key '{{id=\"{record['id']}\"}}'",
            "fields": {"id": record["id"]}})
        self.assertEqual(await self.store.version(), 0)

    async def test_upsert_inserts(self) -> None:
        """
        C{upsert} of a new id inserts it.
        """
        record = service("x")
        self.assertEqual(await self.store.upsert("services", record), record)
        self.assertEqual(await self.store.get("services", "x"), record)

    async def test_upsert_replaces(self) -> None:
        """
        C{upsert} of an existing id replaces the record.
        """
        record = await self.store.insert("services", service("x"))
        changed = dict(record, name="y", port=8080)
        self.assertEqual(await self.store.upsert("services", changed), changed)
        self.assertEqual(await self.store.get("services", record["id"]), changed)

    async def test_delete(self) -> None:
        """
        C{delete} fires C{True} and the record is gone.
        """
        record = await self.store.insert("services", service())
        self.assertIs(await self.store.delete("services", record["id"]), True)
        self.assertIsNone(await self.store.get("services", record["id"]))

    async def test_delete_missing(self) -> None:
        """
        Deleting a missing id (or something that is not an id) fires
        C{False} and leaves the version alone.
        """
        self.assertIs(await self.store.delete("services", str(uuid.uuid4())), False)
        self.assertIs(await self.store.delete("services", "not-an-id"), False)
        self.assertEqual(await self.store.version(), 0)

    async def test_tags(self) -> None:
        """
        Tags are stored as given; a record without tags keeps C{None}.
        """
        tagged = await self.store.insert("services", service(tags=["x", "y"]))
        untagged = await self.store.insert("services", service())
        self.assertEqual((await self.store.get("services", tagged["id"]))["tags"], ["x", "y"])
        self.assertIsNone((await self.store.get("services", untagged["id"]))["tags"])

    async def test_bad_id(self) -> None:
        """
        A record whose id is not a uuid is a L{SchemaViolation}.
        """
        e = await self.failure(self.store.insert("services", service(id="nope")),
                               SchemaViolation)
        self.assertEqual(e.fields, {"id": "expected a uuid"})

    async def test_bad_foreign_id(self) -> None:
        """
        A foreign key whose id is not a uuid is a L{SchemaViolation}.
        """
        record = route(None)
        record["service"] = {"id": "nope"}
        e = await self.failure(self.store.insert("routes", record), SchemaViolation)
        self.assertEqual(e.fields, {"service": {"id": "expected a uuid"}})

    async def test_missing_plugin_name(self) -> None:
        """
        A plugin without a name is a L{SchemaViolation} from the database.
        """
        e = await self.failure(self.store.insert("plugins", plugin(name=None)),  # type: ignore[arg-type]
                               SchemaViolation)
        self.assertEqual(e.fields, {"name": "required field missing"})


class SchemaTests(StoreTestCase):
    """
    C{check_schema} refuses a database that is not migrated.
    """

    async def test_current(self) -> None:
        """
        A migrated database passes.
        """
        self.assertIsNone(await self.store.check_schema())
        self.assertIsNone(check_schema_blocking(self.dsn))

    async def test_missing(self) -> None:
        """
        A database without the schema fails with L{SchemaOutdated} naming
        the command to run.
        """
        store = PostgresStore(reactor, self.database(migrated=False))
        self.addCleanup(store.stop)
        e = await self.failure(store.check_schema(), SchemaOutdated)
        self.assertIn("no echogate schema", str(e))
        self.assertIn(f"echogate migrations up --database {store.dsn}", str(e))
        self.assertRaises(SchemaOutdated, check_schema_blocking, store.dsn)

    async def test_pending(self) -> None:
        """
        A database with a migration missing fails with L{SchemaOutdated}.
        """
        _execute(self.dsn, "DELETE FROM schema_migrations WHERE version = %s",
                 (MIGRATIONS[-1].version,))
        e = await self.failure(self.store.check_schema(), SchemaOutdated)
        self.assertIn("pending", str(e))
        self.assertIn("echogate migrations up --database", str(e))
        self.assertRaises(SchemaOutdated, check_schema_blocking, self.dsn)
