"""
Tests for L{echogate.store.migrations}, against the suite's PostgreSQL.
"""
from __future__ import annotations

import datetime
from typing import Any

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from echogate.store import migrations
from echogate.store.migrations import (
    LOCK_KEY,
    MIGRATIONS,
    BadDSN,
    Migration,
    MigrationFailed,
    SchemaOutdated,
    Unreachable,
    check_applied,
    drop,
    migrate,
    read_status,
    redact,
)
from tests.postgres import PostgresMixin, TemporaryServer
from tests.waiting import until

#: The tables of the migrations after the first one, as each declares them.
_LATER_TABLES = {t for m in MIGRATIONS[1:] for t in m.tables}


def _rows(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def _tables(dsn: str) -> set[str]:
    return {name for (name,) in _rows(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


class MigrateTests(PostgresMixin, TestCase):
    """
    Applying migrations.
    """

    timeout = 60

    def test_up(self) -> None:
        """
        On an empty database every migration is applied and recorded.
        """
        dsn = self.database(migrated=False)
        self.assertEqual(migrate(dsn), list(MIGRATIONS))
        self.assertEqual(_tables(dsn), {"services", "routes", "consumers", "plugins",
                                        "config_version", "schema_migrations"} | _LATER_TABLES)
        self.assertEqual(_rows(dsn, "SELECT version FROM config_version"), [(0,)])

    def test_up_twice(self) -> None:
        """
        Migrating a migrated database does nothing.
        """
        dsn = self.database(migrated=False)
        migrate(dsn)
        self.assertEqual(migrate(dsn), [])
        self.assertEqual(len(_rows(dsn, "SELECT * FROM schema_migrations")), len(MIGRATIONS))

    def test_connection_target(self) -> None:
        """
        An open psycopg2 connection may be given instead of a DSN.
        """
        dsn = self.database(migrated=False)
        connection = psycopg2.connect(dsn)
        self.addCleanup(connection.close)
        self.assertEqual(migrate(connection), list(MIGRATIONS))
        self.assertEqual(read_status(connection)[1], [])

    def test_failed_migration(self) -> None:
        """
        A migration that fails is rolled back and reported; the ones
        before it stay applied.
        """
        dsn = self.database(migrated=False)
        broken = Migration(len(MIGRATIONS) + 1, "broken", "CREATE TABLE x (); SELECT nonsense")
        self.patch(migrations, "MIGRATIONS", MIGRATIONS + (broken,))
        e = self.assertRaises(MigrationFailed, migrate, dsn)
        self.assertIn(f"migration {broken.version} (broken) failed", str(e))
        applied, pending = read_status(dsn)
        self.assertEqual([a.version for a in applied], [m.version for m in MIGRATIONS])
        self.assertEqual(pending, [broken])
        self.assertNotIn("x", _tables(dsn))

    def test_old_server(self) -> None:
        """
        A server older than PostgreSQL 15 is refused with a clear message.
        """
        dsn = self.database(migrated=False)
        self.patch(migrations, "_MINIMUM_SERVER", 10**9)
        e = self.assertRaises(MigrationFailed, migrate, dsn)
        self.assertIn("needs PostgreSQL 15 or newer", str(e))

    def test_bad_dsn(self) -> None:
        """
        A DSN that cannot be parsed is L{BadDSN}.
        """
        e = self.assertRaises(BadDSN, migrate, "host=x port")
        self.assertIn("invalid database DSN", str(e))

    def test_unreachable(self) -> None:
        """
        A server that is not running is L{Unreachable}, password hidden.
        """
        server = TemporaryServer()
        self.addCleanup(server.remove)
        dsn = f"postgresql://postgres:secret@127.0.0.1:{server.port}/postgres"
        e = self.assertRaises(Unreachable, migrate, dsn)
        self.assertIn("cannot connect to postgresql://postgres:***@127.0.0.1", str(e))
        self.assertNotIn("secret", str(e))

    async def test_concurrent(self) -> None:
        """
        Two runs at once: one applies everything while the other waits for
        the lock, then finds nothing to do.
        """
        dsn = self.database(migrated=False)
        holder = psycopg2.connect(dsn)
        self.addCleanup(holder.close)
        holder.autocommit = True
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        first = ensureDeferred(migrations.up(dsn, reactor))
        second = ensureDeferred(migrations.up(dsn, reactor))
        await until(lambda: _rows(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                       " AND NOT granted")[0][0] >= 2,
                    interval=0.02, message="both runs wait for the migration lock")
        holder.close()
        results = [await first, await second]
        self.assertEqual(sorted(map(len, results)), [0, len(MIGRATIONS)])
        self.assertEqual(read_status(dsn)[1], [])


class StatusTests(PostgresMixin, TestCase):
    """
    Reading what is applied and what is pending.
    """

    def test_empty(self) -> None:
        """
        An empty database has nothing applied and everything pending.
        """
        self.assertEqual(read_status(self.database(migrated=False)), ([], list(MIGRATIONS)))

    def test_migrated(self) -> None:
        """
        A migrated database lists each migration with when it was applied.
        """
        applied, pending = read_status(self.database())
        self.assertEqual([(a.version, a.name) for a in applied],
                         [(m.version, m.name) for m in MIGRATIONS])
        self.assertIsInstance(applied[0].applied_at, datetime.datetime)
        self.assertEqual(pending, [])

    async def test_async(self) -> None:
        """
        L{migrations.status} and L{migrations.up} run in the thread pool.
        """
        dsn = self.database(migrated=False)
        self.assertEqual((await migrations.status(dsn, reactor))[1], list(MIGRATIONS))
        self.assertEqual(await migrations.up(dsn, reactor), list(MIGRATIONS))
        self.assertEqual((await migrations.status(dsn, reactor))[1], [])


class ResetTests(PostgresMixin, TestCase):
    """
    Dropping what echogate created, and only that.
    """

    def test_reset(self) -> None:
        """
        Reset drops every echogate table; migrating again rebuilds them.
        """
        dsn = self.database()
        self.assertEqual(set(drop(dsn)), {"services", "routes", "consumers", "plugins",
                                          "config_version", "schema_migrations"} | _LATER_TABLES)
        self.assertEqual(_tables(dsn), set())
        self.assertEqual(read_status(dsn), ([], list(MIGRATIONS)))
        self.assertEqual(migrate(dsn), list(MIGRATIONS))

    def test_reset_empty(self) -> None:
        """
        Resetting an empty database drops nothing.
        """
        self.assertEqual(drop(self.database(migrated=False)), [])

    def test_keeps_other_tables(self) -> None:
        """
        Tables echogate did not create survive a reset.
        """
        dsn = self.database()
        connection = psycopg2.connect(dsn)
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE mine (x int)")
        connection.close()
        drop(dsn)
        self.assertEqual(_tables(dsn), {"mine"})

    async def test_async(self) -> None:
        """
        L{migrations.reset} runs in the thread pool.
        """
        dsn = self.database()
        self.assertIn("services", await migrations.reset(dsn, reactor))
        self.assertEqual(_tables(dsn), set())


class CheckAppliedTests(SynchronousTestCase):
    """
    L{check_applied} names the command that fixes the schema.
    """

    def test_current(self) -> None:
        """
        Every version applied passes.
        """
        check_applied([m.version for m in MIGRATIONS], "postgresql://h/db")

    def test_no_schema(self) -> None:
        """
        No C{schema_migrations} table says there is no schema.
        """
        e = self.assertRaises(SchemaOutdated, check_applied, None, "postgresql://u:pw@h/db")
        self.assertEqual(str(e), "the database has no echogate schema; run:"
                                 " echogate migrations up --database postgresql://u:***@h/db")

    def test_pending(self) -> None:
        """
        Missing versions are listed by number and name.
        """
        e = self.assertRaises(SchemaOutdated, check_applied, [], "postgresql://h/db")
        self.assertIn(f"pending: 1 ({MIGRATIONS[0].name})", str(e))
        self.assertIn("echogate migrations up --database postgresql://h/db", str(e))


class RedactTests(SynchronousTestCase):
    """
    L{redact} hides passwords in DSNs.
    """

    def test_uri(self) -> None:
        """
        A URI's password is replaced.
        """
        self.assertEqual(redact("postgresql://bob:s3cret@db:5432/gw"),
                         "postgresql://bob:***@db:5432/gw")

    def test_query(self) -> None:
        """
        A password in a URI's query is replaced too.
        """
        self.assertEqual(redact("postgresql://bob@db/gw?password=x&sslmode=require"),
                         "postgresql://bob@db/gw?password=***&sslmode=require")

    def test_keywords(self) -> None:
        """
        A keyword/value DSN's password is replaced, quoted or not.
        """
        self.assertEqual(redact("host=db password=s3cret user=bob"),
                         "host=db password=*** user=bob")
        self.assertEqual(redact("host=db password='a b' user=bob"),
                         "host=db password=*** user=bob")

    def test_no_password(self) -> None:
        """
        A DSN without a password is unchanged.
        """
        for dsn in ("postgresql://postgres@127.0.0.1:5432/x",
                    "postgresql://postgres:@/postgres?host=/tmp/sock", "host=db user=bob"):
            self.assertEqual(redact(dsn), dsn)
