"""
Tests for L{echogate.store.postgres.PostgresStore} when PostgreSQL fails it: slow
queries, killed connections, a stopped store, and a private server (see
L{tests.postgres}) that is stopped or frozen with C{SIGSTOP}. Nothing
hangs, and the store recovers (see L{tests.store.test_postgres}).
"""
from __future__ import annotations

from typing import Any

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from echogate.errors import DatabaseUnavailable
from echogate.store.postgres import PostgresStore
from tests.postgres import PostgresMixin
from tests.store.test_postgres import StoreTestCase, _execute, service
from tests.waiting import until


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
        # This time the reactor sees the loss before the next call.
        await until(lambda: not any(c.isOpen for c in store._pool._all),
                    message="the pool noticed its connection was killed")
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


class ServerFailureTests(PostgresMixin, TestCase):
    """
    A private server that is stopped, or frozen with C{SIGSTOP}.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.server = self.temporary_server()
        self.dsn = self.server.dsn("postgres")
        from echogate.store.migrations import migrate

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
        # The frozen server fails the heartbeat after query_timeout; the
        # listener then tries (and, the server frozen, keeps trying) to
        # open a new connection.
        store = await self.started(query_timeout=0.2, heartbeat=0.05,
                                   reconnect_delays=(0.01, 0.01))
        self.server.pause()
        try:
            await until(lambda: store._listener._pending is not None, interval=0.005,
                        message="the LISTEN connection is being reopened")
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
