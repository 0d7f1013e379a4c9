"""
Checks that keep a node's configuration right after database errors: the
periodic version check of L{echogate.proxy.snapshot.LiveConfiguration}
keeps running after a failed check, and a node started while its database
is unreachable checks the schema once the database comes back
(L{echogate.service.GatewayService}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import DatabaseUnavailable
from echogate.proxy.snapshot import LiveConfiguration
from echogate.service import GatewayService
from echogate.settings import resolve
from echogate.store import postgres
from echogate.store.data import ConfigurationData
from echogate.store.migrations import SchemaOutdated
from tests.proxy.test_plugin_contract import capture_log

INTERVAL = 5.0


class _Store:
    """
    A store whose stored version is C{stored}, with no change
    notifications (only the periodic check can see a change), and whose
    next C{version()} calls fail while C{failures} is positive.
    """

    def __init__(self) -> None:
        self.stored = 1
        self.failures = 0
        self.checks = 0

    def load(self) -> Deferred[ConfigurationData]:
        return succeed(ConfigurationData(version=self.stored))

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def version(self) -> Deferred[int]:
        self.checks += 1
        if self.failures:
            self.failures -= 1
            return fail(DatabaseUnavailable("the database is unreachable"))
        return succeed(self.stored)


class PeriodicCheckTests(SynchronousTestCase):
    """
    The periodic version check survives database errors.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _Store()
        self.live = LiveConfiguration(store=self.store, plugins={}, clock=self.clock,
                                      check_interval=INTERVAL)
        self.addCleanup(self.live.stop)
        self.successResultOf(self.live.start())
        self.assertEqual(self.live.current.version, 1)

    def test_checksContinueAfterError(self) -> None:
        """One failed check: the next interval checks again."""
        self.store.failures = 1
        self.clock.advance(INTERVAL)
        self.assertEqual(self.store.checks, 1)
        self.clock.advance(INTERVAL)
        self.assertEqual(self.store.checks, 2)

    def test_failedCheckLogged(self) -> None:
        """
        A failed check is logged, as a warning in the configuration's
        namespace naming why, with the version still served.
        """
        events = capture_log(self)
        self.store.failures = 1
        self.clock.advance(INTERVAL)
        (event,) = [e for e in events if e.get("log_namespace") == "echogate.configuration"]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(formatEvent(event), "could not check the configuration version"
                                             " (the database is unreachable); still serving version 1")

    def test_laterVersionLoadedAfterError(self) -> None:
        """After a failed check, a version stored later is loaded by a later check."""
        self.store.failures = 1
        self.clock.advance(INTERVAL)
        self.store.stored = 7
        self.clock.advance(INTERVAL)
        self.assertEqual(self.live.current.version, 7)

    def test_laterVersionLoadedAfterOutage(self) -> None:
        """Several failed checks in a row (an outage): the version stored meanwhile is loaded after."""
        self.store.failures = 3
        self.store.stored = 9
        for _ in range(3):
            self.clock.advance(INTERVAL)
        self.assertEqual(self.live.current.version, 1)
        self.clock.advance(INTERVAL)
        self.assertEqual(self.live.current.version, 9)


class _DownThenUp:
    """
    A L{postgres.PostgresStore} stand-in whose server is unreachable on its
    first C{start()} and up after; its schema check fails with
    C{schema_error} (when set) and is counted in C{schema_checks}.
    """

    instances: list["_DownThenUp"] = []
    schema_error: Exception | None = SchemaOutdated(
        "database migrations are pending: 001_x; run echogate migrations up")

    def __init__(self, reactor: Any, dsn: str, query_timeout: float = 0) -> None:
        self.instances.append(self)
        self.starts = 0
        self.schema_checks = 0

    def start(self) -> Deferred:
        self.starts += 1
        if self.starts == 1:
            return fail(DatabaseUnavailable("connection refused"))
        return succeed(None)

    def stop(self) -> Deferred:
        return succeed(None)

    def check_schema(self) -> Deferred:
        self.schema_checks += 1
        if self.schema_error is not None:
            return fail(self.schema_error)
        return succeed(None)


class SchemaCheckOnReturnTests(SynchronousTestCase):
    """
    A node started while its database is down checks the schema once the
    database is back, before it serves.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(_DownThenUp, "instances", [])
        self.patch(postgres, "PostgresStore", _DownThenUp)
        settings = resolve({"database": "postgresql://echogate@127.0.0.1:1/echogate",
                            "data_dir": self.mktemp()}, {}, None)
        self.service = GatewayService(self.clock, settings, {}, settle=None)

    def test_outdatedSchemaRefusedAfterReturn(self) -> None:
        """The database back with an outdated schema: start-up fails with L{SchemaOutdated}."""
        starting = ensureDeferred(self.service._start())
        self.assertNoResult(starting)
        self.clock.advance(10)
        self.failureResultOf(starting, SchemaOutdated)

    def test_schemaCheckedOnReturn(self) -> None:
        """The store that reached the returned database checked its schema."""
        starting = ensureDeferred(self.service._start())
        self.clock.advance(10)
        starting.addErrback(lambda f: None)
        self.assertEqual([(store.starts, store.schema_checks) for store in _DownThenUp.instances], [(2, 1)])
