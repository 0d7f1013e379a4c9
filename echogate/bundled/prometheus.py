"""
prometheus: request metrics in the standard Prometheus client library's
registry, exposed by the Admin API's C{GET /metrics}
(L{echogate.admin.metrics}) with the node's own gauges.

The plugin object holds one L{GatewayMetrics} (its own
C{CollectorRegistry}), created with the object, so the counts survive
every configuration reload. Its C{log} phase records, as the config asks
(Kong's flags, all off by default):

  - C{status_code_metrics}: C{echogate_http_requests_total{service, route,
    code, source, consumer}};
  - C{latency_metrics}: the histograms C{echogate_kong_latency_ms},
    C{echogate_upstream_latency_ms} and C{echogate_request_latency_ms}
    C{{service, route}} (the gateway's part, the upstream's, the whole);
  - C{bandwidth_metrics}: C{echogate_bandwidth_bytes{service, route,
    direction, consumer}} (C{ingress}: requests, C{egress}: responses).

C{per_consumer} fills the C{consumer} label with the consumer's username.

C{upstream_health_metrics} exports, at each scrape, Kong's
C{echogate_upstream_target_health{upstream, target, address, state,
subsystem}}: for every address of every target of the node's balancers,
one sample per state (C{healthchecks_off}, C{healthy}, C{unhealthy},
C{dns_error}), 1 for the address's state and 0 for the others (a target
whose name did not resolve has one address, C{""}, in C{dns_error}). It is
on once a config of the plugin that asks for it was seen (at start-up, or
by a request's log phase).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from twisted.internet.interfaces import IReactorTime

from echogate.bundled.log_record import latencies, request_size, response_size
from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Boolean, Record

__all__ = ["Prometheus", "GatewayMetrics", "KONG_LATENCY_BUCKETS", "UPSTREAM_LATENCY_BUCKETS"]

#: Kong's buckets, in milliseconds.
KONG_LATENCY_BUCKETS = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000)
UPSTREAM_LATENCY_BUCKETS = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)


#: The states of C{echogate_upstream_target_health}, as Kong names them.
TARGET_STATES = ("healthchecks_off", "healthy", "unhealthy", "dns_error")


class _TargetHealth:
    """
    A collector of C{echogate_upstream_target_health}, read from the
    node's balancers at each scrape.
    """

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        balancers = self._metrics.balancers()
        if not self._metrics.upstream_health or balancers is None:
            return
        family = GaugeMetricFamily(
            "echogate_upstream_target_health",
            "Health of the targets of upstreams: states healthchecks_off, healthy, unhealthy,"
            " dns_error; 1 for the address's state",
            labels=["upstream", "target", "address", "state", "subsystem"])
        for upstream, balancer in balancers.items():
            for target in balancer.health_report():
                addresses = target["data"]["addresses"]
                found = [(f"{a['ip']}:{a['port']}", str(a["health"]).lower()) for a in addresses]
                for address, state in found or [("", "dns_error")]:
                    for each in TARGET_STATES:
                        family.add_metric([upstream, str(target["target"]), address, each, "http"],
                                          1 if each == state else 0)
        yield family


class GatewayMetrics:
    """
    The per-request metrics of one prometheus plugin object, in a registry
    of their own.

    @ivar registry: the C{prometheus_client.CollectorRegistry} to expose.
    @ivar upstream_health: whether C{echogate_upstream_target_health} is
        exported (a config asked for C{upstream_health_metrics}).
    @ivar balancers: gives the node's balancers (C{None}: none).
    """

    def __init__(self) -> None:
        self.upstream_health = False
        self.balancers: Callable[[], Any] = lambda: None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_TargetHealth(self))
        self.requests = Counter(
            "echogate_http_requests", "HTTP status codes per consumer, service and route",
            ["service", "route", "code", "source", "consumer"], registry=self.registry)
        self.gateway_latency = Histogram(
            "echogate_kong_latency_ms", "Latency added by the gateway and its plugins, per service and route",
            ["service", "route"], buckets=KONG_LATENCY_BUCKETS, registry=self.registry)
        self.upstream_latency = Histogram(
            "echogate_upstream_latency_ms", "Latency of the upstream's answer, per service and route",
            ["service", "route"], buckets=UPSTREAM_LATENCY_BUCKETS, registry=self.registry)
        self.request_latency = Histogram(
            "echogate_request_latency_ms", "Total latency of requests, per service and route",
            ["service", "route"], buckets=UPSTREAM_LATENCY_BUCKETS, registry=self.registry)
        self.bandwidth = Counter(
            "echogate_bandwidth_bytes", "Bandwidth (ingress: requests, egress: responses) in bytes",
            ["service", "route", "direction", "consumer"], registry=self.registry)
        self._children: dict[tuple[str, str, str], _Children] = {}

    def children(self, service: str, route: str, consumer: str) -> "_Children":
        """
        The labelled children of the metrics for one service, route and
        consumer: a request finds them by dict lookups instead of
        C{labels}, which validates the values and takes the metric's lock
        each time. They are the metrics' own children, so what they count
        is exposed as before; there are as many as the metrics have.
        """
        key = (service, route, consumer)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Children(self, service, route, consumer)
        return found


class _Children:
    """
    The children of L{GatewayMetrics}' metrics for one service, route and
    consumer, each made when first used (a child is a series: one made
    before it counts anything would be exposed, at zero).
    """

    __slots__ = ("_metrics", "_service", "_route", "_consumer", "_made")

    def __init__(self, metrics: GatewayMetrics, service: str, route: str, consumer: str):
        self._metrics = metrics
        self._service = service
        self._route = route
        self._consumer = consumer
        self._made: dict[Any, Any] = {}

    def requests(self, status: int, source: str) -> Any:
        """
        The request counter's child for C{status} and C{source}.
        """
        key = (status, source)
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = self._metrics.requests.labels(self._service, self._route, str(status), source,
                                                                    self._consumer)
        return found

    def latency(self, histogram: str) -> Any:
        """
        The child of the latency histogram C{histogram} (C{gateway_latency},
        C{upstream_latency} or C{request_latency}).
        """
        found = self._made.get(histogram)
        if found is None:
            found = self._made[histogram] = getattr(self._metrics, histogram).labels(self._service, self._route)
        return found

    def bandwidth(self, direction: str) -> Any:
        """
        The bandwidth counter's child for C{direction} (C{ingress} or
        C{egress}).
        """
        found = self._made.get(direction)
        if found is None:
            found = self._made[direction] = self._metrics.bandwidth.labels(self._service, self._route, direction,
                                                                           self._consumer)
        return found


def _label(entity: Mapping[str, Any] | None) -> str:
    if not entity:
        return ""
    return entity.get("name") or entity.get("id") or ""


@attrs.frozen
class Prometheus(GatewayPlugin):
    """
    Count requests, latencies and bytes for C{GET /metrics}.

    @ivar clock: the clock latencies are read from (C{IReactorTime});
        C{None}: the node's reactor (from C{node_service}).
    @ivar metrics: the L{GatewayMetrics} (one per plugin object).
    @ivar binding: the node, once C{node_service} gave it.
    """

    clock: IReactorTime | None = None
    metrics: GatewayMetrics = attrs.field(factory=GatewayMetrics)
    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)

    name = "prometheus"
    version = "1.0.0"
    priority = 13
    config_schema = Record({
        "per_consumer": Boolean(default=False, description="Fill the consumer label of requests and bandwidth."),
        "status_code_metrics": Boolean(default=False, description="Count requests by status code."),
        "latency_metrics": Boolean(default=False, description="Record the latency histograms."),
        "bandwidth_metrics": Boolean(default=False, description="Count request and response bytes."),
        "upstream_health_metrics": Boolean(default=False,
                                           description="Export the health of upstreams' targets"
                                                       " (echogate_upstream_target_health)."),
    })

    def _now(self) -> float:
        clock: IReactorTime = self.clock if self.clock is not None else self.binding.node.reactor
        return clock.seconds()

    def node_service(self, node: IPluginNode) -> None:
        """
        Keep C{node}: its reactor is the clock, its C{balancers} (when it
        has them) give the targets' health.
        """
        self.binding.bind(node)
        self.metrics.balancers = lambda: getattr(node, "balancers", None)

    def init(self, configs: Sequence[Mapping[str, Any]]) -> None:
        """
        Export the targets' health when a config asks for it.
        """
        if any(config.get("upstream_health_metrics") for config in configs):
            self.metrics.upstream_health = True

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        metrics = self.metrics
        if config["upstream_health_metrics"]:
            metrics.upstream_health = True
        consumer = ""
        if config["per_consumer"] and ctx.consumer:
            consumer = ctx.consumer.get("username") or ctx.consumer.get("id") or ""
        children = metrics.children(_label(ctx.service), _label(ctx.route), consumer)
        if config["status_code_metrics"]:
            response = ctx.response
            children.requests(response.status or 0, response.source or "error").inc()
        if config["latency_metrics"]:
            times = latencies(ctx, self._now())
            children.latency("gateway_latency").observe(times.gateway)
            if times.upstream is not None:
                children.latency("upstream_latency").observe(times.upstream)
            children.latency("request_latency").observe(times.total)
        if config["bandwidth_metrics"]:
            children.bandwidth("ingress").inc(request_size(ctx))
            children.bandwidth("egress").inc(response_size(ctx))
