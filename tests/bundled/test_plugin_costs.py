"""
Tests for what the plugins of issue 25's realistic stack work out once
instead of on every request: rate-limiting's limits and header names,
request-transformer's plan (no template environment without templates),
prometheus's labelled series (counted in plain numbers, without
prometheus_client's locked values); and that a changed config still takes
effect.
"""
from __future__ import annotations

from types import MappingProxyType, SimpleNamespace
from typing import Any

from prometheus_client import generate_latest, values
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled import prometheus, request_transformer
from echogate.bundled.log_record import latencies
from echogate.bundled.prometheus import Prometheus
from echogate.bundled.rate_limiting import RateLimiting
from echogate.bundled.request_transformer import RequestTransformer
from echogate.testing import GatewayHarness


def _ok(test: SynchronousTestCase, gateway: GatewayHarness, headers: dict[str, str] | None = None) -> Any:
    response = test.successResultOf(gateway.request("GET", "/", headers=headers))
    test.assertEqual(response.status, 200, response.body)
    return response


class RateLimitingTests(SynchronousTestCase):
    """
    rate-limiting works out a config's limits once.
    """

    def test_once(self) -> None:
        """
        A read-only config (a snapshot's) is worked out once; the same
        limits come back for every request.
        """
        plugin = RateLimiting()
        config = MappingProxyType(plugin.config_schema.validate({"second": 5, "hour": 100}))
        first = plugin._limits(config)
        self.assertIs(plugin._limits(config), first)
        self.assertEqual(dict(first.limits), {"second": 5, "hour": 100})
        self.assertEqual([h[2:5] for h in first.headers],
                         [("X-RateLimit-Limit-Second", "5", "X-RateLimit-Remaining-Second"),
                          ("X-RateLimit-Limit-Hour", "100", "X-RateLimit-Remaining-Hour")])

    def test_otherConfig(self) -> None:
        """
        Another config object (a new snapshot's) has its own limits, and
        a mutable mapping is worked out each time.
        """
        plugin = RateLimiting()
        one = MappingProxyType(plugin.config_schema.validate({"second": 5}))
        other = MappingProxyType(plugin.config_schema.validate({"second": 7}))
        self.assertEqual(dict(plugin._limits(one).limits), {"second": 5})
        self.assertEqual(dict(plugin._limits(other).limits), {"second": 7})
        mutable = plugin.config_schema.validate({"second": 5})
        self.assertEqual(dict(plugin._limits(mutable).limits), {"second": 5})
        mutable["second"] = 9
        self.assertEqual(dict(plugin._limits(mutable).limits), {"second": 9})

    def test_headers(self) -> None:
        """
        Through the gateway, the limits' headers are sent as before.
        """
        gateway = GatewayHarness([RateLimiting()], configs=[("rate-limiting", {"second": 5, "minute": 10})])
        response = _ok(self, gateway)
        self.assertEqual([response.header(n) for n in ("X-RateLimit-Limit-Second", "X-RateLimit-Remaining-Second",
                                                       "X-RateLimit-Limit-Minute", "X-RateLimit-Remaining-Minute",
                                                       "RateLimit-Limit", "RateLimit-Remaining")],
                         ["5", "4", "10", "9", "5", "4"])


class RequestTransformerTests(SynchronousTestCase):
    """
    request-transformer makes a template environment only for a config
    with a template.
    """

    def _count_environments(self) -> list[Any]:
        made: list[Any] = []
        real = request_transformer._environment

        def environment(ctx: Any) -> Any:
            made.append(ctx)
            return real(ctx)

        self.patch(request_transformer, "_environment", environment)
        return made

    def test_plain(self) -> None:
        """
        Without a template, no environment is made, and the header is
        added.
        """
        made = self._count_environments()
        gateway = GatewayHarness([RequestTransformer()],
                                 configs=[("request-transformer", {"add": {"headers": ["X-Added:yes"]}})])
        _ok(self, gateway)
        _ok(self, gateway)
        self.assertEqual(gateway.upstream_requests[-1].header("x-added"), "yes")
        self.assertEqual(made, [])

    def test_template(self) -> None:
        """
        With a template, the environment is made and the value rendered.
        """
        made = self._count_environments()
        gateway = GatewayHarness([RequestTransformer()], configs=[
            ("request-transformer", {"add": {"headers": ["X-Copy:$(headers.x_source)"]}})])
        _ok(self, gateway, {"X-Source": "s"})
        self.assertEqual(gateway.upstream_requests[-1].header("x-copy"), "s")
        self.assertEqual(len(made), 1)


class PrometheusTests(SynchronousTestCase):
    """
    prometheus finds its labelled series without C{labels} after the
    first request, and counts in plain numbers.
    """

    def test_latenciesAsLogRecord(self) -> None:
        """
        The latencies worked out without a C{Latencies} are
        C{log_record.latencies}' gateway, upstream and total: rounded,
        never negative, none for the upstream when it was not called or did
        not answer.
        """
        for started, sent, answered, now in [(10.0, None, None, 10.2504), (10.0, 10.0004, 10.0126, 10.5),
                                             (10.0, 10.001, None, 10.002), (10.0, 9.9, 9.8, 9.7),
                                             (None, 10.0, 10.0015, 10.003), (10.0, 10.0005, 10.0015, 10.0025)]:
            ctx = SimpleNamespace(started=started, upstream_started=sent, upstream_responded=answered)
            expected = latencies(ctx, now)
            self.assertEqual(prometheus._latencies(ctx, now), (expected.gateway, expected.upstream, expected.total),
                             f"row {started, sent, answered, now}")

    def test_noClientValues(self) -> None:
        """
        A request adds to no C{prometheus_client} value (each takes a
        lock); the scrape still shows it.
        """
        touched: list[object] = []

        def inc(value: object, amount: float) -> None:
            touched.append(amount)

        self.patch(values.MutexValue, "inc", inc)
        plugin = Prometheus()
        gateway = GatewayHarness([plugin], configs=[("prometheus", {
            "status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True})])
        for _ in range(2):
            _ok(self, gateway)
        self.assertEqual(touched, [])
        text = generate_latest(plugin.metrics.registry).decode()
        self.assertIn('echogate_request_latency_ms_count{route="default",service="upstream"} 2.0', text)

    def test_labelsOnce(self) -> None:
        """
        Each metric's C{labels} is called once per label set, and every
        request is counted.
        """
        plugin = Prometheus()
        calls: list[tuple[str, ...]] = []
        for metric in (plugin.metrics.requests, plugin.metrics.gateway_latency, plugin.metrics.bandwidth):
            real = metric.labels

            def labels(*values: str, real: Any = real) -> Any:
                calls.append(values)
                return real(*values)

            self.patch(metric, "labels", labels)
        gateway = GatewayHarness([plugin], configs=[("prometheus", {
            "status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True})])
        for _ in range(3):
            _ok(self, gateway)
        self.assertEqual(len(calls), 4)  # requests, gateway latency, ingress, egress
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for family in plugin.metrics.registry.collect() for s in family.samples}
        counted = [value for (name, labels), value in found.items() if name == "echogate_http_requests_total"]
        self.assertEqual(counted, [3.0])
