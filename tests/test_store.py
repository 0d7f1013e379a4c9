"""
Tests for L{echogate.store.PostgresStore}, against real PostgreSQL servers
on 127.0.0.1 (see L{tests.postgres}).
"""
from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.errors import (
    DatabaseUnavailable,
    ForeignKeyViolation,
    NotFound,
    PrimaryKeyViolation,
    SchemaViolation,
    UniqueViolation,
)
from echogate.interfaces import IStore
from echogate.migrations import MIGRATIONS
from echogate.offsets import InvalidOffset
from echogate.pgclient import Deadlines
from echogate.snapshot import ConfigurationData
from echogate.store import PostgresStore, SchemaOutdated, check_schema_blocking
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
        await self.failure(self.store.get("upstreams", "x"), ValueError)
        await self.failure(self.store.insert("upstreams", service()), ValueError)


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


class ConstraintTests(StoreTestCase):
    """
    The database enforces unique names, foreign keys and cascades, and
    their errors are Kong's.
    """

    async def test_service_name_unique(self) -> None:
        """
        A second service with the same name is a L{UniqueViolation}.
        """
        await self.store.insert("services", service("mock-service"))
        e = await self.failure(self.store.insert("services", service("mock-service")),
                               UniqueViolation)
        self.assertEqual(e.body(), {
            "code": UniqueViolation.code, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{name=\"mock-service\"}'",
            "fields": {"name": "mock-service"}})
        self.assertEqual(await self.store.version(), 1)

    async def test_unique_on_update(self) -> None:
        """
        Renaming onto a taken name is a L{UniqueViolation} too.
        """
        await self.store.insert("services", service("a"))
        b = await self.store.insert("services", service("b"))
        e = await self.failure(self.store.update("services", dict(b, name="a")), UniqueViolation)
        self.assertEqual(e.fields, {"name": "a"})

    async def test_unnamed_services(self) -> None:
        """
        Any number of services may have no name.
        """
        await self.store.insert("services", service())
        await self.store.insert("services", service())
        records, _ = await self.store.page("services", 10)
        self.assertEqual(len(records), 2)

    async def test_route_name_unique(self) -> None:
        """
        Route names are unique.
        """
        await self.store.insert("routes", route(None, "r"))
        e = await self.failure(self.store.insert("routes", route(None, "r")), UniqueViolation)
        self.assertEqual(e.fields, {"name": "r"})

    async def test_consumer_username_unique(self) -> None:
        """
        Consumer usernames are unique.
        """
        await self.store.insert("consumers", consumer("alice"))
        e = await self.failure(self.store.insert("consumers", consumer("alice")), UniqueViolation)
        self.assertEqual(e.fields, {"username": "alice"})

    async def test_consumer_custom_id_unique(self) -> None:
        """
        Consumer custom ids are unique.
        """
        await self.store.insert("consumers", consumer(custom_id="c1"))
        e = await self.failure(self.store.insert("consumers", consumer("bob", "c1")),
                               UniqueViolation)
        self.assertEqual(e.fields, {"custom_id": "c1"})

    async def test_plugin_scope_unique(self) -> None:
        """
        The same plugin twice on the same service is a L{UniqueViolation}
        naming the whole scope.
        """
        s = await self.store.insert("services", service())
        await self.store.insert("plugins", plugin(service=s["id"]))
        e = await self.failure(self.store.insert("plugins", plugin(service=s["id"])),
                               UniqueViolation)
        self.assertEqual(e.fields, {"name": "header-echo", "service": {"id": s["id"]},
                                    "route": None, "consumer": None})

    async def test_global_plugin_unique(self) -> None:
        """
        The same plugin twice globally (every scope null) is a
        L{UniqueViolation}: nulls are not distinct.
        """
        await self.store.insert("plugins", plugin())
        e = await self.failure(self.store.insert("plugins", plugin()), UniqueViolation)
        self.assertEqual(e.fields, {"name": "header-echo", "service": None, "route": None,
                                    "consumer": None})

    async def test_plugin_other_scopes(self) -> None:
        """
        The same plugin on different scopes, or different plugins on one
        scope, are fine.
        """
        s = await self.store.insert("services", service())
        c = await self.store.insert("consumers", consumer("alice"))
        await self.store.insert("plugins", plugin())
        await self.store.insert("plugins", plugin(service=s["id"]))
        await self.store.insert("plugins", plugin(service=s["id"], consumer=c["id"]))
        await self.store.insert("plugins", plugin("other", service=s["id"]))
        records, _ = await self.store.page("plugins", 10)
        self.assertEqual(len(records), 4)

    async def test_primary_key(self) -> None:
        """
        Inserting an id that exists is a L{PrimaryKeyViolation}.
        """
        record = await self.store.insert("services", service())
        e = await self.failure(self.store.insert("services", dict(record, name="other")),
                               PrimaryKeyViolation)
        self.assertEqual(e.fields, {"id": record["id"]})
        self.assertEqual(e.message, f"primary key violation on key '{{id=\"{record['id']}\"}}'")

    async def test_missing_service(self) -> None:
        """
        A route naming a service that does not exist is a
        L{ForeignKeyViolation} in Kong's words.
        """
        missing = str(uuid.uuid4())
        e = await self.failure(self.store.insert("routes", route(missing)), ForeignKeyViolation)
        self.assertEqual(e.body(), {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": f"the foreign key '{{id=\"{missing}\"}}' does not reference an"
                       " existing 'services' entity.",
            "fields": {"service": {"id": missing}}})

    async def test_plugin_missing_references(self) -> None:
        """
        A plugin naming a missing route or consumer is a
        L{ForeignKeyViolation} on that field.
        """
        missing = str(uuid.uuid4())
        e = await self.failure(self.store.insert("plugins", plugin(route=missing)),
                               ForeignKeyViolation)
        self.assertEqual(e.fields, {"route": {"id": missing}})
        e = await self.failure(self.store.upsert("plugins", plugin(consumer=missing)),
                               ForeignKeyViolation)
        self.assertEqual(e.fields, {"consumer": {"id": missing}})

    async def test_referenced_service(self) -> None:
        """
        Deleting a service that a route references is a
        L{ForeignKeyViolation} and deletes nothing.
        """
        s = await self.store.insert("services", service())
        await self.store.insert("routes", route(s["id"]))
        e = await self.failure(self.store.delete("services", s["id"]), ForeignKeyViolation)
        self.assertEqual(e.body(), {
            "code": ForeignKeyViolation.code, "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"}})
        self.assertIsNotNone(await self.store.get("services", s["id"]))

    async def test_cascades(self) -> None:
        """
        Deleting a service, route or consumer deletes the plugins on it.
        """
        s = await self.store.insert("services", service())
        r = await self.store.insert("routes", route(None))
        c = await self.store.insert("consumers", consumer("alice"))
        kept = await self.store.insert("plugins", plugin())
        for p in (plugin(service=s["id"]), plugin(route=r["id"]), plugin(consumer=c["id"])):
            await self.store.insert("plugins", p)
        await self.store.delete("services", s["id"])
        await self.store.delete("routes", r["id"])
        await self.store.delete("consumers", c["id"])
        self.assertEqual((await self.store.page("plugins", 10))[0], [kept])


class ReadTests(StoreTestCase):
    """
    C{get}, C{load}, C{version}, C{reachable}.
    """

    async def test_get_missing(self) -> None:
        """
        A missing id or name fires C{None}.
        """
        self.assertIsNone(await self.store.get("services", str(uuid.uuid4())))
        self.assertIsNone(await self.store.get("services", "nobody"))

    async def test_get_plugin_by_name(self) -> None:
        """
        Plugins are found by id only.
        """
        await self.store.insert("plugins", plugin())
        self.assertIsNone(await self.store.get("plugins", "header-echo"))

    async def test_consumer_keys(self) -> None:
        """
        A consumer is found by username, else by custom_id; a username
        wins over another consumer's custom_id.
        """
        alice = await self.store.insert("consumers", consumer("alice", "bob"))
        bob = await self.store.insert("consumers", consumer("bob", "x"))
        only = await self.store.insert("consumers", consumer(custom_id="c9"))
        self.assertEqual(await self.store.get("consumers", "alice"), alice)
        self.assertEqual(await self.store.get("consumers", "bob"), bob)
        self.assertEqual(await self.store.get("consumers", "c9"), only)

    async def test_route_by_name(self) -> None:
        """
        A route is found by name.
        """
        r = await self.store.insert("routes", route(None, "r1"))
        self.assertEqual(await self.store.get("routes", "r1"), r)

    async def test_load(self) -> None:
        """
        C{load} reads every service, route, plugin and consumer and the version.
        """
        s = await self.store.insert("services", service())
        r = await self.store.insert("routes", route(s["id"]))
        p = await self.store.insert("plugins", plugin(route=r["id"]))
        c = await self.store.insert("consumers", consumer("alice"))
        self.assertEqual(await self.store.load(), ConfigurationData(
            version=4, services=(s,), routes=(r,), plugins=(p,), consumers=(c,)))

    async def test_load_reuses_unchanged_records(self) -> None:
        """
        A second C{load} gives the very records of the first for rows that
        did not change, new ones for rows that did, and none for rows
        deleted meanwhile.
        """
        s = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s["id"], "r1"))
        r2 = await self.store.insert("routes", route(s["id"], "r2"))
        c = await self.store.insert("consumers", consumer("alice"))
        first = await self.store.load()
        changed = await self.store.update("routes", dict(r2, paths=["/changed"]))
        await self.store.delete("consumers", c["id"])
        second = await self.store.load()
        before = {r["id"]: r for r in first.routes}
        after = {r["id"]: r for r in second.routes}
        self.assertIs(second.services[0], first.services[0])
        self.assertIs(after[r1["id"]], before[r1["id"]])
        self.assertEqual(after[r1["id"]], r1)
        self.assertIsNot(after[r2["id"]], before[r2["id"]])
        self.assertEqual(after[r2["id"]], changed)
        self.assertEqual(second.consumers, ())

    async def test_load_empty(self) -> None:
        """
        C{load} of an empty database is version 0 and nothing else.
        """
        self.assertEqual(await self.store.load(), ConfigurationData(version=0))

    async def test_reachable(self) -> None:
        """
        A running server is reachable.
        """
        self.assertIs(await self.store.reachable(), True)


class PageTests(StoreTestCase):
    """
    Keyset pagination, tag filters and foreign-key filters.
    """

    async def test_pages(self) -> None:
        """
        Pages follow each other without gaps or repeats, and the last one
        has no next offset.
        """
        made = [await self.store.insert("services", service()) for _ in range(5)]
        seen: list[dict[str, Any]] = []
        offset = None
        sizes = []
        while True:
            records, offset = await self.store.page("services", 2, offset)
            sizes.append(len(records))
            seen.extend(records)
            if offset is None:
                break
        self.assertEqual(sizes, [2, 2, 1])
        self.assertEqual(sorted(r["id"] for r in seen), sorted(r["id"] for r in made))
        self.assertEqual([r["id"] for r in seen], sorted(r["id"] for r in seen))

    async def test_exact_last_page(self) -> None:
        """
        When the last page is full, it still says there is no next page.
        """
        for _ in range(4):
            await self.store.insert("services", service())
        _, offset = await self.store.page("services", 2)
        records, offset = await self.store.page("services", 2, offset)
        self.assertEqual((len(records), offset), (2, None))

    async def test_empty(self) -> None:
        """
        An empty table is one empty page.
        """
        self.assertEqual(await self.store.page("routes", 10), ([], None))

    async def test_bad_offset(self) -> None:
        """
        An offset that is not base64 is L{InvalidOffset}, Kong's 400.
        """
        e = await self.failure(self.store.page("services", 10, "%%%"), InvalidOffset)
        self.assertEqual(e.status, 400)
        self.assertEqual(e.body(), {"code": 7, "name": "invalid offset",
                                    "message": "'%%%' is not a valid offset: bad base64 encoding"})

    async def test_offset_not_an_id(self) -> None:
        """
        Valid base64 that does not hold an id is L{InvalidOffset} too.
        """
        offset = base64.urlsafe_b64encode(b"hello").decode()
        await self.failure(self.store.page("services", 10, offset), InvalidOffset)
        await self.failure(self.store.page(
            "services", 10, base64.urlsafe_b64encode(b"\xff\xfe").decode()), InvalidOffset)

    async def test_bad_size(self) -> None:
        """
        A size below one is a C{ValueError}.
        """
        await self.failure(self.store.page("services", 0), ValueError)

    async def test_tags_all(self) -> None:
        """
        C{tags} keeps the records that carry every tag.
        """
        both = await self.store.insert("services", service(tags=["a", "b"]))
        await self.store.insert("services", service(tags=["a"]))
        await self.store.insert("services", service())
        self.assertEqual(await self.store.page("services", 10, tags=["a", "b"]), ([both], None))

    async def test_tags_any(self) -> None:
        """
        With C{tags_any}, records that carry any of the tags.
        """
        a = await self.store.insert("services", service(tags=["a"]))
        b = await self.store.insert("services", service(tags=["b", "c"]))
        await self.store.insert("services", service(tags=["d"]))
        records, _ = await self.store.page("services", 10, tags=["a", "b"], tags_any=True)
        self.assertEqual(sorted(r["id"] for r in records), sorted([a["id"], b["id"]]))

    async def test_tags_paged(self) -> None:
        """
        A tag filter holds across pages.
        """
        tagged = [await self.store.insert("services", service(tags=["t"])) for _ in range(3)]
        for _ in range(3):
            await self.store.insert("services", service())
        first, offset = await self.store.page("services", 2, tags=["t"])
        second, last = await self.store.page("services", 2, offset, tags=["t"])
        self.assertEqual(sorted(r["id"] for r in first + second),
                         sorted(r["id"] for r in tagged))
        self.assertIsNone(last)

    async def test_where(self) -> None:
        """
        C{where} keeps the records whose foreign key names the entity.
        """
        s1 = await self.store.insert("services", service())
        s2 = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s1["id"]))
        await self.store.insert("routes", route(s2["id"]))
        loose = await self.store.insert("routes", route(None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": s1["id"]}),
                         ([r1], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": {"id": s1["id"]}}),
                         ([r1], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": None}),
                         ([loose], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": "not-an-id"}),
                         ([], None))

    async def test_where_plugins(self) -> None:
        """
        Plugins filter by consumer (and by any of their scopes).
        """
        c = await self.store.insert("consumers", consumer("alice"))
        p = await self.store.insert("plugins", plugin(consumer=c["id"]))
        await self.store.insert("plugins", plugin())
        self.assertEqual(await self.store.page("plugins", 10, where={"consumer": c["id"]}),
                         ([p], None))

    async def test_where_unknown(self) -> None:
        """
        Filtering by a field that is not a foreign key is a C{ValueError}.
        """
        await self.failure(self.store.page("routes", 10, where={"name": "x"}), ValueError)


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


class NotificationTests(StoreTestCase):
    """
    Changes reach every subscriber through LISTEN/NOTIFY.
    """

    def next_call(self, store: PostgresStore) -> Deferred[int | None]:
        """
        A Deferred that fires with the next value C{store} delivers.
        """
        d: Deferred[int | None] = Deferred()

        def called(version: int | None) -> None:
            unsubscribe()
            d.callback(version)

        unsubscribe = store.subscribe(called)
        return d

    async def test_other_node(self) -> None:
        """
        A write through one store notifies a subscriber of another store
        (another connection) with the new version.
        """
        other = await self.started(self.dsn)
        d = self.next_call(other)
        await self.store.insert("services", service())
        self.assertEqual(await d, 1)

    async def test_unsubscribe(self) -> None:
        """
        After unsubscribing, a callback is not called; unsubscribing twice
        is harmless.
        """
        calls: list[int | None] = []
        unsubscribe = self.store.subscribe(calls.append)
        unsubscribe()
        unsubscribe()
        d = self.next_call(self.store)
        await self.store.insert("services", service())
        await d
        self.assertEqual(calls, [])

    async def test_failed_write_silent(self) -> None:
        """
        A write that fails notifies nobody: the next notification is the
        next successful write's version.
        """
        d = self.next_call(self.store)
        await self.failure(self.store.insert("routes", route(str(uuid.uuid4()))),
                           ForeignKeyViolation)
        await self.store.insert("services", service())
        self.assertEqual(await d, 1)

    async def test_odd_payload(self) -> None:
        """
        A notification whose payload is not a version means "reload".
        """
        d = self.next_call(self.store)
        _execute(self.dsn, "NOTIFY echogate_config, 'junk'")
        self.assertIsNone(await d)

    async def test_subscriber_raises(self) -> None:
        """
        A subscriber that raises is logged; the others are still called.
        """
        def broken(version: int | None) -> None:
            raise RuntimeError("subscriber bug")

        self.store.subscribe(broken)
        d = self.next_call(self.store)
        await self.store.insert("services", service())
        self.assertEqual(await d, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    async def test_listener_killed(self) -> None:
        """
        When the LISTEN connection is killed, the store reconnects, calls
        every subscriber with C{None}, and notifications flow again.
        """
        d = self.next_call(self.store)
        killed = _execute(self.dsn,
                          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database()"
                          " AND application_name = 'echogate listener'")
        self.assertEqual(killed, [(True,)])
        self.assertIsNone(await d)
        d = self.next_call(self.store)
        await self.store.insert("services", service())
        self.assertEqual(await d, 1)


class RecoveryTests(StoreTestCase):
    """
    Nothing hangs, and broken connections are replaced.
    """

    async def test_statement_timeout(self) -> None:
        """
        A query that waits longer than C{query_timeout} (here, on a lock)
        fails with L{DatabaseUnavailable}; the store works afterwards.
        """
        store = await self.started(self.dsn, query_timeout=0.3)
        record = await store.insert("services", service())
        locker = psycopg2.connect(self.dsn)
        try:
            with locker.cursor() as cursor:
                cursor.execute("LOCK TABLE services IN ACCESS EXCLUSIVE MODE")
            await self.failure(store.get("services", record["id"]), DatabaseUnavailable)
        finally:
            locker.close()
        self.assertEqual(await store.get("services", record["id"]), record)

    async def test_pool_connection_killed(self) -> None:
        """
        A pool connection killed by the server while idle is replaced: the
        next call succeeds, even before the reactor noticed the loss.
        """
        store = await self.started(self.dsn, pool_size=1)
        record = await store.insert("services", service())
        _execute(self.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND application_name = 'echogate'")
        self.assertEqual(await store.get("services", record["id"]), record)
        _execute(self.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND application_name = 'echogate'")
        await deferLater(reactor, 0.2, lambda: None)
        self.assertIsNone((await store.insert("services", service()))["name"])
        self.assertEqual(await store.version(), 2)

    async def test_stopped_store(self) -> None:
        """
        A stopped store fails every call with L{DatabaseUnavailable}, and
        starts again.
        """
        await self.store.stop()
        await self.failure(self.store.version(), DatabaseUnavailable)
        self.assertIs(await self.store.reachable(), False)
        await self.store.start()
        self.assertEqual(await self.store.version(), 0)


class DeadlineTests(SynchronousTestCase):
    """
    L{Deadlines} bounds a Deferred by the injected clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.bounded = Deadlines(self.clock, 5.0)
        self.expired: list[bool] = []

    def test_result(self) -> None:
        """
        A result in time passes through and the timer is cancelled.
        """
        inner: Deferred[int] = Deferred()
        outer = self.bounded(inner, self.bounded.deadline(), lambda: self.expired.append(True))
        inner.callback(7)
        self.assertEqual(self.successResultOf(outer), 7)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """
        At the deadline the call is abandoned (C{expire}) and fails with
        L{DatabaseUnavailable}; its late result is dropped.
        """
        inner: Deferred[int] = Deferred()
        outer = self.bounded(inner, self.bounded.deadline(), lambda: self.expired.append(True))
        self.clock.advance(4.9)
        self.assertNoResult(outer)
        self.clock.advance(0.1)
        self.failureResultOf(outer, DatabaseUnavailable)
        self.assertEqual(self.expired, [True])
        inner.errback(RuntimeError("late"))
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])

    def test_shared_deadline(self) -> None:
        """
        A later step gets only what is left of the deadline.
        """
        deadline = self.bounded.deadline()
        self.clock.advance(4.0)
        outer = self.bounded(Deferred(), deadline, lambda: None)
        self.clock.advance(1.0)
        self.failureResultOf(outer, DatabaseUnavailable)

    def test_cancel(self) -> None:
        """
        Cancelling the bounded Deferred abandons the call too.
        """
        outer = self.bounded(Deferred(), self.bounded.deadline(),
                             lambda: self.expired.append(True))
        outer.cancel()
        self.failureResultOf(outer, CancelledError)
        self.assertEqual(self.expired, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ServerFailureTests(PostgresMixin, TestCase):
    """
    A private server that is stopped, or frozen with C{SIGSTOP}.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.server = self.temporary_server()
        self.dsn = self.server.dsn("postgres")
        from echogate.migrations import migrate

        migrate(self.dsn)

    async def started(self, **kwargs: Any) -> PostgresStore:
        store = PostgresStore(reactor, self.dsn, **kwargs)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def unavailable(self, d: Deferred[Any]) -> None:
        try:
            await d
        except DatabaseUnavailable:
            return
        self.fail("DatabaseUnavailable not raised")

    async def test_not_running(self) -> None:
        """
        C{start} against a server that is not running fails with
        L{DatabaseUnavailable}.
        """
        self.server.stop()
        store = PostgresStore(reactor, self.dsn, query_timeout=2)
        self.addCleanup(store.stop)
        await self.unavailable(store.start())

    async def test_down_and_back(self) -> None:
        """
        While the server is down, calls fail with L{DatabaseUnavailable}
        and C{reachable} is false; when it is back, the store works again
        without a restart and subscribers are told to reload.
        """
        store = await self.started(query_timeout=2, reconnect_delays=(0.05, 0.2))
        reloaded: Deferred[int | None] = Deferred()
        store.subscribe(lambda v: v is None and not reloaded.called and reloaded.callback(v))
        await store.insert("services", service())
        self.server.stop()
        await self.unavailable(store.version())
        await self.unavailable(store.insert("services", service()))
        self.assertIs(await store.reachable(), False)
        self.server.start()
        self.assertIs(await store.reachable(), True)
        self.assertEqual(await store.version(), 1)
        self.assertIsNone(await reloaded)

    async def test_backoff(self) -> None:
        """
        After a failed connection attempt, calls fail at once without
        trying again until the back-off delay has passed; C{reachable}
        tries anyway, and the pool recovers.
        """
        store = await self.started(query_timeout=2, reconnect_delays=(1000.0, 1000.0))
        self.server.stop()
        await self.unavailable(store.version())
        self.server.start()
        await self.unavailable(store.version())
        self.assertIs(await store.reachable(), True)
        self.assertEqual(await store.version(), 0)

    async def test_frozen_server(self) -> None:
        """
        A server that accepts connections but never answers (SIGSTOP)
        makes calls fail with L{DatabaseUnavailable} instead of hanging;
        once it thaws, the store works again.
        """
        store = await self.started(query_timeout=0.5)
        await store.version()
        self.server.pause()
        try:
            await self.unavailable(store.version())
            await self.unavailable(store.insert("services", service()))
            self.assertIs(await store.reachable(), False)
        finally:
            self.server.resume()
        self.assertIs(await store.reachable(), True)
        self.assertEqual(await store.version(), 0)

    async def test_frozen_connect(self) -> None:
        """
        Opening a connection to a frozen server is bounded too.
        """
        store = await self.started(query_timeout=0.5, pool_size=1)
        self.server.pause()
        try:
            await self.unavailable(store.version())
        finally:
            self.server.resume()

    async def test_pool_exhausted(self) -> None:
        """
        Calls queued behind a busy pool fail within the timeout too.
        """
        store = await self.started(query_timeout=0.5, pool_size=1)
        self.server.pause()
        try:
            first, second = store.version(), store.version()
            await self.unavailable(first)
            await self.unavailable(second)
        finally:
            self.server.resume()

    async def test_stop_in_flight(self) -> None:
        """
        Stopping the store fails the calls in flight at once.
        """
        store = await self.started(query_timeout=30)
        await store.version()
        self.server.pause()
        try:
            d = store.version()
            await store.stop()
            self.assertTrue(d.called)
            await self.unavailable(d)
        finally:
            self.server.resume()

    async def test_stop_while_reconnecting(self) -> None:
        """
        Stopping the store while its LISTEN connection is being reopened
        leaves nothing behind.
        """
        store = await self.started(query_timeout=30, heartbeat=0.05,
                                   reconnect_delays=(0.01, 0.01))
        self.server.pause()
        try:
            await deferLater(reactor, 0.3, lambda: None)
            await store.stop()
        finally:
            self.server.resume()

    async def test_listener_heartbeat(self) -> None:
        """
        A LISTEN connection that stops answering is noticed by the
        heartbeat and replaced; subscribers are told to reload.
        """
        noticed: Deferred[None] = Deferred()

        def observe(event: dict[str, Any]) -> None:
            if "stopped answering" in event.get("log_format", "") and not noticed.called:
                noticed.callback(None)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        store = await self.started(query_timeout=0.3, heartbeat=0.1,
                                   reconnect_delays=(0.05, 0.2))
        reloaded: Deferred[int | None] = Deferred()
        store.subscribe(lambda v: v is None and not reloaded.called and reloaded.callback(v))
        self.server.pause()
        try:
            await noticed
        finally:
            self.server.resume()
        self.assertIsNone(await reloaded)
        await deferLater(reactor, 0, lambda: None)
