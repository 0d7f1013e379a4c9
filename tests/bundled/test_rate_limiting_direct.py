"""
Tests for rate-limiting's direct path (L{echogate.bundled.rate_limiting}):
a config with the C{local} policy and one period of a fixed length is
counted without L{LocalPolicy.consume} or a L{Usage}, and answers with
exactly what the general path answers.
"""
from __future__ import annotations

import calendar
from types import MappingProxyType
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled import rate_limiting
from echogate.bundled.rate_limiting import RateLimiting
from echogate.bundled.ratelimit_policies import LocalPolicy
from echogate.testing import GatewayHarness

T0 = calendar.timegm((2026, 3, 10, 12, 0, 0))

#: The configs the direct path takes, with what is special about each.
DIRECT_CONFIGS: tuple[dict[str, Any], ...] = (
    {"second": 2},
    {"minute": 3},
    {"hour": 2.5},  # a fractional limit
    {"day": 4.0},  # a whole number given as a float
    {"minute": 1e20},  # a float too large to count in integers
    {"second": 10 ** 12},
    {"minute": 2, "hide_client_headers": True},
    {"second": 1, "error_code": 503, "error_message": "slow down"},
    {"minute": 2, "limit_by": "ip"},
)

#: When each request of a scenario is sent (seconds after T0), from each
#: of two clients: across second, minute and hour boundaries.
MOMENTS = (0.25, 0.5, 0.75, 0.9, 1.1, 1.2, 59.5, 59.99, 60.0, 60.3, 3599.5, 3600.2, 3600.4, 3600.6)


class DirectPathTests(SynchronousTestCase):
    """
    The direct path gives the general path's statuses, bodies and headers.
    """

    def run_scenario(self, config: dict[str, Any]) -> list[tuple[int, bytes, dict[str, list[str]]]]:
        """
        Send the requests of L{MOMENTS} from two clients through a new
        plugin with C{config}; what each answer was.
        """
        clock = Clock()
        clock.advance(T0)
        harness = GatewayHarness([RateLimiting(reactor=clock)], configs=[("rate-limiting", config)], clock=clock)
        answers = []
        for moment in MOMENTS:
            clock.advance(T0 + moment - clock.seconds())
            for client in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
                response = self.successResultOf(harness.request("GET", "/", client_ip=client))
                # (Date is the wall clock's: it may turn a second between runs)
                answers.append((response.status, response.body,
                                {k: v for k, v in response.headers.items() if k.lower() != "date"}))
        return answers

    def test_sameAnswers(self) -> None:
        """
        For each config the direct path takes, every answer (status, body
        and every header) is the general path's.
        """
        direct = [self.run_scenario(config) for config in DIRECT_CONFIGS]
        self.patch(rate_limiting._Single, "of", classmethod(lambda cls, config, headers: None))
        general = [self.run_scenario(config) for config in DIRECT_CONFIGS]
        for config, one, other in zip(DIRECT_CONFIGS, direct, general):
            self.assertEqual(one, other, config)
        statuses = {status for answers in direct for status, _, _ in answers}
        self.assertEqual(statuses, {200, 429, 503})

    def test_headersTold(self) -> None:
        """
        Through the direct path, the limit headers, the reset and, on a
        refusal, Retry-After.
        """
        clock = Clock()
        clock.advance(T0 + 10.25)
        harness = GatewayHarness([RateLimiting(reactor=clock)], configs=[("rate-limiting", {"minute": 2})],
                                 clock=clock)
        names = ("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute", "ratelimit-limit",
                 "ratelimit-remaining", "ratelimit-reset", "retry-after")
        answers = [self.successResultOf(harness.request("GET", "/")) for _ in range(3)]
        self.assertEqual([(r.status, [r.header(n) for n in names]) for r in answers], [
            (200, ["2", "1", "2", "1", "50", None]),
            (200, ["2", "0", "2", "0", "50", None]),
            (429, ["2", "0", "2", "0", "50", "50"])])

    def test_noUsage(self) -> None:
        """
        A local config with one period of a fixed length is counted
        without L{LocalPolicy.consume}.
        """
        def consume(*args: object) -> None:
            raise AssertionError("the general path was taken")

        self.patch(LocalPolicy, "consume", consume)
        clock = Clock()
        harness = GatewayHarness([RateLimiting(reactor=clock)], configs=[("rate-limiting", {"second": 5})],
                                 clock=clock)
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((response.status, response.header("x-ratelimit-remaining-second")), (200, "4"))

    def test_whichConfigs(self) -> None:
        """
        Several periods, a calendar period (month, year) or another policy
        take the general path.
        """
        plugin = RateLimiting()

        def single(**fields: Any) -> Any:
            config = MappingProxyType(plugin.config_schema.validate(fields))
            return plugin._limits(config).single

        self.assertIsNotNone(single(hour=5))
        self.assertIsNone(single(second=5, hour=100))
        self.assertIsNone(single(month=5))
        self.assertIsNone(single(year=5))
        self.assertIsNone(single(second=5, policy="redis", redis_host="127.0.0.1"))


class LocalCountTests(SynchronousTestCase):
    """
    L{LocalPolicy.count}, the direct path's counting.
    """

    def test_sharesCounters(self) -> None:
        """
        C{count} and C{consume} count in the same windows.
        """
        policy = LocalPolicy()
        now = T0 + 30.5
        policy.consume("k", {"minute": 3}, now)
        self.assertEqual(policy.count("k", "minute", T0, 3), 1)
        self.assertEqual(policy.consume("k", {"minute": 3}, now).counts, {"minute": 2})

    def test_limit(self) -> None:
        """
        At the limit, the request is not counted; a new window starts
        from zero.
        """
        policy = LocalPolicy()
        self.assertEqual([policy.count("k", "second", T0, 2) for _ in range(4)], [0, 1, 2, 2])
        self.assertEqual(policy.count("k", "second", T0 + 1, 2), 0)
