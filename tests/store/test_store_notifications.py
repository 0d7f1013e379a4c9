"""
Tests for the change notifications of L{echogate.store.postgres.PostgresStore}:
subscribers told of every write through LISTEN/NOTIFY, across stores and
after the LISTEN connection is lost (see L{tests.store.test_postgres}).
"""
from __future__ import annotations

import uuid

from twisted.internet.defer import Deferred

from echogate.errors import ForeignKeyViolation
from echogate.store.postgres import PostgresStore
from tests.store.test_postgres import StoreTestCase, _execute, route, service


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
