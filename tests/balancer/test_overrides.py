"""
Tests for L{echogate.balancer.overrides.HealthOverrides}: the stored health
overrides applied to a node's balancers, each change once.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.balancer import Balancers
from echogate.balancer.overrides import HealthOverrides

UPSTREAM = {"id": "u1", "name": "orders.internal", "healthchecks": None}
TARGETS = [{"id": "t1", "target": "10.0.0.1:80", "weight": 100, "upstream": {"id": "u1"}},
           {"id": "t2", "target": "[0000:0000:0000:0000:0000:0000:0000:0001]:80", "weight": 100,
            "upstream": {"id": "u1"}}]


def row(target: str, health: str, address: str | None = None, at: int = 1) -> dict[str, Any]:
    return {"id": f"{target}|{address}", "upstream": {"id": "u1"}, "target": {"id": target},
            "address": address, "health": health, "updated_at": at}


class HealthOverridesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.balancers = Balancers(Clock())
        self.balancers.update([UPSTREAM], TARGETS)
        self.overrides = HealthOverrides(self.balancers)

    def healthy(self, address: str) -> bool:
        balancer = self.balancers.get("u1")
        assert balancer is not None
        return balancer.state.health.healthy(address, 80)

    def test_targetOverride(self) -> None:
        """
        A row for a whole target sets its addresses' health.
        """
        self.overrides.update([row("t1", "UNHEALTHY")])
        self.assertFalse(self.healthy("10.0.0.1"))
        self.assertTrue(self.healthy("0000:0000:0000:0000:0000:0000:0000:0001"))

    def test_addressOverride(self) -> None:
        """
        A row for one address (IPv6 in any spelling) sets only that one.
        """
        self.overrides.update([row("t2", "UNHEALTHY", "[::1]:80")])
        self.assertFalse(self.healthy("0000:0000:0000:0000:0000:0000:0000:0001"))
        self.assertTrue(self.healthy("10.0.0.1"))

    def test_appliedOnce(self) -> None:
        """
        A row seen again unchanged is not applied again (the health checks
        own the health since); changed, it is.
        """
        self.overrides.update([row("t1", "UNHEALTHY")])
        balancer = self.balancers.get("u1")
        assert balancer is not None
        balancer.state.health.set_healthy("10.0.0.1", 80, True)
        self.overrides.update([row("t1", "UNHEALTHY")])
        self.assertTrue(self.healthy("10.0.0.1"))
        self.overrides.update([row("t1", "UNHEALTHY", at=2)])
        self.assertFalse(self.healthy("10.0.0.1"))

    def test_unknownUpstream(self) -> None:
        """
        A row of an upstream with no balancer waits, and is applied once
        the balancer exists.
        """
        self.balancers.update([], [])
        self.overrides.update([row("t1", "UNHEALTHY")])
        self.balancers.update([UPSTREAM], TARGETS)
        self.overrides.retry()
        self.assertFalse(self.healthy("10.0.0.1"))
