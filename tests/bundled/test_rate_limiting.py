"""
Tests for the bundled rate-limiting plugin (L{echogate.bundled.rate_limiting}):
its schema, its windows and its local policy, through L{GatewayHarness}. The
batched policy and fault tolerance are in
L{tests.bundled.test_rate_limiting_batched}; the Redis and cluster policies
against real servers, and across two gateway nodes, are in
L{tests.bundled.test_rate_limiting_shared}.
"""
from __future__ import annotations

import calendar
from typing import Any, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from echogate.bundled.rate_limiting import RateLimiting
from echogate.bundled.ratelimit_policies import (
    BatchedPolicy,
    ICounterStore,
    IRateLimitPolicy,
    LocalPolicy,
    StoreUnavailable,
    window,
)
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import SERVICE_ID, GatewayHarness

T0 = calendar.timegm((2026, 3, 10, 12, 0, 0))


class RateLimitingSchemaTests(SynchronousTestCase):
    """
    rate-limiting's config, field by field, with Kong's messages.
    """

    def validate(self, **config: Any) -> dict:
        if not any(p in config for p in ("second", "minute", "hour", "day", "month", "year")):
            config["minute"] = 5
        return RateLimiting.config_schema.validate(config)

    def refuse(self, **config: Any) -> dict:
        return self.assertRaises(SchemaViolation, self.validate, **config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults.
        """
        self.assertEqual(self.validate(), {
            "second": None, "minute": 5, "hour": None, "day": None, "month": None, "year": None,
            "limit_by": "consumer", "header_name": None, "path": None, "policy": "local",
            "fault_tolerant": True, "redis_host": None, "redis_port": 6379, "redis_password": None,
            "redis_username": None, "redis_timeout": 2000, "redis_database": 0,
            "hide_client_headers": False, "error_code": 429, "error_message": "API rate limit exceeded",
            "sync_rate": -1})

    def test_atLeastOnePeriod(self) -> None:
        """
        At least one period must have a limit.
        """
        error = self.assertRaises(SchemaViolation, RateLimiting.config_schema.validate, {})
        self.assertEqual(error.fields, {"@entity": [
            "at least one of these fields must be non-empty: 'second', 'minute', 'hour', 'day', 'month', 'year'"]})

    def test_periodsPositive(self) -> None:
        """
        Limits are positive numbers.
        """
        for period in ("second", "minute", "hour", "day", "month", "year"):
            self.assertEqual(self.refuse(**{period: 0}), {period: "value must be greater than 0"},
                             f"row period={period!r}")
            self.assertEqual(self.refuse(**{period: "5"}), {period: "expected a number"}, f"row period={period!r}")

    def test_periodsOrdered(self) -> None:
        """
        A longer period's limit cannot be lower than a shorter one's.
        """
        self.assertEqual(self.refuse(minute=10, hour=5), {"@entity": [
            "The limit for hour(5.0) cannot be lower than the limit for minute(10.0)"]})
        self.validate(second=1, minute=1, year=1)

    def test_limitBy(self) -> None:
        """
        limit_by is one of Kong's choices; header and path need their field.
        """
        self.assertEqual(self.refuse(limit_by="cookie"),
                         {"limit_by": "expected one of: consumer, credential, ip, service, header, path"})
        self.assertEqual(self.refuse(limit_by="header"), {"header_name": "required field missing"})
        self.assertEqual(self.refuse(limit_by="path"), {"path": "required field missing"})
        self.validate(limit_by="header", header_name="X-Tenant")
        self.validate(limit_by="path", path="/login")

    def test_headerNameAndPath(self) -> None:
        """
        header_name is a header name; path starts with /.
        """
        self.assertEqual(self.refuse(header_name="a b"), {"header_name": "bad header name 'a b', allowed"
                                                                         " characters are A-Z, a-z, 0-9, '_', and '-'"})
        self.assertEqual(self.refuse(path="login"), {"path": "should start with: /"})

    def test_policy(self) -> None:
        """
        local, cluster or redis; redis needs a host.
        """
        self.assertEqual(self.refuse(policy="memcached"), {"policy": "expected one of: local, cluster, redis"})
        self.assertEqual(self.refuse(policy="redis"), {"redis_host": "required field missing"})
        self.assertEqual(self.refuse(policy="redis", redis_host="r", redis_port=None),
                         {"redis_port": "required field missing"})
        self.assertEqual(self.refuse(policy="redis", redis_host="r", redis_timeout=None),
                         {"redis_timeout": "required field missing"})
        self.validate(policy="cluster")

    def test_redisFields(self) -> None:
        """
        The redis_* fields' types and bounds.
        """
        self.assertEqual(self.refuse(redis_port=70000), {"redis_port": "value should be between 0 and 65535"})
        self.assertEqual(self.refuse(redis_timeout=0), {"redis_timeout": "value must be greater than 0"})
        self.assertEqual(self.refuse(redis_database=-1), {"redis_database": "value should be between 0 and 65535"})
        self.assertEqual(self.refuse(redis_password=5), {"redis_password": "expected a string"})
        self.assertEqual(self.refuse(redis_username=""), {"redis_username": "length must be at least 1"})
        self.assertEqual(self.refuse(redis_host=""), {"redis_host": "length must be at least 1"})
        self.assertEqual(self.validate(redis_password="")["redis_password"], "")

    def test_booleans(self) -> None:
        """
        fault_tolerant and hide_client_headers are booleans, never null.
        """
        self.assertEqual(self.refuse(fault_tolerant="no"), {"fault_tolerant": "expected a boolean"})
        self.assertEqual(self.refuse(hide_client_headers=None), {"hide_client_headers": "required field missing"})

    def test_error(self) -> None:
        """
        error_code is an HTTP status; error_message a string.
        """
        self.assertEqual(self.refuse(error_code=99), {"error_code": "value should be between 100 and 599"})
        self.assertEqual(self.refuse(error_message=""), {"error_message": "length must be at least 1"})

    def test_syncRate(self) -> None:
        """
        sync_rate is -1, or at least 0.02 with the cluster or redis policy.
        """
        self.assertEqual(self.refuse(sync_rate=1), {"@entity": [
            "sync_rate can only be used with the cluster and redis policies"]})
        self.assertEqual(self.refuse(policy="cluster", sync_rate=0.01), {"@entity": [
            "sync_rate must be greater than 0.02, or -1 to disable"]})
        self.assertEqual(self.refuse(sync_rate=None), {"sync_rate": "required field missing"})
        self.validate(policy="cluster", sync_rate=0.5)

    def test_unknown(self) -> None:
        """
        Unknown fields are refused.
        """
        self.assertEqual(self.refuse(redis={"host": "x"}), {"redis": "unknown field"})


class WindowTests(SynchronousTestCase):
    """
    L{window} gives each period's UTC window.
    """

    def test_fixed(self) -> None:
        """
        Seconds, minutes, hours and days start on their boundary.
        """
        now = T0 + 3725.5  # 13:02:05.5
        self.assertEqual(window("second", now), (T0 + 3725, T0 + 3726))
        self.assertEqual(window("minute", now), (T0 + 3720, T0 + 3780))
        self.assertEqual(window("hour", now), (T0 + 3600, T0 + 7200))
        self.assertEqual(window("day", now), (T0 - 12 * 3600, T0 + 12 * 3600))

    def test_calendar(self) -> None:
        """
        Months and years are calendar months and years.
        """
        self.assertEqual(window("month", T0), (calendar.timegm((2026, 3, 1, 0, 0, 0)),
                                               calendar.timegm((2026, 4, 1, 0, 0, 0))))
        december = calendar.timegm((2026, 12, 31, 23, 0, 0))
        self.assertEqual(window("month", december)[1], calendar.timegm((2027, 1, 1, 0, 0, 0)))
        self.assertEqual(window("year", T0), (calendar.timegm((2026, 1, 1, 0, 0, 0)),
                                              calendar.timegm((2027, 1, 1, 0, 0, 0))))

    def test_unknown(self) -> None:
        """
        An unknown period is a programming error.
        """
        self.assertRaises(ValueError, window, "week", T0)


class _Alice(GatewayPlugin):
    """
    Authenticates requests carrying X-User as that consumer (with a
    credential).
    """

    name = "alice"
    version = "1.0.0"
    priority = 2000
    config_schema = Record({})

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        user = ctx.request.get_header("x-user")
        if user:
            ctx.authenticate({"id": f"consumer-{user}", "username": user}, {"id": f"cred-{user}"})


class LocalRateLimitingTests(SynchronousTestCase):
    """
    The local policy through L{GatewayHarness}: headers, 429, identifiers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0 + 10.25)
        self.plugin = RateLimiting(reactor=self.clock)

    def harness(self, **config: Any) -> GatewayHarness:
        return GatewayHarness([self.plugin, _Alice()], configs=[("rate-limiting", config), ("alice", {})],
                              clock=self.clock)

    def send(self, harness: GatewayHarness, path: str = "/", client_ip: str = "127.0.0.1", **headers: str) -> Any:
        return self.successResultOf(harness.request("GET", path, headers=headers, client_ip=client_ip))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority; its
        policies provide their interfaces.
        """
        self.assertTrue(verifyObject(IGatewayPlugin, self.plugin))
        self.assertEqual((self.plugin.name, self.plugin.priority), ("rate-limiting", 910))
        self.assertTrue(verifyObject(IRateLimitPolicy, LocalPolicy()))
        self.assertTrue(verifyObject(IRateLimitPolicy, BatchedPolicy(self.clock, _SharedCounters())))
        self.assertTrue(verifyObject(ICounterStore, _SharedCounters()))

    def test_headers(self) -> None:
        """
        Passed requests carry Kong's headers: per period, and the most
        restrictive one as RateLimit-*.
        """
        harness = self.harness(minute=3, hour=10)
        response = self.send(harness)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("x-ratelimit-limit-minute"), "3")
        self.assertEqual(response.header("x-ratelimit-remaining-minute"), "2")
        self.assertEqual(response.header("x-ratelimit-limit-hour"), "10")
        self.assertEqual(response.header("x-ratelimit-remaining-hour"), "9")
        self.assertEqual(response.header("ratelimit-limit"), "3")
        self.assertEqual(response.header("ratelimit-remaining"), "2")
        self.assertEqual(response.header("ratelimit-reset"), "50")
        self.assertIsNone(response.header("retry-after"))

    def test_exceeded(self) -> None:
        """
        Past the limit: 429 "API rate limit exceeded" with Retry-After, and
        the upstream is not called.
        """
        harness = self.harness(minute=2)
        for _ in range(2):
            self.assertEqual(self.send(harness).status, 200)
        response = self.send(harness)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.json(), {"message": "API rate limit exceeded"})
        self.assertEqual(response.header("x-ratelimit-remaining-minute"), "0")
        self.assertEqual(response.header("retry-after"), "50")
        self.assertEqual(response.header("ratelimit-reset"), "50")
        self.assertEqual(len(harness.upstream_requests), 2)

    def test_refusalsNotCounted(self) -> None:
        """
        Refused requests do not count: the next window starts from zero and
        longer periods count only what passed.
        """
        harness = self.harness(second=1, hour=5)
        self.send(harness)
        for _ in range(5):
            self.assertEqual(self.send(harness).status, 429)
        self.clock.advance(1)
        response = self.send(harness)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("x-ratelimit-remaining-hour"), "3")

    def test_windowResets(self) -> None:
        """
        A new window allows requests again.
        """
        harness = self.harness(second=1)
        self.assertEqual(self.send(harness).status, 200)
        self.assertEqual(self.send(harness).status, 429)
        self.clock.advance(0.75)
        self.assertEqual(self.send(harness).status, 200)

    def test_customError(self) -> None:
        """
        error_code and error_message change the refusal.
        """
        harness = self.harness(minute=1, error_code=503, error_message="slow down")
        self.send(harness)
        response = self.send(harness)
        self.assertEqual((response.status, response.json()), (503, {"message": "slow down"}))

    def test_hideClientHeaders(self) -> None:
        """
        hide_client_headers leaves every rate-limit header out, refusals too.
        """
        harness = self.harness(minute=1, hide_client_headers=True)
        for response in (self.send(harness), self.send(harness)):
            self.assertEqual([h for h in response.headers if "ratelimit" in h or h == "retry-after"], [],
                             f"row response={response!r}")
        self.assertEqual(response.status, 429)

    def test_limitByIpFallback(self) -> None:
        """
        Without a consumer, limit_by consumer counts per client IP.
        """
        harness = self.harness(minute=1)
        self.assertEqual(self.send(harness, client_ip="10.0.0.1").status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2").status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.1").status, 429)

    def test_limitByConsumer(self) -> None:
        """
        limit_by consumer counts per authenticated consumer, whatever the IP.
        """
        harness = self.harness(minute=1)
        self.assertEqual(self.send(harness, client_ip="10.0.0.1", **{"X-User": "a"}).status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2", **{"X-User": "a"}).status, 429)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2", **{"X-User": "b"}).status, 200)

    def test_limitByCredential(self) -> None:
        """
        limit_by credential counts per credential.
        """
        harness = self.harness(minute=1, limit_by="credential")
        self.assertEqual(self.send(harness, **{"X-User": "a"}).status, 200)
        self.assertEqual(self.send(harness, **{"X-User": "b"}).status, 200)
        self.assertEqual(self.send(harness, **{"X-User": "a"}).status, 429)

    def test_limitByService(self) -> None:
        """
        limit_by service counts every client together.
        """
        harness = self.harness(minute=1, limit_by="service")
        self.assertEqual(self.send(harness, client_ip="10.0.0.1").status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2").status, 429)

    def test_limitByHeader(self) -> None:
        """
        limit_by header counts per value of header_name (the IP without it).
        """
        harness = self.harness(minute=1, limit_by="header", header_name="X-Tenant")
        self.assertEqual(self.send(harness, client_ip="10.0.0.1", **{"X-Tenant": "t1"}).status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2", **{"X-Tenant": "t1"}).status, 429)
        self.assertEqual(self.send(harness, client_ip="10.0.0.2", **{"X-Tenant": "t2"}).status, 200)
        self.assertEqual(self.send(harness, client_ip="10.0.0.3").status, 200)

    def test_limitByPath(self) -> None:
        """
        limit_by path counts requests to that path together; other paths
        count per IP.
        """
        harness = self.harness(minute=1, limit_by="path", path="/login")
        self.assertEqual(self.send(harness, "/login", client_ip="10.0.0.1").status, 200)
        self.assertEqual(self.send(harness, "/login", client_ip="10.0.0.2").status, 429)
        self.assertEqual(self.send(harness, "/other", client_ip="10.0.0.2").status, 200)

    def test_fractionalLimit(self) -> None:
        """
        Limits are numbers: 1.5 lets two requests through.
        """
        harness = self.harness(minute=1.5)
        self.assertEqual(self.send(harness).header("x-ratelimit-limit-minute"), "1.5")
        self.assertEqual([self.send(harness).status for _ in range(2)], [200, 429])

    def test_perRoute(self) -> None:
        """
        Counters are kept per route and service, as in Kong.
        """
        self.plugin.stores.local.consume(f"other-route:{SERVICE_ID}:127.0.0.1", {"minute": 1}, T0 + 10)
        self.assertEqual(self.send(self.harness(minute=1)).status, 200)


@implementer(ICounterStore)
class _SharedCounters:
    """
    An L{ICounterStore} in memory, shared by several policies (nodes), whose
    calls the test can hold and fail.
    """

    def __init__(self) -> None:
        self.values: dict[tuple, int] = {}
        self.calls: list[list] = []
        self.down = False
        self.hold = False
        self.held: list[tuple[Deferred, list]] = []
        self.closed = False

    def add(self, increments: list) -> Deferred:
        self.calls.append(list(increments))
        if self.hold:
            d: Deferred = Deferred()
            self.held.append((d, list(increments)))
            return d
        return self._apply(increments)

    def _apply(self, increments: list) -> Deferred:
        if self.down:
            return fail(StoreUnavailable("the database is unavailable"))
        for key, amount, _expires in increments:
            self.values[key] = self.values.get(key, 0) + amount
        return succeed({key: self.values[key] for key, _, _ in increments})

    def release(self) -> None:
        held, self.held = self.held, []
        for d, increments in held:
            self._apply(increments).chainDeferred(d)

    def close(self) -> Deferred:
        self.closed = True
        return succeed(None)
