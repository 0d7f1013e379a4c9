"""
Tests for the bundled prometheus plugin (L{echogate.bundled.prometheus})
and the Admin API's C{GET /metrics} (L{echogate.admin.metrics}).
"""
from __future__ import annotations

from typing import Any, Mapping

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.bundled.prometheus import Prometheus
from echogate.errors import DatabaseUnavailable, SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.plugin import GatewayPlugin
from echogate.proxy.snapshot import Snapshot
from echogate.schema import Record
from echogate.store.data import ConfigurationData
from echogate.testing import GatewayHarness, UpstreamAnswer
from tests.admin.test_admin import AdminTestCase
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


def samples(text: str) -> dict[tuple, float]:
    """
    Every sample of an exposition: C{(name, sorted labels)} to value.
    """
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def registry_text(plugin: Prometheus) -> str:
    from prometheus_client import generate_latest

    return generate_latest(plugin.metrics.registry).decode()


class _Alice(GatewayPlugin):
    """
    Authenticates every request as consumer alice.
    """

    name = "alice"
    version = "1.0.0"
    priority = 2000
    config_schema = Record({})

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        ctx.authenticate({"id": "00000000-0000-4000-8000-0000000000aa", "username": "alice"})


class PrometheusSchemaTests(SynchronousTestCase):
    """
    prometheus's config: Kong's flags, all off by default.
    """

    def test_defaults(self) -> None:
        """
        Every flag defaults to false.
        """
        self.assertEqual(Prometheus.config_schema.validate({}), {
            "per_consumer": False, "status_code_metrics": False, "latency_metrics": False,
            "bandwidth_metrics": False, "upstream_health_metrics": False})

    def test_booleans(self) -> None:
        """
        Each flag is a boolean.
        """
        for name in ("per_consumer", "status_code_metrics", "latency_metrics", "bandwidth_metrics",
                     "upstream_health_metrics"):
            error = self.assertRaises(SchemaViolation, Prometheus.config_schema.validate, {name: "true"})
            self.assertEqual(error.fields, {name: "expected a boolean"}, f"row name={name!r}")

    def test_unknown(self) -> None:
        """
        Unknown flags are refused.
        """
        error = self.assertRaises(SchemaViolation, Prometheus.config_schema.validate, {"ai_metrics": True})
        self.assertEqual(error.fields, {"ai_metrics": "unknown field"})


ALL = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}


class PrometheusTests(SynchronousTestCase):
    """
    Through L{GatewayHarness}: what the log phase records.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.plugin = Prometheus(clock=self.clock)

    def harness(self, config: dict, plugins: list | None = None, upstream: Any = None) -> GatewayHarness:
        def slow(request: Any) -> Deferred:
            d: Deferred = Deferred()
            self.clock.callLater(0.3, d.callback, UpstreamAnswer(200, {"Content-Type": "text/plain"}, b"hi"))
            return d

        configs: list = [("prometheus", config)] + [(p.name, {}) for p in plugins or []]
        return GatewayHarness([self.plugin, *(plugins or [])], configs=configs, upstream=upstream or slow,
                              clock=self.clock)

    def send(self, harness: GatewayHarness, path: str = "/") -> Any:
        d = harness.request("GET", path)
        self.clock.advance(0.3)
        return self.successResultOf(d)

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        self.assertTrue(verifyObject(IGatewayPlugin, self.plugin))
        self.assertEqual((self.plugin.name, self.plugin.priority), ("prometheus", 13))

    def test_requests(self) -> None:
        """
        status_code_metrics counts requests by service, route, status and
        source.
        """
        harness = self.harness({"status_code_metrics": True})
        for _ in range(3):
            self.send(harness)
        found = samples(registry_text(self.plugin))
        key = ("echogate_http_requests_total", (("code", "200"), ("consumer", ""), ("route", "default"),
                                                ("service", "upstream"), ("source", "service")))
        self.assertEqual(found[key], 3)

    def test_errorsCounted(self) -> None:
        """
        The gateway's own answers count with source error.
        """
        def broken(request: Any) -> Any:
            raise ConnectionRefusedError()

        harness = self.harness({"status_code_metrics": True}, upstream=broken)
        self.successResultOf(harness.request("GET", "/"))
        found = samples(registry_text(self.plugin))
        self.assertEqual(found[("echogate_http_requests_total", (
            ("code", "502"), ("consumer", ""), ("route", "default"), ("service", "upstream"),
            ("source", "error")))], 1)

    def test_latencies(self) -> None:
        """
        latency_metrics observes the gateway's, the upstream's and the total
        latency in milliseconds.
        """
        self.send(self.harness({"latency_metrics": True}))
        found = samples(registry_text(self.plugin))
        labels = (("route", "default"), ("service", "upstream"))
        self.assertEqual(found[("echogate_upstream_latency_ms_sum", labels)], 300)
        self.assertEqual(found[("echogate_request_latency_ms_sum", labels)], 300)
        self.assertEqual(found[("echogate_kong_latency_ms_sum", labels)], 0)
        self.assertEqual(found[("echogate_upstream_latency_ms_bucket", (("le", "250.0"),) + labels)], 0)
        self.assertEqual(found[("echogate_upstream_latency_ms_bucket", (("le", "400.0"),) + labels)], 1)

    def test_bandwidth(self) -> None:
        """
        bandwidth_metrics counts request and response bytes.
        """
        self.send(self.harness({"bandwidth_metrics": True}))
        found = samples(registry_text(self.plugin))
        base = (("consumer", ""),)
        egress = found[("echogate_bandwidth_bytes_total", base + (("direction", "egress"), ("route", "default"),
                                                                  ("service", "upstream")))]
        ingress = found[("echogate_bandwidth_bytes_total", base + (("direction", "ingress"), ("route", "default"),
                                                                   ("service", "upstream")))]
        self.assertGreater(egress, len(b"hi"))
        self.assertGreater(ingress, len(b"GET / HTTP/1.1"))

    def test_flagsOff(self) -> None:
        """
        With the flags off nothing is recorded.
        """
        self.send(self.harness({}))
        found = samples(registry_text(self.plugin))
        self.assertEqual([k for k in found if not k[0].endswith("_created")], [])

    def test_perConsumer(self) -> None:
        """
        per_consumer fills the consumer label with the username.
        """
        self.send(self.harness({"per_consumer": True, **ALL}, plugins=[_Alice()]))
        found = samples(registry_text(self.plugin))
        self.assertEqual(found[("echogate_http_requests_total", (
            ("code", "200"), ("consumer", "alice"), ("route", "default"), ("service", "upstream"),
            ("source", "service")))], 1)

    def test_survivesReload(self) -> None:
        """
        A new configuration snapshot keeps the counts: they live on the
        plugin object.
        """
        harness = self.harness({"status_code_metrics": True})
        self.send(harness)
        old = harness.snapshot
        harness.snapshot = Snapshot.build(self._data(harness), harness.plugins)
        self.assertIsNot(harness.snapshot, old)
        self.send(harness)
        self.assertEqual(sum(v for k, v in samples(registry_text(self.plugin)).items()
                             if k[0] == "echogate_http_requests_total"), 2)

    def _data(self, harness: GatewayHarness) -> ConfigurationData:
        from echogate.testing import ROUTE_ID, SERVICE_ID

        entry = harness.snapshot.plugins.entries("prometheus")[0]
        service = {"id": SERVICE_ID, "name": "upstream", "protocol": "http", "host": "upstream.test",
                   "port": 80, "path": None, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
                   "read_timeout": 60000, "enabled": True, "tags": None, "created_at": 0, "updated_at": 0}
        route = {"id": ROUTE_ID, "name": "default", "protocols": ["http"], "methods": None, "hosts": None,
                 "paths": ["/"], "headers": None, "strip_path": False, "preserve_host": False,
                 "regex_priority": 0, "created_at": 0, "updated_at": 0, "service": {"id": SERVICE_ID},
                 "tags": None}
        plugin = {"id": entry.id, "name": "prometheus", "config": dict(entry.config), "enabled": True,
                  "service": None, "route": None, "consumer": None}
        return ConfigurationData(version=2, services=(service,), routes=(route,), plugins=(plugin,))


class _FailingVersionStore:
    def version(self) -> Deferred:
        d: Deferred = Deferred()
        d.errback(DatabaseUnavailable())
        return d


class MetricsEndpointTests(AdminTestCase):
    """
    C{GET /metrics} on the Admin API.
    """

    def test_notEnabled(self) -> None:
        """
        Without the prometheus plugin on the node: 404.
        """
        answer = self.call("GET", "/metrics")
        self.assertEqual((answer.status, answer.json), (404, {"message": "Not found"}))

    def test_exposition(self) -> None:
        """
        The node's gauges and the plugin's metrics, in Prometheus's text
        format.
        """
        plugin = Prometheus()
        plugin.metrics.requests.labels("s", "r", "200", "service", "").inc()
        self.api = self.make_api(plugins={"prometheus": plugin})
        from treq.testing import StubTreq

        self.treq = StubTreq(self.api.resource())
        answer = self.call("GET", "/metrics")
        self.assertEqual(answer.status, 200)
        self.assertTrue(answer.headers[b"Content-Type"][0].startswith(b"text/plain; version="))
        found = samples(answer.raw.decode())
        node = "11111111-2222-4333-8444-555555555555"
        self.assertEqual(found[("echogate_connections", (("node_id", node), ("state", "active")))], 2)
        self.assertEqual(found[("echogate_connections", (("node_id", node), ("state", "total")))], 7)
        self.assertEqual(found[("echogate_datastore_reachable", ())], 1)
        self.assertEqual(found[("echogate_node_info", (("node_id", node), ("version", "0.1.0")))], 1)
        self.assertEqual(found[("echogate_http_requests_total", (
            ("code", "200"), ("consumer", ""), ("route", "r"), ("service", "s"), ("source", "service")))], 1)

    def test_databaseDown(self) -> None:
        """
        A database that fails (or does not answer in time) reads 0.
        """
        from treq.testing import StubTreq

        self.api = self.make_api(plugins={"prometheus": Prometheus()}, store=_FailingVersionStore())
        self.treq = StubTreq(self.api.resource())
        answer = self.call("GET", "/metrics")
        self.assertEqual(samples(answer.raw.decode())[("echogate_datastore_reachable", ())], 0)


class PrometheusGatewayTests(TestCase):
    """
    prometheus in a running gateway.
    """

    timeout = 60

    async def test_endToEnd(self) -> None:
        """
        Proxied requests show in GET /metrics by service, route and status,
        with latencies, bandwidth, connections and the database; the counts
        survive a configuration change.
        """
        _, port = start_upstream(self)
        plugin = Prometheus()
        gw = await start_gateway(self, plugin_objects={"prometheus": plugin})
        await gw.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{port}"})
        await gw.admin("POST", "/services/svc/routes", json={"name": "rt", "paths": ["/m"]})
        answer = await gw.admin("POST", "/plugins", json={"name": "prometheus", "config": ALL})
        self.assertEqual(answer.code, 201, answer.body)
        for _ in range(2):
            self.assertEqual((await gw.proxy("GET", "/m/ok")).code, 200)
        self.assertEqual((await gw.proxy("GET", "/m/status/503")).code, 503)
        await gw.admin("PATCH", "/routes/rt", json={"paths": ["/m", "/n"]})
        self.assertEqual((await gw.proxy("GET", "/n/ok")).code, 200)
        metrics = await gw.admin("GET", "/metrics")
        self.assertEqual(metrics.code, 200)
        found = samples(metrics.body.decode())
        route = (("route", "rt"), ("service", "svc"))
        self.assertEqual(found[("echogate_http_requests_total", (("code", "200"), ("consumer", ""))
                                + route[:1] + route[1:] + (("source", "service"),))], 3)
        self.assertEqual(found[("echogate_http_requests_total", (("code", "503"), ("consumer", ""))
                                + route + (("source", "service"),))], 1)
        self.assertEqual(found[("echogate_request_latency_ms_count", route)], 4)
        self.assertEqual(found[("echogate_upstream_latency_ms_count", route)], 4)
        self.assertGreater(found[("echogate_bandwidth_bytes_total", (("consumer", ""), ("direction", "egress"))
                                  + route)], 0)
        self.assertEqual(found[("echogate_datastore_reachable", ())], 1)
        node = gw.service.node_id
        self.assertGreaterEqual(found[("echogate_connections", (("node_id", node), ("state", "total")))], 4)
