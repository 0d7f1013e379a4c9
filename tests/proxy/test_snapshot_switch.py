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
