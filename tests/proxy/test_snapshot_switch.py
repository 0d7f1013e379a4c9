"""
L{echogate.proxy.snapshot}: the load balancing records a snapshot carries,
and L{LiveConfiguration.on_switch}.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.snapshot import LiveConfiguration, Snapshot
from echogate.store.data import ConfigurationData

DATA = ConfigurationData(version=3, upstreams=({"id": "u1", "name": "u"},),
                         targets=({"id": "t1", "target": "10.0.0.1:80", "upstream": {"id": "u1"}},),
                         target_health_overrides=({"id": "o1", "health": "UNHEALTHY"},))


class _Store:
    def load(self) -> Deferred[ConfigurationData]:
        return succeed(DATA)

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def version(self) -> Deferred[int]:
        return succeed(3)


class SnapshotBalancingTests(SynchronousTestCase):
    def test_records(self) -> None:
        """
        A snapshot carries the upstreams, targets and health overrides.
        """
        snapshot = Snapshot.build(DATA, {})
        self.assertEqual((snapshot.upstreams, snapshot.targets, snapshot.target_health_overrides),
                         (DATA.upstreams, DATA.targets, DATA.target_health_overrides))

    def test_onSwitch(self) -> None:
        """
        C{on_switch} callbacks get each new snapshot once it is current;
        one that raises is logged and the snapshot stays.
        """
        live = LiveConfiguration(store=_Store(), plugins={}, clock=Clock())
        seen: list[Snapshot] = []

        def broken(snapshot: Snapshot) -> None:
            raise RuntimeError("no")

        live.on_switch(broken)
        live.on_switch(lambda snapshot: seen.append(snapshot) or self.assertIs(live.current, snapshot))
        with capturedLogs() as logs:
            live.start()
        live.stop()
        self.assertEqual([snapshot.version for snapshot in seen], [3])
        self.assertEqual(live.current.version, 3)
        self.assertTrue(any(event.get("log_failure") for event in logs))
        self.flushLoggedErrors(RuntimeError)


class _Release:
    """
    A release recording the snapshots it is given, and whether it was
    stopped.
    """

    def __init__(self) -> None:
        self.given: list[Snapshot] = []
        self.stopped = False

    def __call__(self, snapshot: Snapshot) -> None:
        self.given.append(snapshot)

    def stop(self) -> None:
        self.stopped = True


class _Versions(_Store):
    """
    A store whose every load is one version newer.
    """

    def __init__(self) -> None:
        self.version_now = 2

    def load(self) -> Deferred[ConfigurationData]:
        self.version_now += 1
        return succeed(ConfigurationData(version=self.version_now))


class ReleaseTests(SynchronousTestCase):
    """
    L{LiveConfiguration} hands each snapshot it replaces to its C{release}
    (the gateway's frees it in slices), and stops it when stopped.
    """

    def test_replacedReleased(self) -> None:
        """
        Each switch gives the release the snapshot that was current before
        it, once the new one is current; C{stop} stops the release.
        """
        release = _Release()
        live = LiveConfiguration(store=_Versions(), plugins={}, clock=Clock(), release=release)
        empty = live.current
        seen: list[Snapshot] = []
        live.on_switch(lambda snapshot: seen.append(live.current))
        live.start()
        first = live.current
        live.reload()
        self.assertEqual([snapshot.version for snapshot in seen], [3, 4])
        self.assertEqual(len(release.given), 2)
        self.assertIs(release.given[0], empty)
        self.assertIs(release.given[1], first)
        self.assertFalse(release.stopped)
        live.stop()
        self.assertTrue(release.stopped)
