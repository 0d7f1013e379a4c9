"""
Tests for L{echogate.balancer.health}.
"""
from __future__ import annotations

from typing import Any, Mapping

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.balancer.health import (
    TCP_FAILURE,
    TIMEOUT,
    ActiveChecker,
    HealthConfig,
    UpstreamHealth,
)


def config(active: Mapping[str, Any] | None = None, passive: Mapping[str, Any] | None = None,
           **fields: Any) -> HealthConfig:
    """
    A health configuration from C{healthchecks} parts.
    """
    return HealthConfig.from_record({"active": active or {}, "passive": passive or {}, **fields})


PASSIVE = config(passive={"healthy": {"successes": 2},
                          "unhealthy": {"http_failures": 3, "tcp_failures": 2, "timeouts": 1}})


class HealthConfigTests(SynchronousTestCase):
    """
    Tests for L{HealthConfig}.
    """

    def test_defaults(self) -> None:
        """
        Kong's defaults fill what the record leaves out; checks are off.
        """
        found = HealthConfig.from_record(None)
        self.assertEqual(found.active.healthy_statuses, {200, 302})
        self.assertEqual(found.passive.unhealthy_statuses, {429, 500, 503})
        self.assertEqual((found.timeout, found.concurrency, found.http_path), (1.0, 10, "/"))
        self.assertFalse(found.enabled)

    def test_enabled(self) -> None:
        """
        An active interval or a passive failure threshold turns checks on;
        a passive success threshold alone does not.
        """
        self.assertTrue(config({"healthy": {"interval": 5}}).enabled)
        self.assertTrue(config(passive={"unhealthy": {"timeouts": 1}}).enabled)
        self.assertFalse(config(passive={"healthy": {"successes": 1}}).enabled)


class UpstreamHealthTests(SynchronousTestCase):
    """
    Tests for L{UpstreamHealth}'s counters and thresholds.
    """

    def test_http_failures(self) -> None:
        """
        An address turns unhealthy at the C{http_failures}th unhealthy status.
        """
        health = UpstreamHealth(PASSIVE)
        for _ in range(2):
            health.report_status("a", 1, 500)
        self.assertTrue(health.healthy("a", 1))
        health.report_status("a", 1, 503)
        self.assertFalse(health.healthy("a", 1))
        self.assertEqual(health.version, 1)

    def test_other_statuses_ignored(self) -> None:
        """
        A status in neither list counts for nothing.
        """
        health = UpstreamHealth(PASSIVE)
        for _ in range(5):
            health.report_status("a", 1, 404)
        self.assertTrue(health.healthy("a", 1))

    def test_success_resets_failures(self) -> None:
        """
        A success between failures starts the failure count again (when
        successes are counted).
        """
        health = UpstreamHealth(PASSIVE)
        health.report_status("a", 1, 500)
        health.report_status("a", 1, 500)
        health.report_status("a", 1, 200)
        health.report_status("a", 1, 500)
        health.report_status("a", 1, 500)
        self.assertTrue(health.healthy("a", 1))

    def test_tcp_failures_and_timeouts(self) -> None:
        """
        TCP failures and timeouts count against their own thresholds.
        """
        health = UpstreamHealth(PASSIVE)
        health.report_failure("a", 1, TCP_FAILURE)
        self.assertTrue(health.healthy("a", 1))
        health.report_failure("a", 1, TCP_FAILURE)
        self.assertFalse(health.healthy("a", 1))
        health.report_failure("b", 1, TIMEOUT)
        self.assertFalse(health.healthy("b", 1))

    def test_threshold_zero_off(self) -> None:
        """
        A threshold of 0 never trips.
        """
        health = UpstreamHealth(config())
        for _ in range(10):
            health.report_failure("a", 1, TIMEOUT)
            health.report_status("a", 1, 500)
        self.assertTrue(health.healthy("a", 1))

    def test_successes_bring_back(self) -> None:
        """
        An unhealthy address is healthy again after C{successes} successes.
        """
        health = UpstreamHealth(PASSIVE)
        health.report_failure("a", 1, TIMEOUT)
        health.report_status("a", 1, 200)
        self.assertFalse(health.healthy("a", 1))
        health.report_status("a", 1, 200)
        self.assertTrue(health.healthy("a", 1))

    def test_set_healthy(self) -> None:
        """
        The override sets the state and clears the counters.
        """
        health = UpstreamHealth(PASSIVE)
        health.report_status("a", 1, 500)
        health.report_status("a", 1, 500)
        health.set_healthy("a", 1, False)
        self.assertFalse(health.healthy("a", 1))
        health.set_healthy("a", 1, True)
        self.assertTrue(health.healthy("a", 1))
        health.report_status("a", 1, 500)
        self.assertTrue(health.healthy("a", 1))


class ActiveCheckerTests(SynchronousTestCase):
    """
    Tests for L{ActiveChecker}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.calls: list[tuple[Any, ...]] = []
        self.answers: dict[tuple[str, int], Deferred[int]] = {}

    def probe(self, address: str, port: int, path: str | None, headers: Mapping[str, Any],
              timeout: float, https: bool) -> Deferred[int]:
        """
        Record the probe; its answer is C{self.answers}'.
        """
        self.calls.append((address, port, path, dict(headers), timeout, https))
        answer: Deferred[int] = Deferred()
        self.answers[(address, port)] = answer
        return answer

    def checker(self, health: UpstreamHealth, *addresses: tuple[str, int]) -> ActiveChecker:
        """
        A started checker of C{addresses}.
        """
        checker = ActiveChecker(health, self.probe, self.clock, lambda: addresses)
        checker.start()
        self.addCleanup(checker.stop)
        return checker

    def test_probes_on_interval(self) -> None:
        """
        Healthy addresses are probed every healthy interval with the
        configured path, headers, timeout and scheme.
        """
        health = UpstreamHealth(config({"type": "https", "http_path": "/status",
                                        "headers": {"x": ["1"]}, "timeout": 2,
                                        "healthy": {"interval": 5}}))
        self.checker(health, ("a", 1))
        self.clock.advance(4)
        self.assertEqual(self.calls, [])
        self.clock.advance(1)
        self.assertEqual(self.calls, [("a", 1, "/status", {"x": ["1"]}, 2.0, True)])

    def test_unhealthy_and_back(self) -> None:
        """
        Failed probes make an address unhealthy; it is then probed on the
        unhealthy interval, and successes bring it back.
        """
        health = UpstreamHealth(config({"healthy": {"interval": 10, "successes": 2},
                                        "unhealthy": {"interval": 3, "http_failures": 1,
                                                      "tcp_failures": 1}}))
        self.checker(health, ("a", 1))
        self.clock.advance(10)
        self.answers[("a", 1)].callback(500)
        self.assertFalse(health.healthy("a", 1))
        self.clock.advance(2)
        self.assertEqual(len(self.calls), 2)
        self.answers[("a", 1)].callback(200)
        self.clock.advance(3)
        self.answers[("a", 1)].callback(302)
        self.assertTrue(health.healthy("a", 1))

    def test_failures(self) -> None:
        """
        A refused connection is a TCP failure; no answer within the timeout
        is a timeout.
        """
        health = UpstreamHealth(config({"timeout": 1, "healthy": {"interval": 5},
                                        "unhealthy": {"tcp_failures": 1, "timeouts": 1}}))
        self.checker(health, ("a", 1), ("b", 1))
        self.clock.advance(5)
        self.answers[("a", 1)].errback(error.ConnectionRefusedError())
        self.assertEqual(health.of("a", 1).state, "unhealthy")
        self.clock.advance(1)
        self.assertFalse(health.healthy("b", 1))

    def test_concurrency(self) -> None:
        """
        At most C{concurrency} probes run at once; an address is never
        probed twice at once.
        """
        health = UpstreamHealth(config({"concurrency": 2, "timeout": 100,
                                        "healthy": {"interval": 5}}))
        self.checker(health, ("a", 1), ("b", 1), ("c", 1))
        self.clock.advance(5)
        self.assertEqual([call[0] for call in self.calls], ["a", "b"])
        self.clock.advance(5)
        self.assertEqual(len(self.calls), 2)
        self.answers[("a", 1)].callback(200)
        self.assertEqual([call[0] for call in self.calls], ["a", "b", "c"])

    def test_stop(self) -> None:
        """
        A stopped checker probes no more.
        """
        health = UpstreamHealth(config({"healthy": {"interval": 5}}))
        checker = self.checker(health, ("a", 1))
        checker.stop()
        self.clock.advance(50)
        self.assertEqual(self.calls, [])
        self.assertFalse(checker.running)

    def test_tcp_type(self) -> None:
        """
        A C{tcp} check connects only: no path, and any answer is a success.
        """
        health = UpstreamHealth(config({"type": "tcp", "unhealthy": {"interval": 1},
                                        "healthy": {"successes": 1}}))
        health.set_healthy("a", 1, False)
        self.checker(health, ("a", 1))
        self.clock.advance(1)
        self.assertIsNone(self.calls[0][2])
        self.answers[("a", 1)].callback(0)
        self.assertTrue(health.healthy("a", 1))
