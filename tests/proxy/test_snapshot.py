"""
Tests for L{echogate.proxy.snapshot.LiveConfiguration}'s building of snapshots:
off the reactor thread in the gateway, swapped in only once built.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from echogate.proxy.compiling import build_in_thread
from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.store.data import ConfigurationData

_SERVICE = {"id": "5b1c2f4a-8d0e-4c4e-9c1e-2b7a3d5e6f70", "name": "s", "protocol": "http", "host": "up",
            "port": 80, "path": None}


def _data(version: int, paths: tuple[str, ...] = ("/a",)) -> ConfigurationData:
    routes = tuple({"id": f"00000000-0000-4000-8000-{n:012d}", "name": f"r{n}", "paths": [path],
                    "service": {"id": _SERVICE["id"]}} for n, path in enumerate(paths))
    return ConfigurationData(version=version, services=(_SERVICE,), routes=routes)


class _Store:
    def __init__(self, *loads: ConfigurationData):
        self.loads = list(loads)
        self.loaded = 0
        self.subscriber: Any = None

    def load(self) -> Deferred[ConfigurationData]:
        self.loaded += 1
        return succeed(self.loads.pop(0))

    def subscribe(self, callback: Any) -> Any:
        self.subscriber = callback
        return lambda: None

    def version(self) -> Deferred[int]:
        return succeed(0)


class DeferredBuildTests(SynchronousTestCase):
    """
    With a C{build} that answers later, requests keep the old snapshot
    until the new one is built.
    """

    def setUp(self) -> None:
        self.builds: list[tuple[Deferred, ConfigurationData]] = []

        def build(data: ConfigurationData, plugins: Mapping[str, Any], previous: Snapshot,
                  missing_plugins: str = "refuse") -> Deferred:
            d: Deferred = Deferred()
            self.builds.append((d, data))
            return d

        self.live = LiveConfiguration(store=_Store(_data(1), _data(2, ("/b",))), plugins={}, clock=Clock(),
                                      build=build)
        self.addCleanup(self.live.stop)

    def _finish(self) -> None:
        d, data = self.builds.pop(0)
        d.callback(Snapshot.build(data, {}))

    def test_oldUntilBuilt(self) -> None:
        """
        While a snapshot is being built, C{current} is the previous one,
        and C{reload()} fires only once the new one is in.
        """
        started = self.live.start()
        self.assertEqual(self.live.current.version, -1)
        self.assertNoResult(started)
        self._finish()
        self.successResultOf(started)
        self.assertEqual(self.live.current.version, 1)
        reloaded = self.live.reload()
        self.assertEqual(self.live.current.version, 1)
        self.assertNoResult(reloaded)
        self._finish()
        self.successResultOf(reloaded)
        self.assertEqual(self.live.current.version, 2)
        self.assertIsNotNone(self.live.current.router.match("GET", None, "/b", {}))

    def test_reloadsWhileBuildingCoalesce(self) -> None:
        """
        Reloads asked for while a build runs wait for it, and make one more
        load after it, not one each.
        """
        self.live._store.loads.append(_data(3))
        self.live.start()
        first, second = self.live.reload(), self.live.reload()
        self.assertEqual(len(self.builds), 1)
        self._finish()
        self.assertEqual(len(self.builds), 1)  # the one more load, building
        self._finish()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.live.current.version, 2)

    def test_builtAfterStop(self) -> None:
        """
        A build that finishes after C{stop()} swaps its snapshot in but
        leaves nothing scheduled.
        """
        self.live._settle = lambda: None
        self.live.start()
        self.live.stop()
        self._finish()
        self.assertEqual(self.live.current.version, 1)
        self.assertEqual([c for c in self.live._clock.getDelayedCalls() if c.active()], [])

    def test_failedBuildKeepsOld(self) -> None:
        """
        A build that fails leaves the previous snapshot in place, is logged
        with its traceback, and fails the reload.
        """
        self.live.start()
        self._finish()
        reloaded = self.live.reload()
        d, _ = self.builds.pop(0)
        d.errback(RuntimeError("cannot build"))
        self.failureResultOf(reloaded, RuntimeError)
        self.assertEqual(self.live.current.version, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ThreadBuildTests(TestCase):
    """
    L{build_in_thread} builds in the reactor's thread pool.
    """

    async def test_builtElsewhere(self) -> None:
        """
        The snapshot is compiled outside the reactor thread, and is the
        same as one built in it.
        """
        threads: list[threading.Thread] = []
        original = Snapshot.build.__func__  # type: ignore[attr-defined]

        budgets: list[float | None] = []

        def recording(cls: type, data: ConfigurationData, plugins: Mapping[str, Any],
                      previous: Snapshot | None = None, missing_plugins: str = "refuse",
                      regex_timeout: float | None = 0.005) -> Snapshot:
            threads.append(threading.current_thread())
            budgets.append(regex_timeout)
            return original(cls, data, plugins, previous, missing_plugins, regex_timeout)

        self.patch(Snapshot, "build", classmethod(recording))
        snapshot = await build_in_thread(reactor, regex_timeout=0.25)(_data(7, ("/x", "/y")), {})
        self.assertEqual(len(threads), 1)
        self.assertEqual(budgets, [0.25])
        self.assertIsNot(threads[0], threading.main_thread())
        self.assertEqual(snapshot.version, 7)
        self.assertEqual(len(snapshot.router), 2)


class SettleTests(SynchronousTestCase):
    """
    Settling (the gateway's is a full collection) waits until changes have
    been quiet for C{settle_delay}, and happens once for a burst of them.
    """

    def setUp(self) -> None:
        self.settled: list[int] = []
        self.clock = Clock()
        self.live = LiveConfiguration(store=_Store(_data(1), _data(2), _data(3)), plugins={}, clock=self.clock,
                                      settle=lambda: self.settled.append(self.live.current.version),
                                      settle_delay=1.0)
        self.addCleanup(self.live.stop)

    def test_onceAfterBurst(self) -> None:
        """
        Reloads within the delay of each other are settled once, for the
        latest configuration, the delay after the last one.
        """
        self.live.start()
        self.clock.advance(0.5)
        self.live.reload()
        self.clock.advance(0.5)
        self.live.reload()
        self.clock.advance(0.9)
        self.assertEqual(self.settled, [])
        self.clock.advance(0.2)
        self.assertEqual(self.settled, [3])
        self.assertEqual(self.live.current.version, 3)

    def test_withoutSettle(self) -> None:
        """
        Without C{settle}, nothing is scheduled after a load.
        """
        live = LiveConfiguration(store=_Store(_data(1)), plugins={}, clock=self.clock)
        live.start()
        self.addCleanup(live.stop)
        # Only the periodic version check is scheduled.
        self.assertEqual(len([c for c in self.clock.getDelayedCalls() if c.active()]), 1)

    def test_stopCancels(self) -> None:
        """
        Stopping cancels a pending settling.
        """
        self.live.start()
        self.live.stop()
        self.clock.advance(5)
        self.assertEqual(self.settled, [])
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])


class NotificationTests(SynchronousTestCase):
    """
    Change notifications reload only when they announce a newer version.
    """

    def setUp(self) -> None:
        self.store = _Store(_data(5), _data(6))
        self.live = LiveConfiguration(store=self.store, plugins={}, clock=Clock())
        self.addCleanup(self.live.stop)
        self.live.start()

    def test_staleIgnored(self) -> None:
        """
        Notifications of the current version or older (a burst of writes
        delivers them after the last one was loaded) read nothing.
        """
        for version in (3, 4, 5):
            self.store.subscriber(version)
        self.assertEqual((self.store.loaded, self.live.current.version), (1, 5))

    def test_newerLoaded(self) -> None:
        """
        A newer version is loaded.
        """
        self.store.subscriber(6)
        self.assertEqual((self.store.loaded, self.live.current.version), (2, 6))

    def test_unknownLoaded(self) -> None:
        """
        A notification without a version (the listener reconnected) loads.
        """
        self.store.subscriber(None)
        self.assertEqual((self.store.loaded, self.live.current.version), (2, 6))



class _SlowStore:
    """
    A store whose loads answer when the test says, and whose version is
    C{self.stored}.
    """

    def __init__(self) -> None:
        self.stored = 0
        self.pending: list[Deferred] = []
        self.loaded = 0
        self.subscriber: Any = None

    def load(self) -> Deferred[ConfigurationData]:
        self.loaded += 1
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def finish(self, version: int) -> None:
        self.pending.pop(0).callback(_data(version))

    def subscribe(self, callback: Any) -> Any:
        self.subscriber = callback
        return lambda: None

    def version(self) -> Deferred[int]:
        return succeed(self.stored)


class CatchUpTests(SynchronousTestCase):
    """
    L{LiveConfiguration.catch_up}, what an Admin API write waits for: a
    snapshot at the store's version, from the load under way when there is
    one that reaches it, else from one more load.
    """

    def setUp(self) -> None:
        self.store = _SlowStore()
        self.live = LiveConfiguration(store=self.store, plugins={}, clock=Clock())
        self.addCleanup(self.live.stop)
        self.live.start()
        self.store.finish(1)
        self.store.loaded = 0

    def test_loadUnderWay(self) -> None:
        """
        A load under way (the write's notification started it) that reaches
        the store's version is enough: no second load.
        """
        self.store.stored = 2
        self.live.reload()
        caught = self.live.catch_up()
        self.assertNoResult(caught)
        self.store.finish(2)
        self.successResultOf(caught)
        self.assertEqual((self.store.loaded, self.live.current.version), (1, 2))

    def test_loadUnderWayTooOld(self) -> None:
        """
        A load under way that ends short of the store's version (it began
        before the write was committed) is followed by one more, which the
        write waits for.
        """
        self.live.reload()
        self.store.stored = 2
        caught = self.live.catch_up()
        self.store.finish(1)
        self.assertNoResult(caught)
        self.assertEqual(self.store.loaded, 2)
        self.store.finish(2)
        self.successResultOf(caught)
        self.assertEqual(self.live.current.version, 2)

    def test_alreadyThere(self) -> None:
        """
        When the snapshot already has the store's version (the notification
        was handled first), nothing is loaded.
        """
        self.store.stored = 1
        self.successResultOf(self.live.catch_up())
        self.assertEqual(self.store.loaded, 0)

    def test_idle(self) -> None:
        """
        With no load under way and an older snapshot, one load runs.
        """
        self.store.stored = 3
        caught = self.live.catch_up()
        self.assertEqual(self.store.loaded, 1)
        self.store.finish(3)
        self.successResultOf(caught)

    def test_versionWentBack(self) -> None:
        """
        Should the store's version go back (a restored database) below the
        one read at the call, a load begun after the call is enough: the
        write does not wait forever.
        """
        self.live.reload()
        self.store.stored = 9
        caught = self.live.catch_up()
        self.store.finish(1)
        self.store.finish(1)
        self.successResultOf(caught)
        self.assertEqual(self.store.loaded, 2)

    def test_failedLoad(self) -> None:
        """
        When the load under way fails, the write waits for one more, as a
        reload asked for during a load does; if that one fails too, so
        does the write's wait.
        """
        self.store.stored = 2
        self.live.reload().addErrback(lambda _: None)
        caught = self.live.catch_up()
        self.store.pending.pop(0).errback(RuntimeError("database gone"))
        self.assertNoResult(caught)
        self.assertEqual(self.store.loaded, 2)
        self.store.pending.pop(0).errback(RuntimeError("database still gone"))
        self.failureResultOf(caught, RuntimeError)

    def test_failedLoadRetried(self) -> None:
        """
        When the load under way fails and the one after it succeeds, the
        write's wait ends with it.
        """
        self.store.stored = 2
        self.live.reload().addErrback(lambda _: None)
        caught = self.live.catch_up()
        self.store.pending.pop(0).errback(RuntimeError("database gone"))
        self.store.finish(2)
        self.successResultOf(caught)
        self.assertEqual(self.live.current.version, 2)

    def test_versionUnknown(self) -> None:
        """
        When the store's version cannot be read, a load that starts after
        the call is waited for, as a reload.
        """
        self.patch(self.store, "version", lambda: fail(RuntimeError("no answer")))
        caught = self.live.catch_up()
        self.assertEqual(self.store.loaded, 1)
        self.store.finish(2)
        self.successResultOf(caught)

    def test_notifiedDuringLoad(self) -> None:
        """
        A notification of a version that the load under way reaches (the
        write's own, after C{catch_up} began the load) makes no load of
        its own.
        """
        self.store.stored = 2
        caught = self.live.catch_up()
        self.store.subscriber(2)
        self.store.finish(2)
        self.successResultOf(caught)
        self.assertEqual((self.store.loaded, self.live.current.version), (1, 2))
        self.assertEqual(self.store.pending, [])

    def test_notifiedBeyondLoad(self) -> None:
        """
        A notification of a version beyond what the load under way reaches
        makes one more load.
        """
        self.live.reload()
        self.store.subscriber(3)
        self.store.finish(2)
        self.assertEqual(self.store.loaded, 2)
        self.store.finish(3)
        self.assertEqual(self.live.current.version, 3)
