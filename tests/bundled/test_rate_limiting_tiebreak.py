"""
rate-limiting's tie-break between periods (docs/plugins/rate-limiting.md):
the C{RateLimit-*} headers describe the period closest to its limit and, when
several periods have the same remaining count, the longer period.
"""
from __future__ import annotations

import calendar
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.rate_limiting import RateLimiting
from echogate.testing import GatewayHarness

#: 12:00:10.25 UTC: 49.75 s left in the minute, 3589.75 s in the hour,
#: 0.75 s in the second, 43189.75 s in the day.
NOW = calendar.timegm((2026, 3, 10, 12, 0, 0)) + 10.25


class RateLimitingTieBreakTests(SynchronousTestCase):
    """
    Equal remaining counts: the longer period's window gives the
    C{RateLimit-*} headers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def send(self, harness: GatewayHarness) -> Any:
        return self.successResultOf(harness.request("GET", "/"))

    def harness(self, **config: Any) -> GatewayHarness:
        return GatewayHarness([RateLimiting(reactor=self.clock)], configs=[("rate-limiting", config)],
                              clock=self.clock)

    def test_tieLongerPeriodReset(self) -> None:
        """Minute and hour both with 2 left: RateLimit-Reset is the hour's."""
        response = self.send(self.harness(minute=3, hour=3))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("x-ratelimit-remaining-minute"), "2")
        self.assertEqual(response.header("x-ratelimit-remaining-hour"), "2")
        self.assertEqual(response.header("ratelimit-remaining"), "2")
        self.assertEqual(response.header("ratelimit-reset"), "3590")

    def test_tieLongestOfThree(self) -> None:
        """Second, minute and day all with 1 left: the day gives RateLimit-*."""
        response = self.send(self.harness(second=2, minute=2, day=2))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("ratelimit-limit"), "2")
        self.assertEqual(response.header("ratelimit-remaining"), "1")
        self.assertEqual(response.header("ratelimit-reset"), "43190")

    def test_tieOrderIndependent(self) -> None:
        """The longer period wins the tie whichever period is shorter."""
        response = self.send(self.harness(second=5, hour=5))
        self.assertEqual(response.header("ratelimit-reset"), "3590")

    def test_closerBeatsLonger(self) -> None:
        """Without a tie the period with fewer left wins even if it is shorter."""
        response = self.send(self.harness(minute=2, hour=3))
        self.assertEqual(response.header("ratelimit-remaining"), "1")
        self.assertEqual(response.header("ratelimit-reset"), "50")

    def test_tieOnRefusal(self) -> None:
        """Refused with minute and hour both spent: Retry-After is the hour's reset."""
        harness = self.harness(minute=1, hour=1)
        self.assertEqual(self.send(harness).status, 200)
        response = self.send(harness)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.header("x-ratelimit-remaining-minute"), "0")
        self.assertEqual(response.header("x-ratelimit-remaining-hour"), "0")
        self.assertEqual(response.header("ratelimit-remaining"), "0")
        self.assertEqual(response.header("ratelimit-reset"), "3590")
        self.assertEqual(response.header("retry-after"), "3590")
