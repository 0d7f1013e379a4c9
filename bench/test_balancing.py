"""
Tests for the load-balancing benchmark's own logic (L{bench.balancing});
they start no process.
"""
from __future__ import annotations

from twisted.trial import unittest

from bench.balancing import Failover, cpu_per_request, failover_text
from bench.loadgen import LoadResult


def _run(requests: int, cpu: float) -> LoadResult:
    return LoadResult(requests=requests, seconds=1.0, bytes=0, errors={}, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0,
                      max_ms=1.0, peak_rss_kb=0, cpu=cpu)


class CpuPerRequestTests(unittest.TestCase):
    def test_median(self) -> None:
        """The node's CPU per request is the median over the runs, in microseconds."""
        runs = [_run(10_000, 1.0), _run(5_000, 1.0), _run(20_000, 1.0)]
        self.assertAlmostEqual(cpu_per_request(runs), 100.0)


class FailoverTextTests(unittest.TestCase):
    def test_failures(self) -> None:
        """The report says how many failed, with their statuses, and when the last one was sent."""
        found = Failover(requests=2000, rate=200.0, failed_before=0, failed_after=3, statuses={502: 3},
                         last_failure_ms=(12.0, 15.0), unhealthy_ms=900.0, max_latency_after_ms=20.0,
                         p99_latency_after_ms=9.0)
        text = failover_text(found, 10)
        self.assertIn("failed after the kill: 3 (statuses {502: 3}", text)
        self.assertIn("sent 12 ms after the kill", text)
        self.assertIn("UNHEALTHY 900 ms after the kill", text)

    def test_none(self) -> None:
        """No failure and no unhealthy view are said as such."""
        found = Failover(requests=10, rate=1.0, failed_before=0, failed_after=0, statuses={},
                         last_failure_ms=None, unhealthy_ms=None, max_latency_after_ms=1.0,
                         p99_latency_after_ms=1.0)
        text = failover_text(found, 10)
        self.assertIn("none failed", text)
        self.assertIn("not within the run", text)
