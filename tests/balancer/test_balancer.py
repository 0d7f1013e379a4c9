"""
Tests for L{echogate.balancer.balancer.Balancer} and L{echogate.balancer.balancers.Balancers}.
"""
from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from echogate.balancer import (
    DNS_ERROR,
    HEALTHCHECKS_OFF,
    HEALTHY,
    TIMEOUT,
    UNHEALTHY,
    Balancer,
    Balancers,
    Outcome,
    TargetResolver,
    split_target,
)
from tests.balancer.test_dns import MemoryResolver

UPSTREAM_ID = "u-1"


def upstream(**fields: Any) -> dict[str, Any]:
    """
    An upstream record.
    """
    record: dict[str, Any] = {"id": UPSTREAM_ID, "name": "backend", "algorithm": "round-robin",
                              "hash_on": "none", "slots": 100, "healthchecks": None}
    record.update(fields)
    return record


def target(address: str, weight: int = 100, upstream_id: str = UPSTREAM_ID) -> dict[str, Any]:
    """
    A target record.
    """
    return {"id": f"t-{address}", "target": address, "weight": weight,
            "upstream": {"id": upstream_id}}


PASSIVE = {"passive": {"unhealthy": {"http_failures": 1, "timeouts": 1}}}


class SplitTargetTests(SynchronousTestCase):
    """
    Tests for L{split_target}.
    """

    def test_forms(self) -> None:
        """
        Host and port, IPv6 in brackets, and Kong's default port.
        """
        self.assertEqual(split_target("a.test:81"), ("a.test", 81))
        self.assertEqual(split_target("[::1]:82"), ("::1", 82))
        self.assertEqual(split_target("a.test"), ("a.test", 8000))


class BalancerTests(SynchronousTestCase):
    """
    Tests for L{Balancer}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def balancer(self, *targets: Mapping[str, Any], **fields: Any) -> Balancer:
        """
        A balancer of C{targets}.
        """
        return Balancer(upstream(**fields), list(targets), clock=self.clock)

    def test_pick(self) -> None:
        """
        A pick gives the address, port, target and host name.
        """
        peer = self.balancer(target("10.0.0.1:81")).pick()
        assert peer is not None
        self.assertEqual((peer.address, peer.port, peer.target_id, peer.hostname,
                          peer.upstream_id), ("10.0.0.1", 81, "t-10.0.0.1:81", "10.0.0.1", "u-1"))

    def test_retry_excludes(self) -> None:
        """
        A retry never goes to the peer that just failed.
        """
        balancer = self.balancer(target("10.0.0.1:80"), target("10.0.0.2:80"),
                                 algorithm="consistent-hashing")
        first = balancer.pick("key")
        assert first is not None
        second = balancer.pick("key", [first])
        self.assertNotIn(second, (None, first))
        self.assertIsNone(balancer.pick("key", [first, second]))  # type: ignore[list-item]

    def test_passive_unhealthy_until_set(self) -> None:
        """
        A passive failure takes an address out; with passive checks only it
        comes back only when set healthy.
        """
        balancer = self.balancer(target("10.0.0.1:80"), target("10.0.0.2:80"),
                                 healthchecks=PASSIVE)
        peer = balancer.pick()
        assert peer is not None
        balancer.report(peer, Outcome(status=500))
        picked = {balancer.pick() for _ in range(4)}
        self.assertEqual({other.address for other in picked if other}, {"10.0.0.2"})
        self.clock.advance(3600)
        self.assertNotIn(peer.address, {other.address for other in
                                        (balancer.pick() for _ in range(4)) if other})
        self.assertEqual(balancer.set_healthy(peer.address, peer.port, True), 1)
        self.assertIn(peer.address, {other.address for other in
                                     (balancer.pick() for _ in range(4)) if other})

    def test_all_unhealthy(self) -> None:
        """
        No healthy address: no peer.
        """
        balancer = self.balancer(target("10.0.0.1:80"), healthchecks=PASSIVE)
        peer = balancer.pick()
        assert peer is not None
        balancer.report(peer, Outcome(failure=TIMEOUT))
        self.assertIsNone(balancer.pick())

    def test_threshold(self) -> None:
        """
        Below the threshold percentage of healthy weight, the balancer is
        unhealthy and picks nothing.
        """
        balancer = self.balancer(target("10.0.0.1:80", 100), target("10.0.0.2:80", 300),
                                 healthchecks={**PASSIVE, "threshold": 80})
        self.assertTrue(balancer.healthy)
        balancer.set_healthy("10.0.0.1", 80, False)
        self.assertIsNone(balancer.pick())
        self.assertEqual(balancer.balancer_health()["balancer_health"], UNHEALTHY)
        self.assertEqual(balancer.balancer_health()["details"]["weight"],
                         {"total": 400, "available": 300, "unavailable": 100})

    def test_least_connections_report(self) -> None:
        """
        A report ends the request in flight that the pick began.
        """
        balancer = self.balancer(target("10.0.0.1:80"), target("10.0.0.2:80"),
                                 algorithm="least-connections")
        first = balancer.pick()
        assert first is not None
        self.assertNotEqual(balancer.pick(), first)
        balancer.report(first, Outcome(status=200, latency=0.1))
        self.assertEqual(balancer.pick(), first)
        self.assertEqual(balancer.state.load(first.address, first.port).in_flight, 1)

    def test_health_report(self) -> None:
        """
        The report has each target's record, health and addresses.
        """
        balancer = self.balancer(target("10.0.0.1:80"), target("10.0.0.2:80"),
                                 healthchecks=PASSIVE)
        balancer.set_healthy("10.0.0.2", 80, False)
        report = balancer.health_report()
        self.assertEqual([item["health"] for item in report], [HEALTHY, UNHEALTHY])
        self.assertEqual(report[1]["data"], {"addresses": [
            {"ip": "10.0.0.2", "port": 80, "health": UNHEALTHY, "weight": 100}]})
        self.assertEqual(report[0]["target"], "10.0.0.1:80")

    def test_healthchecks_off(self) -> None:
        """
        Without health checks targets and the balancer read HEALTHCHECKS_OFF.
        """
        balancer = self.balancer(target("10.0.0.1:80"))
        self.assertEqual(balancer.health_report()[0]["health"], HEALTHCHECKS_OFF)
        self.assertEqual(balancer.balancer_health()["balancer_health"], HEALTHCHECKS_OFF)

    def test_active_checks(self) -> None:
        """
        Active checks probe the addresses and feed the same health.
        """
        probes: list[Deferred[int]] = []

        def probe(*args: Any) -> Deferred[int]:
            probes.append(Deferred())
            return probes[-1]

        balancer = self.balancer(target("10.0.0.1:80"), healthchecks={"active": {
            "healthy": {"interval": 5}, "unhealthy": {"http_failures": 1}}})
        balancer.start_checks(probe)
        self.addCleanup(balancer.stop_checks)
        self.clock.advance(5)
        probes[0].callback(503)
        self.assertIsNone(balancer.pick())


class BalancersTests(SynchronousTestCase):
    """
    Tests for L{Balancers}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.names = MemoryResolver()
        self.resolver = TargetResolver(self.names, self.clock)

    def test_by_name_and_id(self) -> None:
        """
        The registry answers by upstream name or id; an unknown name is None.
        """
        balancers = Balancers(self.clock)
        balancers.update([upstream()], [target("10.0.0.1:80")])
        self.assertIs(balancers.get("backend"), balancers.get(UPSTREAM_ID))
        self.assertIsNone(balancers.get("other"))

    def test_state_across_snapshots(self) -> None:
        """
        Health and in-flight counts survive a new snapshot; a report of a
        peer picked before it reaches the new balancer.
        """
        balancers = Balancers(self.clock)
        targets = [target("10.0.0.1:80"), target("10.0.0.2:80")]
        balancers.update([upstream(healthchecks=PASSIVE, algorithm="least-connections")],
                         targets)
        old = balancers.get("backend")
        assert old is not None
        bad = old.pick()
        busy = old.pick()
        assert bad is not None and busy is not None
        balancers.report(bad, Outcome(status=500))
        balancers.update([upstream(healthchecks=PASSIVE, algorithm="least-connections")],
                         targets + [target("10.0.0.3:80")])
        new = balancers.get("backend")
        assert new is not None and new is not old
        self.assertEqual([item["health"] for item in new.health_report()],
                         [UNHEALTHY, HEALTHY, HEALTHY])
        self.assertEqual(new.pick().address, "10.0.0.3")  # type: ignore[union-attr]
        balancers.report(busy, Outcome(status=200))
        self.assertEqual(new.state.load(busy.address, busy.port).in_flight, 0)

    def test_dns_targets(self) -> None:
        """
        A host name target becomes one entry per address, sharing the
        weight, once resolved; until then, and when it does not resolve, it
        is DNS_ERROR. A change of its addresses rebuilds the balancer.
        """
        balancers = Balancers(self.clock, self.resolver)
        self.names.records[b"svc.test"] = [(30, dns.Record_A("10.0.0.1")),
                                           (30, dns.Record_A("10.0.0.2"))]
        balancers.update([upstream()], [target("svc.test:8080", 100), target("gone.test:80")])
        balancer = balancers.get("backend")
        assert balancer is not None
        report = balancer.health_report()
        self.assertEqual([item["health"] for item in report], [HEALTHCHECKS_OFF, DNS_ERROR])
        self.assertEqual(report[0]["data"]["addresses"], [
            {"ip": "10.0.0.1", "port": 8080, "health": HEALTHCHECKS_OFF, "weight": 50},
            {"ip": "10.0.0.2", "port": 8080, "health": HEALTHCHECKS_OFF, "weight": 50}])
        peer = balancer.pick()
        assert peer is not None
        self.assertEqual(peer.hostname, "svc.test")
        self.names.records[b"svc.test"] = [(30, dns.Record_A("10.0.0.3"))]
        self.clock.advance(30)
        self.resolver.refresh()
        rebuilt = balancers.get("backend")
        assert rebuilt is not None and rebuilt is not balancer
        self.assertEqual({rebuilt.pick().address for _ in range(3)},  # type: ignore[union-attr]
                         {"10.0.0.3"})

    def test_start_stop(self) -> None:
        """
        Started, the registry runs active checks of every balancer, also of
        those a later snapshot builds; stopped, none.
        """
        calls: list[tuple[Any, ...]] = []

        def probe(*args: Any) -> Deferred[int]:
            calls.append(args)
            return Deferred()

        balancers = Balancers(self.clock, self.resolver, probe)
        checks = {"active": {"timeout": 100, "healthy": {"interval": 5}}}
        balancers.update([upstream(healthchecks=checks)], [target("10.0.0.1:80")])
        balancers.start()
        balancers.update([upstream(healthchecks=checks)], [target("10.0.0.2:80")])
        self.clock.advance(5)
        self.assertEqual([call[:2] for call in calls], [("10.0.0.2", 80)])
        balancers.stop()
        self.clock.advance(50)
        self.assertEqual(len(calls), 1)
