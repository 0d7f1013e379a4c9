"""
Tests for the rate-limiting plugin's batched policy
(L{echogate.bundled.ratelimit_policies.BatchedPolicy}) over a counter store
in memory, and for C{fault_tolerant} when the counters are unreachable.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.rate_limiting import RateLimiting, RateLimitStores
from echogate.bundled.ratelimit_policies import (
    BatchedPolicy,
    StoreUnavailable,
    batch_size,
    window,
)
from echogate.testing import GatewayHarness
from tests.bundled.test_rate_limiting import T0, _SharedCounters


class BatchedPolicyTests(SynchronousTestCase):
    """
    L{BatchedPolicy}: counts locally, syncs in batches, bounded overshoot.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0 + 5)
        self.store = _SharedCounters()

    def policy(self) -> BatchedPolicy:
        return BatchedPolicy(self.clock, self.store, interval=0.1)

    def consume(self, policy: BatchedPolicy, limit: float = 100, identifier: str = "k") -> Any:
        result = policy.consume(identifier, {"hour": limit}, self.clock.seconds())
        if isinstance(result, Deferred):
            return self.successResultOf(result)
        return result

    def test_batchSize(self) -> None:
        """
        A node holds at most a tenth of the limit unsynced (at least one).
        """
        self.assertEqual([batch_size(n) for n in (1, 5, 10, 99, 100, 1000)], [1, 1, 1, 9, 10, 100])

    def test_noWritePerRequest(self) -> None:
        """
        Requests are counted locally and added to the store in one call per
        interval.
        """
        policy = self.policy()
        for _ in range(5):
            self.assertIsNone(self.consume(policy).stop)
        self.assertEqual(self.store.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.store.calls), 1)
        ((key, amount, expires),) = self.store.calls[0]
        self.assertEqual((key[0], key[1], amount, expires), ("k", "hour", 5, window("hour", T0 + 5)[1]))
        self.clock.advance(1)
        self.assertEqual(len(self.store.calls), 1)

    def test_learnsOtherNodes(self) -> None:
        """
        A sync returns every node's total, which later decisions use.
        """
        a, b = self.policy(), self.policy()
        for _ in range(5):
            self.consume(a)
        self.clock.advance(0.1)
        self.assertEqual(self.consume(b).counts, {"hour": 0})
        self.clock.advance(0.1)
        self.assertEqual(self.consume(b).counts, {"hour": 6})

    def test_waitsAtBatchSize(self) -> None:
        """
        Past batch_size unsynced requests, a request waits for a sync.
        """
        policy = self.policy()
        self.store.hold = True
        for _ in range(10):
            self.assertIsNone(self.consume(policy).stop)
        waiting = policy.consume("k", {"hour": 100}, self.clock.seconds())
        self.assertIsInstance(waiting, Deferred)
        self.assertNoResult(waiting)
        self.store.release()
        self.assertEqual(self.successResultOf(waiting).counts, {"hour": 10})

    def test_boundAcrossNodes(self) -> None:
        """
        Two nodes taking turns in bursts let through at most the limit plus
        one batch.
        """
        nodes = [self.policy(), self.policy()]
        admitted = 0
        for round in range(60):
            node = nodes[round % 2]
            for _ in range(7):
                admitted += self.consume(node, limit=50).stop is None
            self.clock.advance(0.05)
        self.assertGreaterEqual(admitted, 50)
        self.assertLessEqual(admitted, 50 + batch_size(50))

    def test_refusedNotCounted(self) -> None:
        """
        A refused request is not added to the counters.
        """
        policy = self.policy()
        for _ in range(3):
            self.consume(policy, limit=2)
        self.clock.advance(0.1)
        self.assertEqual(sum(amount for call in self.store.calls for _, amount, _ in call), 2)

    def test_storeDown(self) -> None:
        """
        When a sync fails the policy raises L{StoreUnavailable} (with one
        error line), keeps the unsynced counts, and syncs them again after
        retry_interval.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        policy = self.policy()
        self.consume(policy)
        self.store.down = True
        self.clock.advance(0.1)
        self.assertRaises(StoreUnavailable, self.consume, policy)
        self.assertRaises(StoreUnavailable, self.consume, policy)
        self.assertEqual(len([e for e in events if "cannot sync" in e.get("log_format", "")]), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.store.calls), 1)  # no retry before retry_interval
        self.store.down = False
        self.clock.advance(0.5)
        self.assertEqual(len(self.store.calls), 2)
        self.assertIsNone(self.consume(policy).stop)
        self.clock.advance(0.1)
        self.assertEqual(self.store.values[("k", "hour", window("hour", T0)[0])], 2)

    def test_expiredForgotten(self) -> None:
        """
        Counters of windows that ended are dropped, not synced.
        """
        policy = self.policy()
        policy.consume("k", {"second": 10}, self.clock.seconds())
        self.clock.advance(1)
        self.clock.advance(0.1)
        self.assertEqual(self.store.calls, [])
        self.assertEqual(policy._counters, {})

    def test_stop(self) -> None:
        """
        stop syncs what is pending and closes the store.
        """
        policy = self.policy()
        self.consume(policy)
        self.successResultOf(policy.stop())
        self.assertEqual(len(self.store.calls), 1)
        self.assertTrue(self.store.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FaultToleranceTests(SynchronousTestCase):
    """
    fault_tolerant decides what happens when the counters are unreachable.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = _SharedCounters()
        self.store.down = True
        stores = RateLimitStores()
        policy = BatchedPolicy(self.clock, self.store)
        policy._down = "the database is unavailable"
        policy._retry_at = T0 + 100
        stores.cluster_batched[0.1] = policy
        self.plugin = RateLimiting(reactor=self.clock, stores=stores)

    def send(self, **config: Any) -> Any:
        harness = GatewayHarness([self.plugin], configs=[("rate-limiting", {"minute": 1, "policy": "cluster",
                                                                             **config})], clock=self.clock)
        return self.successResultOf(harness.request("GET", "/"))

    def test_tolerant(self) -> None:
        """
        fault_tolerant: the request goes through, without rate-limit headers,
        and the failure is logged.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(3):
            response = self.send()
            self.assertEqual(response.status, 200)
            self.assertIsNone(response.header("x-ratelimit-limit-minute"))
        self.assertEqual(len([e for e in events if "failed to get usage" in e.get("log_format", "")]), 3)

    def test_intolerant(self) -> None:
        """
        fault_tolerant false: 500.
        """
        response = self.send(fault_tolerant=False)
        self.assertEqual((response.status, response.json()), (500, {"message": "An unexpected error occurred"}))
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)

    def test_clusterWithoutDatabase(self) -> None:
        """
        The cluster policy on a plugin object that no node gave a database
        counts as unreachable.
        """
        plugin = RateLimiting(reactor=self.clock)
        harness = GatewayHarness([plugin], configs=[("rate-limiting", {"minute": 1, "policy": "cluster",
                                                                        "fault_tolerant": False})],
                                 clock=self.clock)
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).status, 500)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
