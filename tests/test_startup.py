"""
Starting echogate the way users do: C{twistd -n echogate} and
C{twistd -ny tac/echogate.tac} as real processes, with the embedded
PostgreSQL or a DSN, and every start-up refusal as one clear line.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from tests.postgres import fresh_database
from tests.upstream_server import start_upstream
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class _Gateway(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        # twistd re-raises the signal that stopped it: a clean SIGTERM stop
        # ends with signal 15 rather than an exit code.
        self.ended.callback(reason.value.exitCode if reason.value.signal is None else -reason.value.signal)


class StartupTestCase(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def refuse(self, *args: str, env: dict[str, str] | None = None) -> str:
        """
        Run twistd with C{args}; it must exit non-zero with one clear line.
        """
        out, err, code = await getProcessOutputAndValue(
            TWISTD, ("-n", "--pidfile=", "echogate") + args, env=env or _env(), path=self.mktemp_dir())
        self.assertNotEqual(code, 0, out + err)
        text = (out + err).decode()
        self.assertNotIn("Traceback", text)
        lines = [line for line in text.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, text)
        self.assertTrue(lines[0].startswith("echogate: "), text)
        return lines[0]

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path

    async def start(self, args: list[str], env: dict[str, str], cwd: str, admin_port: int,
                    tac: bool = False) -> _Gateway:
        """
        Start a gateway process and wait until its Admin API answers.
        """
        protocol = _Gateway()
        argv = [TWISTD, "-n", "--pidfile=", "--logfile=-"]
        argv += ["-y", str(ROOT / "tac" / "echogate.tac")] if tac else ["echogate"] + args
        transport = reactor.spawnProcess(protocol, TWISTD, argv, env=env, path=cwd)

        async def stop() -> None:
            if not protocol.ended.called:
                transport.signalProcess("TERM")
                await protocol.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        for _ in range(600):
            if protocol.ended.called:
                self.fail(f"gateway exited early:\n{protocol.output.decode()}")
            try:
                response = await treq.get(f"http://127.0.0.1:{admin_port}/", pool=self.pool, timeout=2)
                await response.content()
                if response.code == 200:
                    protocol.transport = transport
                    return protocol
            except Exception:
                pass
            await deferLater(reactor, 0.1, lambda: None)
        self.fail(f"gateway did not start:\n{protocol.output.decode()}")


class RefusalTests(StartupTestCase):
    async def test_badListen(self) -> None:
        """
        A --proxy-listen that is not an endpoint string: one line naming it.
        """
        line = await self.refuse("--proxy-listen", "nonsense:thing")
        self.assertIn("proxy_listen", line)

    async def test_badEnvironmentValue(self) -> None:
        """
        A bad ECHOGATE_ value is refused like a flag.
        """
        line = await self.refuse(env=_env(ECHOGATE_ACCESS_LOG="sometimes"))
        self.assertIn("access_log", line)

    async def test_missingPlugin(self) -> None:
        """
        A configured plugin that is not found stops start-up, named.
        """
        line = await self.refuse("--plugins", "bundled,no-such-plugin")
        self.assertIn("'no-such-plugin'", line)

    async def test_unknownConfigKey(self) -> None:
        """
        A config file with an unknown key is refused with its line number.
        """
        conf = Path(self.mktemp()).resolve()
        conf.write_text("proxy_listen = tcp:0\nproxy_lisen = typo\n")
        line = await self.refuse("--config", str(conf))
        self.assertIn(":2:", line)

    async def test_pendingMigrations(self) -> None:
        """
        A database without echogate's schema: refused, naming the command.
        """
        dsn = await fresh_database(migrated=False)
        line = await self.refuse("--database", dsn)
        self.assertIn("echogate migrations up", line)

    async def test_portInUse(self) -> None:
        """
        A proxy port already taken: one line naming it.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            line = await self.refuse("--proxy-listen", f"tcp:{port}:interface=127.0.0.1",
                                     "--admin-listen", "tcp:0:interface=127.0.0.1")
        self.assertIn(str(port), line)


class DataDirTests(StartupTestCase):
    async def test_dataDirIsAFile(self) -> None:
        """
        A --data-dir that is a file: exit non-zero with one line naming it.
        """
        path = Path(self.mktemp()).resolve()
        path.write_text("not a directory")
        line = await self.refuse("--data-dir", str(path))
        self.assertIn(f"data_dir {path} is a file", line)

    async def test_dataDirUnderAFile(self) -> None:
        """
        A --data-dir that cannot be made (a parent is a file): one line.
        """
        path = Path(self.mktemp()).resolve()
        path.write_text("not a directory")
        line = await self.refuse("--data-dir", str(path / "data"))
        self.assertIn("a parent of it is a file", line)

    async def test_failureOnceRunningExitsNonZero(self) -> None:
        """
        A start-up failure once the reactor runs (the embedded server
        cannot be made in the data directory) ends the process with a
        non-zero exit code and one clear line, without a traceback.
        """
        data = Path(self.mktemp()).resolve()
        data.mkdir()
        (data / "postgres").write_text("in the server's way")
        cwd = self.mktemp_dir()
        protocol = _Gateway()
        argv = [TWISTD, "-n", "--pidfile=", "--logfile=-", "echogate", "--data-dir", str(data),
                "--proxy-listen", "tcp:0:interface=127.0.0.1", "--admin-listen", "tcp:0:interface=127.0.0.1"]
        transport = reactor.spawnProcess(protocol, TWISTD, argv, env=_env(), path=cwd)
        self.addCleanup(lambda: None if protocol.ended.called else transport.signalProcess("KILL"))
        code = await protocol.ended
        output = protocol.output.decode()
        self.assertNotIn(code, (0, -signal.SIGTERM), output)
        self.assertEqual(code, 1, output)
        said = [line for line in output.splitlines() if "echogate could not start" in line]
        self.assertEqual(len(said), 1, output)
        self.assertIn(str(data / "postgres"), said[0])
        self.assertNotIn("Traceback", output)


class EmbeddedStartTests(StartupTestCase):
    async def test_walkThroughAndRestart(self) -> None:
        """
        twistd -n echogate with nothing but listen flags: the embedded
        PostgreSQL starts, the walk-through works, and after a restart every
        entity is still there.
        """
        upstream, upstream_port = start_upstream(self)
        cwd = self.mktemp_dir()
        proxy_port, admin_port = _free_port(), _free_port()
        args = ["--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        env = _env()
        gateway = await self.start(args, env, cwd, admin_port)
        admin = f"http://127.0.0.1:{admin_port}"
        response = await treq.post(f"{admin}/services", data={
            "name": "mock-service", "url": f"http://127.0.0.1:{upstream_port}"}, pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        response = await treq.post(f"{admin}/services/mock-service/routes",
                                   data=[("hosts[]", "mockbin.org"), ("paths[]", "/mock")], pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        response = await treq.get(f"http://127.0.0.1:{proxy_port}/mock/request",
                                  headers={"Host": "mockbin.org"}, pool=self.pool)
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.json())["uri"], "/request")
        self.assertTrue(os.path.isdir(os.path.join(cwd, "echogate-data")))
        # The node's own reactor (the reactor setting's default).
        self.assertIn(b"reactor class: echogate.polling.GatewayReactor", gateway.output)

        gateway.transport.signalProcess("TERM")
        self.assertEqual(await gateway.ended, -signal.SIGTERM)
        self.assertNotIn(b"Traceback", gateway.output)
        await self.start(args, env, cwd, admin_port)
        response = await treq.get(f"{admin}/services/mock-service", pool=self.pool)
        self.assertEqual(response.code, 200)
        response = await treq.get(f"http://127.0.0.1:{proxy_port}/mock/again",
                                  headers={"Host": "mockbin.org"}, pool=self.pool)
        self.assertEqual(response.code, 200)


class DSNStartTests(StartupTestCase):
    async def test_tacWithDatabase(self) -> None:
        """
        twistd -ny tac/echogate.tac, configured by the environment, against a
        DSN (a migrated database on a server the suite started).
        """
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port = _free_port(), _free_port()
        env = _env(ECHOGATE_DATABASE=dsn, ECHOGATE_PROXY_LISTEN=f"tcp:{proxy_port}:interface=127.0.0.1",
                   ECHOGATE_ADMIN_LISTEN=f"tcp:{admin_port}:interface=127.0.0.1", ECHOGATE_REACTOR="twisted")
        gateway = await self.start([], env, self.mktemp_dir(), admin_port, tac=True)
        # ECHOGATE_REACTOR=twisted: Twisted's default reactor, not echogate's.
        self.assertIn(b"reactor class: twisted.internet.epollreactor.EPollReactor", gateway.output)
        response = await treq.get(f"http://127.0.0.1:{proxy_port}/nothing", pool=self.pool)
        self.assertEqual(response.code, 404)
        self.assertEqual(await response.json(), {"message": "no Route matched with those values"})


class OutsideDropInTests(StartupTestCase):
    async def test_examplePluginFromItsOwnDirectory(self) -> None:
        """
        The guide's example plugin, living in its own project directory
        (docs/example-plugin, not installed), is found through PYTHONPATH,
        enabled with --plugins, configured through the Admin API and runs.
        """
        upstream, upstream_port = start_upstream(self)
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port = _free_port(), _free_port()
        env = _env(PYTHONPATH=f"{ROOT}:{ROOT / 'docs' / 'example-plugin'}")
        args = ["--database", dsn, "--plugins", "bundled,request-stamp",
                "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        await self.start(args, env, self.mktemp_dir(), admin_port)
        admin = f"http://127.0.0.1:{admin_port}"
        info = await (await treq.get(f"{admin}/", pool=self.pool)).json()
        self.assertIn("request-stamp", info["plugins"]["available_on_server"])
        await treq.post(f"{admin}/services", data={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"},
                        pool=self.pool)
        await treq.post(f"{admin}/services/s/routes", data={"paths[]": "/p"}, pool=self.pool)
        response = await treq.post(f"{admin}/services/s/plugins", data={
            "name": "request-stamp", "config.required_header": "X-Need", "config.reject_status": "403"},
            pool=self.pool)
        self.assertEqual(response.code, 201, await response.content())
        refused = await treq.get(f"http://127.0.0.1:{proxy_port}/p", pool=self.pool)
        self.assertEqual(refused.code, 403)
        self.assertEqual(await refused.json(), {"message": "the X-Need header is required"})
        passed = await treq.get(f"http://127.0.0.1:{proxy_port}/p", headers={"X-Need": "1"}, pool=self.pool)
        self.assertEqual(passed.code, 200)
        self.assertTrue(passed.headers.getRawHeaders("X-Request-Stamp")[0].startswith("id="))
        self.assertIn("x-request-id", (await passed.json())["headers"])


class WorkersTests(StartupTestCase):
    async def test_twoWorkersShareTheProxyPort(self) -> None:
        """
        --workers 2: a second process listens on the same proxy port
        (SO_REUSEPORT), serves routes created through the main process's
        Admin API, and stops with the main process.
        """
        import psutil

        upstream, upstream_port = start_upstream(self)
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port = _free_port(), _free_port()
        args = ["--database", dsn, "--workers", "2",
                "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"]
        gateway = await self.start(args, _env(), self.mktemp_dir(), admin_port)
        main = psutil.Process(gateway.transport.pid)

        def listening_worker() -> list[psutil.Process]:
            children = main.children()
            if children and any(c.laddr.port == proxy_port for c in children[0].net_connections("tcp")
                                if c.status == psutil.CONN_LISTEN):
                return children
            return []

        children = await until(listening_worker, timeout=30, interval=0.1,
                               message="a worker listens on the proxy port")
        self.assertEqual(len(children), 1)
        worker = children[0]
        admin = f"http://127.0.0.1:{admin_port}"
        await treq.post(f"{admin}/services", data={"name": "s", "url": f"http://127.0.0.1:{upstream_port}"},
                        pool=self.pool)
        await treq.post(f"{admin}/services/s/routes", data={"paths[]": "/w"}, pool=self.pool)

        def upstream_connections(process: psutil.Process) -> int:
            return sum(1 for c in process.net_connections("tcp")
                       if c.raddr and c.raddr.port == upstream_port)

        async def get() -> int:
            response = await treq.get(f"http://127.0.0.1:{proxy_port}/w", pool=self.pool)
            await response.content()
            return response.code

        async def both_served() -> bool:
            # A 404 here is the worker (or the main process) not having
            # heard of the route yet; the wait ends once both served it.
            await get()
            return bool(upstream_connections(worker) and upstream_connections(main))

        await until(both_served, timeout=30, interval=0.01, message="both processes proxy /w")
        # Both processes now know the route: every answer is a 200.
        codes = [await get() for _ in range(20)]
        self.assertEqual(codes, [200] * 20)
        self.assertGreater(upstream_connections(worker), 0)
        self.assertGreater(upstream_connections(main), 0)
        gateway.transport.signalProcess("TERM")
        await gateway.ended
        worker.wait(timeout=10)  # not our child: psutil gives no exit code
        self.assertFalse(worker.is_running())

    async def test_workersNeedTcpListeners(self) -> None:
        """
        --workers with a non-TCP proxy listener is refused in one line.
        """
        line = await self.refuse("--workers", "2", "--proxy-listen", "unix:/tmp/echogate-test.sock")
        self.assertIn("workers", line)


class ReadmeWalkThroughTests(StartupTestCase):
    async def test_commandsAsWritten(self) -> None:
        """
        The README's walk-through, run as written (its ports swapped for
        free ones, curl made to fail on an HTTP error): the upstream it
        starts answers through the gateway, then header-echo echoes.
        """
        import re

        text = (ROOT / "README.md").read_text()
        section = text.split("## A first walk-through", 1)[1]
        script = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
        self.assertIn("python3 -m http.server 9999", script)
        dsn = await fresh_database(migrated=True)
        proxy_port, admin_port, upstream_port = _free_port(), _free_port(), _free_port()
        await self.start(["--database", dsn, "--proxy-listen", f"tcp:{proxy_port}:interface=127.0.0.1",
                          "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"],
                         _env(), self.mktemp_dir(), admin_port)
        # 9999 first: a free admin or proxy port may itself hold "9999"
        # (39999), which a later replacement would corrupt.
        script = (script.replace("9999", str(upstream_port))
                  .replace("localhost:8001", f"127.0.0.1:{admin_port}")
                  .replace("localhost:8000", f"127.0.0.1:{proxy_port}")
                  .replace("curl ", "curl -f -S --retry-connrefused --retry 20 "))
        cwd = self.mktemp_dir()
        out, err, code = await getProcessOutputAndValue(
            "/bin/bash", ("-c", f"set -ex; trap 'kill %1 2>/dev/null' EXIT\n{script}"), env=_env(), path=cwd)
        self.assertEqual(code, 0, out + err)
        self.assertEqual(out.count(b"Hello from the upstream"), 2, out)
        self.assertIn(b"X-Response-Echo: Hello, world", out)
