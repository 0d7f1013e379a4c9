"""
What the main process hands its workers.
"""
from __future__ import annotations

import attrs
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from echogate.settings import DEFAULTS, resolve
from echogate.workers import WORKER_OF, WorkerPool, _Worker


class WorkerEnvironmentTests(SynchronousTestCase):
    def test_everySettingPassedOn(self) -> None:
        """
        A worker gets every setting of the main process (the admin listener
        excepted: workers serve only the proxy), the database DSN and the
        ports the main process bound.
        """
        settings = resolve({"workers": "2", "upstream_client": "agent", "proxy_listen": "tcp:0:interface=127.0.0.1",
                            "trusted_ips": "10.0.0.0/8", "access_log": "on"}, {}, None)
        env = WorkerPool(Clock(), settings, "postgresql://db/x", [4242], environ={})._environment()
        self.assertEqual(env["ECHOGATE_UPSTREAM_CLIENT"], "agent")
        self.assertEqual(env["ECHOGATE_DATABASE"], "postgresql://db/x")
        self.assertIn("tcp:4242:", env["ECHOGATE_PROXY_LISTEN"])
        self.assertIn(WORKER_OF, env)
        passed = {k[len("ECHOGATE_"):].lower() for k in env if k.startswith("ECHOGATE_")}
        self.assertEqual(set(DEFAULTS) - {"admin_listen", "admin_token", "admin_server_names"} - passed, set())
        self.assertNotIn("ECHOGATE_ADMIN_TOKEN", env)
        reparsed = resolve({}, env, None)
        self.assertEqual(attrs.evolve(reparsed, proxy_listen=settings.proxy_listen, database=settings.database,
                                      admin_token="", admin_server_names=()),
                         attrs.evolve(settings, admin_token="", admin_server_names=()))
        self.assertEqual(reparsed.upstream_client, "agent")
        self.assertEqual(reparsed.trusted_ips, ("10.0.0.0/8",))


class WorkerTLSEnvironmentTests(SynchronousTestCase):
    def test_sslListenersAndSettingsPassedOn(self) -> None:
        """
        An ssl proxy listener stays one in the worker (on the port the main
        process bound), with the main process's ssl_* settings; the http2
        flag too.
        """
        settings = resolve({"workers": "2", "proxy_listen": "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl",
                            "ssl_protocols": "TLSv1.3", "ssl_cipher_suite": "modern",
                            "ssl_session_tickets": "off", "ssl_session_timeout": "10m"}, {}, None)
        env = WorkerPool(Clock(), settings, "postgresql://db/x", [4242, 4243], environ={})._environment()
        reparsed = resolve({}, env, None)
        self.assertEqual(reparsed.proxy_listen, ("tcp:4242:interface=127.0.0.1:backlog=511 http2",
                                                 "tcp:4243:interface=127.0.0.1:backlog=511 http2 ssl"))
        self.assertEqual((reparsed.ssl_protocols, reparsed.ssl_cipher_suite, reparsed.ssl_session_tickets,
                          reparsed.ssl_session_timeout), (("TLSv1.3",), "modern", False, 600))


class _Unsignalable:
    """
    A worker process that cannot be signalled: C{signalProcess} raises
    C{error}.
    """

    pid = 4321

    def __init__(self, error: Exception) -> None:
        self.error = error

    def signalProcess(self, signal: str) -> None:
        raise self.error


class WorkerStopTests(SynchronousTestCase):
    def pool(self, error: Exception) -> WorkerPool:
        """
        A pool of one worker whose process raises C{error} when signalled.
        """
        settings = resolve({"workers": "2"}, {}, None)
        pool = WorkerPool(Clock(), settings, "postgresql://db/x", [4242], environ={})
        worker = _Worker(1)
        worker.process = _Unsignalable(error)  # type: ignore[assignment]
        pool._workers.append(worker)
        return pool

    def test_unexpectedSignalErrorLogged(self) -> None:
        """
        A worker that cannot be signalled to stop is logged, not ignored.
        """
        with capturedLogs() as events:
            self.pool(OSError("no such process")).stop()
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["log_namespace"], "echogate.workers")
        self.assertTrue(failures[0]["log_failure"].check(OSError))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_alreadyExitedQuiet(self) -> None:
        """
        A worker that exited just before the signal is not an error.
        """
        with capturedLogs() as events:
            self.pool(ProcessExitedAlready()).stop()
        self.assertEqual([e for e in events if "log_failure" in e], [])
