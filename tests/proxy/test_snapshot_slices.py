"""
Tests for L{echogate.proxy.compiling.build_in_slices}: the next snapshot is
compiled on the reactor thread in short slices, and handed over whole.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.compiling import build_in_slices
from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.routing.router import STEP, Router, finish
from echogate.store.data import ConfigurationData
from tests.ticking import ticking

_SERVICE: dict[str, Any] = {"id": "5b1c2f4a-8d0e-4c4e-9c1e-2b7a3d5e6f70", "name": "s", "protocol": "http", "host": "up",
            "port": 80, "path": None}


def _data(version: int, count: int, prefix: str = "/r", broken: int | None = None) -> ConfigurationData:
    """
    C{count} routes C{prefix}0 ... (the one at C{broken} names its service
    with a string, which the router's build cannot read).
    """
    routes = tuple({"id": f"00000000-0000-4000-8000-{n:012d}", "name": f"r{n}", "paths": [f"{prefix}{n}"],
                    "service": "nope" if n == broken else {"id": _SERVICE["id"]}} for n in range(count))
    return ConfigurationData(version=version, services=(_SERVICE,), routes=routes)


class _Store:
    def __init__(self, *loads: ConfigurationData):
        self.loads = list(loads)
        self.loaded = 0
        self.stored = 0

    def load(self) -> Deferred[ConfigurationData]:
        self.loaded += 1
        return succeed(self.loads.pop(0))

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def version(self) -> Deferred[int]:
        return succeed(self.stored)


def _slices(clock: Clock, done: Deferred[Any], between: Callable[[], object] = lambda: None,
            limit: int = 1000) -> int:
    """
    Run the slices scheduled on C{clock} until C{done} fires, calling
    C{between} before each.

    @return: how many slices ran.
    """
    ran = 0
    fired: list[bool] = []

    def finished(result: object) -> object:
        fired.append(True)
        return result

    done.addBoth(finished)
    while not fired and ran < limit:
        between()
        clock.advance(0.001)
        ran += 1
    return ran


class RouterStepsTests(SynchronousTestCase):
    """
    L{Router.building} compiles in steps, to the same table as
    L{Router.build}.
    """

    def _steps(self, data: ConfigurationData) -> tuple[Router, int]:
        steps = Router.building(data.routes, {_SERVICE["id"]: _SERVICE})
        paused = 0
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value, paused
            paused += 1

    def test_pausesAmongRoutes(self) -> None:
        """
        It pauses at least once every L{STEP} routes (here all under one
        path, so that the index is one bucket).
        """
        data = _data(1, 5 * STEP, prefix="/same")
        same = ConfigurationData(version=1, services=data.services,
                                 routes=tuple({**route, "paths": ["/same"]} for route in data.routes))
        router, paused = self._steps(same)
        self.assertGreaterEqual(paused, 4)
        self.assertEqual(len(router), 5 * STEP)

    def test_pausesAmongPaths(self) -> None:
        """
        It pauses while filing many distinct hosts' indexes too.
        """
        data = _data(1, 3 * STEP)
        hosts = ConfigurationData(version=1, services=data.services, routes=tuple(
            {**route, "hosts": [f"h{n}.example.com"], "paths": ["/"]} for n, route in enumerate(data.routes)))
        baseline = ConfigurationData(version=1, services=data.services, routes=tuple(
            {**route, "hosts": ["h.example.com"], "paths": ["/"]} for route in data.routes))
        self.assertGreaterEqual(self._steps(hosts)[1], self._steps(baseline)[1] + 3)

    def test_indexInPlace(self) -> None:
        """
        A path index is made of the lists it is given in place, a step at
        a time: each step turns L{STEP} lists into tuples (freeing them as
        it goes, instead of all at the end), and the dictionary given
        becomes the index's buckets, with the keys' lengths collected on
        the way.
        """
        from echogate.routing.router import _PathIndex

        entries: dict[str, Any] = {f"/p{n:04d}": [n] for n in range(3 * STEP)}
        entries["/"] = [-1]
        steps = _PathIndex.making(entries)
        next(steps)
        self.assertEqual(sum(isinstance(value, tuple) for value in entries.values()), STEP)
        index = finish(steps)
        self.assertIs(index.buckets, entries)
        self.assertEqual(entries["/p0005"], (5,))
        self.assertEqual(index.lengths, (1, 6))

    def test_sameAnswers(self) -> None:
        """
        The table it returns answers as the one built at once.
        """
        data = _data(1, 5 * STEP)
        router, _ = self._steps(data)
        at_once = Router.build(data.routes, {_SERVICE["id"]: _SERVICE})
        self.assertEqual(len(router), len(at_once))
        for path in ("/r0", f"/r{STEP}", f"/r{5 * STEP - 1}", "/nothing"):
            found, expected = router.match("GET", None, path, {}), at_once.match("GET", None, path, {})
            self.assertEqual(found.route if found else None, expected.route if expected else None)


class SlicedBuildTests(SynchronousTestCase):
    """
    L{build_in_slices} builds a snapshot a slice at a time, the reactor
    running in between.
    """

    def test_inSlices(self) -> None:
        """
        The build hands the reactor back between slices (one call of the
        clock pending), and fires with the whole snapshot at the end.
        """
        clock = Clock()
        build = build_in_slices(clock, slice_seconds=0.5, timer=ticking())
        built = build(_data(4, 3 * STEP), {})
        pending: list[int] = []
        ran = _slices(clock, built, lambda: pending.append(len(clock.getDelayedCalls())))
        snapshot = self.successResultOf(built)
        self.assertGreater(ran, 3)
        self.assertEqual(set(pending), {1})
        self.assertEqual((snapshot.version, len(snapshot.router)), (4, 3 * STEP))

    def test_longSlices(self) -> None:
        """
        Steps run on in one slice until its time is up (here the whole
        build), then the snapshot is handed over in the next turn.
        """
        clock = Clock()
        build = build_in_slices(clock, slice_seconds=1000.0, timer=ticking())
        built = build(_data(4, 3 * STEP), {})
        self.assertEqual(_slices(clock, built), 2)
        self.assertEqual(len(self.successResultOf(built).router), 3 * STEP)

    def test_handedOverInATurnOfItsOwn(self) -> None:
        """
        The snapshot is handed over in the turn after the last slice, so
        that what the switch sets off does not lengthen that slice.
        """
        clock = Clock()
        build = build_in_slices(clock, slice_seconds=1000.0, timer=ticking())
        built = build(_data(4, STEP), {})
        clock.advance(0.001)
        self.assertNoResult(built)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.001)
        self.assertEqual(len(self.successResultOf(built).router), STEP)

    def test_previousReused(self) -> None:
        """
        Routes that did not change are taken from the previous snapshot's
        router, as in L{Snapshot.build}.
        """
        clock = Clock()
        build = build_in_slices(clock, slice_seconds=0.5, timer=ticking())
        data = _data(1, 2 * STEP)
        previous = Snapshot.build(data, {})
        built = build(ConfigurationData(version=2, services=data.services, routes=data.routes), {}, previous)
        _slices(clock, built)
        snapshot = self.successResultOf(built)
        self.assertIs(snapshot.router._compiled[data.routes[7]["id"]][0],
                      previous.router._compiled[data.routes[7]["id"]][0])


class HandOverTests(SynchronousTestCase):
    """
    L{LiveConfiguration} with L{build_in_slices}: requests see the whole
    old configuration or the whole new one; changes during a build are
    built after it; a failed build keeps the old snapshot.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _Store(_data(1, 3, prefix="/old"))
        self.live = LiveConfiguration(store=self.store, plugins={}, clock=self.clock,
                                      build=build_in_slices(self.clock, slice_seconds=0.5, timer=ticking()))
        self.addCleanup(self.live.stop)
        started = self.live.start()
        _slices(self.clock, started)
        self.successResultOf(started)
        self.old = self.live.current

    def _serves(self, path: str) -> bool:
        return self.live.current.router.match("GET", None, path, {}) is not None

    def test_wholeOldThenWholeNew(self) -> None:
        """
        Between the slices of a build, C{current} is the old snapshot,
        serving the old routes and none of the new; after it, the new one,
        with every new route.
        """
        self.store.loads.append(_data(2, 3 * STEP, prefix="/new"))
        reloaded = self.live.reload()
        seen: list[tuple[Any, bool, bool]] = []
        ran = _slices(self.clock, reloaded, lambda: seen.append(
            (self.live.current, self._serves("/old0"), self._serves("/new0"))))
        self.successResultOf(reloaded)
        self.assertGreater(ran, 3)
        self.assertEqual(set((current is self.old, old, new) for current, old, new in seen), {(True, True, False)})
        self.assertEqual(self.live.current.version, 2)
        self.assertEqual(len(self.live.current.router), 3 * STEP)
        self.assertTrue(self._serves(f"/new{3 * STEP - 1}"))
        self.assertFalse(self._serves("/old0"))

    def test_changesDuringBuildCoalesce(self) -> None:
        """
        Changes notified while a build runs are not lost: one more load
        follows it, by itself, for all of them.
        """
        self.store.loads += [_data(2, 2 * STEP), _data(4, 2 * STEP, prefix="/last")]
        self.store.stored = 2
        reloaded = self.live.reload()
        self.clock.advance(0)
        self.assertNoResult(reloaded)
        self.store.stored = 3
        self.live._notified(3)
        self.store.stored = 4
        self.live._notified(4)
        _slices(self.clock, reloaded)
        self.successResultOf(reloaded)
        self.assertEqual(self.live.current.version, 2)
        for _ in range(100):
            self.clock.advance(0.001)
        self.assertEqual((self.store.loaded, self.live.current.version), (3, 4))
        self.assertTrue(self._serves("/last0"))

    def test_failedBuildKeepsOld(self) -> None:
        """
        A build that fails part way keeps the old snapshot current, logs the
        failure with the version it was building, and fails the reload; the
        next change is built as usual.
        """
        self.store.loads += [_data(2, 3 * STEP, broken=2 * STEP), _data(3, 2, prefix="/fixed")]
        with capturedLogs() as events:
            reloaded = self.live.reload()
            ran = _slices(self.clock, reloaded)
        self.failureResultOf(reloaded, AttributeError)
        self.assertGreater(ran, 2)
        self.assertIs(self.live.current, self.old)
        self.assertTrue(self._serves("/old0"))
        logged: list[LogEvent] = [event for event in events if event.get("log_failure") is not None]
        self.assertEqual([(event["version"], event["current"]) for event in logged], [(2, 1)])
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)
        again = self.live.reload()
        _slices(self.clock, again)
        self.successResultOf(again)
        self.assertEqual(self.live.current.version, 3)
        self.assertTrue(self._serves("/fixed1"))
