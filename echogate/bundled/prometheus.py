"""
prometheus: request metrics in the standard Prometheus client library's
registry, exposed by the Admin API's C{GET /metrics}
(L{echogate.admin.metrics}) with the node's own gauges.

The plugin object holds one L{GatewayMetrics} (its own
C{CollectorRegistry}), created with the object, so the counts survive
every configuration reload. Its C{log} phase adds to plain numbers
(L{echogate.bundled.prometheus_series}), read into the registry's
families at each scrape, and records, as the config asks (Kong's flags,
all off by default):

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

import time
from bisect import bisect_left
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from twisted.internet.interfaces import IReactorTime

from echogate.bundled.log_record import request_size, response_size
from echogate.bundled.prometheus_series import CounterSeries, HistogramSeries, PlainCounter, PlainHistogram
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

    They are counted in plain numbers (L{echogate.bundled.prometheus_series}:
    no lock and no C{prometheus_client} call per request) and read into
    C{prometheus_client}'s families when the registry is scraped; the
    exposition is the one C{prometheus_client}'s C{Counter} and
    C{Histogram} of the same names gave.

    @ivar registry: the C{prometheus_client.CollectorRegistry} to expose.
    @ivar upstream_health: whether C{echogate_upstream_target_health} is
        exported (a config asked for C{upstream_health_metrics}).
    @ivar balancers: gives the node's balancers (C{None}: none).
    @ivar requests: C{echogate_http_requests_total}.
    @ivar gateway_latency: C{echogate_kong_latency_ms}.
    @ivar upstream_latency: C{echogate_upstream_latency_ms}.
    @ivar request_latency: C{echogate_request_latency_ms}.
    @ivar bandwidth: C{echogate_bandwidth_bytes_total}.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        """
        @param wall: the wall clock of the series' C{_created} times.
        """
        self.upstream_health = False
        self.balancers: Callable[[], Any] = lambda: None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_TargetHealth(self))
        self.requests = PlainCounter(
            "echogate_http_requests", "HTTP status codes per consumer, service and route",
            ["service", "route", "code", "source", "consumer"], self.registry, wall)
        self.gateway_latency = PlainHistogram(
            "echogate_kong_latency_ms", "Latency added by the gateway and its plugins, per service and route",
            ["service", "route"], KONG_LATENCY_BUCKETS, self.registry, wall)
        self.upstream_latency = PlainHistogram(
            "echogate_upstream_latency_ms", "Latency of the upstream's answer, per service and route",
            ["service", "route"], UPSTREAM_LATENCY_BUCKETS, self.registry, wall)
        self.request_latency = PlainHistogram(
            "echogate_request_latency_ms", "Total latency of requests, per service and route",
            ["service", "route"], UPSTREAM_LATENCY_BUCKETS, self.registry, wall)
        self.bandwidth = PlainCounter(
            "echogate_bandwidth_bytes", "Bandwidth (ingress: requests, egress: responses) in bytes",
            ["service", "route", "direction", "consumer"], self.registry, wall)
        self._children: dict[tuple[str, str, str], _Children] = {}
        #: L{children} by the ids of the service and route records and the
        #: consumer label, each with its records (L{of}).
        self.by_records: dict[tuple[int, int, str], tuple[Any, Any, _Children]] = {}

    def children(self, service: str, route: str, consumer: str) -> _Children:
        """
        The series of the metrics for one service, route and consumer: a
        request finds them by a dict lookup and attribute reads instead of
        C{labels}, which makes strings of the label values each time.
        """
        key = (service, route, consumer)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Children(self, service, route, consumer)
        return found

    def of(self, service: Mapping[str, Any] | None, route: Mapping[str, Any] | None,
           consumer: str) -> tuple[Any, Any, _Children]:
        """
        L{children} for a request's service and route records (labelled
        by their names, else their ids) and consumer label, kept in
        L{by_records} by the records' ids with the records (a
        configuration snapshot's records live as long as it does): a
        request finds them by one dict lookup without reading the
        records' names again.
        """
        found = (service, route, self.children(_label(service), _label(route), consumer))
        if len(self.by_records) >= _MAX_RECORDS:
            self.by_records.clear()
        self.by_records[id(service), id(route), consumer] = found
        return found


class _Children:
    """
    The series of L{GatewayMetrics}' metrics for one service, route and
    consumer, each made when first used (a series made before it counts
    anything would be exposed, at zero).

    @ivar requests: the request counter's series by C{(status, source)}.
    @ivar gateway_latency: the series of C{echogate_kong_latency_ms}, once
        made (L{latency}).
    @ivar upstream_latency: the series of C{echogate_upstream_latency_ms},
        once made.
    @ivar request_latency: the series of C{echogate_request_latency_ms},
        once made.
    @ivar ingress: the bandwidth counter's C{ingress} series, once made
        (L{bandwidth}).
    @ivar egress: its C{egress} series, once made.
    """

    __slots__ = ("_metrics", "_service", "_route", "_consumer", "requests", "gateway_latency", "upstream_latency",
                 "request_latency", "ingress", "egress")

    def __init__(self, metrics: GatewayMetrics, service: str, route: str, consumer: str) -> None:
        self._metrics = metrics
        self._service = service
        self._route = route
        self._consumer = consumer
        self.requests: dict[tuple[int, str], CounterSeries] = {}
        self.gateway_latency: HistogramSeries | None = None
        self.upstream_latency: HistogramSeries | None = None
        self.request_latency: HistogramSeries | None = None
        self.ingress: CounterSeries | None = None
        self.egress: CounterSeries | None = None

    def request_series(self, status: int, source: str) -> CounterSeries:
        """
        Make the request counter's series for C{status} and C{source}.
        """
        found = self.requests[status, source] = self._metrics.requests.labels(
            self._service, self._route, str(status), source, self._consumer)
        return found

    def latency(self, histogram: str) -> HistogramSeries:
        """
        Make the series of the latency histogram C{histogram}
        (C{gateway_latency}, C{upstream_latency} or C{request_latency}).
        """
        found: HistogramSeries = getattr(self._metrics, histogram).labels(self._service, self._route)
        setattr(self, histogram, found)
        return found

    def bandwidth(self, direction: str) -> CounterSeries:
        """
        Make the bandwidth counter's series for C{direction} (C{ingress}
        or C{egress}).
        """
        found = self._metrics.bandwidth.labels(self._service, self._route, direction, self._consumer)
        setattr(self, direction, found)
        return found


def _latencies(ctx: Any, now: float) -> tuple[int, int | None, int]:
    """
    The C{gateway}, C{upstream} and C{total} of
    L{echogate.bundled.log_record.latencies}C{(ctx, now)} (milliseconds;
    C{upstream} C{None} when the upstream was not called or did not
    answer), without making a C{Latencies}: that and its four calls were
    most of what the latency histograms cost a request.
    """
    started = ctx.started
    sent = ctx.upstream_started
    total = 0 if started is None else round((now - started) * 1000)
    if total < 0:
        total = 0
    if sent is None:
        return total, None, total
    gateway = 0 if started is None else round((sent - started) * 1000)
    if gateway < 0:
        gateway = 0
    responded = ctx.upstream_responded
    if responded is None:
        return gateway, None, total
    upstream = round((responded - sent) * 1000)
    return gateway, upstream if upstream > 0 else 0, total


#: How many (service, route, consumer) records L{GatewayMetrics.by_records}
#: keeps (then it starts again: the series themselves are kept).
_MAX_RECORDS = 10_000


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
    #: The flags of each config seen, by id, with the config (L{_flags}).
    prepared: dict[int, tuple[Any, ...]] = attrs.field(factory=dict, eq=False, repr=False)

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

    def _flags(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """
        C{(config, per_consumer, status_code_metrics, latency_metrics,
        bandwidth_metrics, upstream_health_metrics)}, kept for a
        read-only config (a snapshot's, which lives as long as it does).
        """
        found = (config, bool(config["per_consumer"]), bool(config["status_code_metrics"]),
                 bool(config["latency_metrics"]), bool(config["bandwidth_metrics"]),
                 bool(config["upstream_health_metrics"]))
        if isinstance(config, MappingProxyType):
            if len(self.prepared) >= _MAX_RECORDS:
                self.prepared.clear()
            self.prepared[id(config)] = found
        return found

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        """
        Count the request in its series' plain numbers (see
        L{GatewayMetrics}).
        """
        metrics = self.metrics
        flags = self.prepared.get(id(config))
        if flags is None or flags[0] is not config:
            flags = self._flags(config)
        _, per_consumer, status_codes, latency, bandwidth, health = flags
        if health:
            metrics.upstream_health = True
        consumer = ""
        if per_consumer and ctx.consumer:
            consumer = ctx.consumer.get("username") or ctx.consumer.get("id") or ""
        service, route = ctx.service, ctx.route
        found = metrics.by_records.get((id(service), id(route), consumer))
        if found is None or found[0] is not service or found[1] is not route:
            found = metrics.of(service, route, consumer)
        children = found[2]
        if status_codes:
            response = ctx.response
            status, source = response.status or 0, response.source or "error"
            requests = children.requests.get((status, source)) or children.request_series(status, source)
            requests.value += 1
        if latency:
            clock = self.clock
            gateway, upstream, total = _latencies(
                ctx, (clock if clock is not None else self.binding.node.reactor).seconds())
            # (HistogramSeries.observe, inline: the latencies are integers,
            # never NaN)
            series = children.gateway_latency or children.latency("gateway_latency")
            series.sum += gateway
            series.counts[bisect_left(series.bounds, gateway)] += 1
            if upstream is not None:
                series = children.upstream_latency or children.latency("upstream_latency")
                series.sum += upstream
                series.counts[bisect_left(series.bounds, upstream)] += 1
            series = children.request_latency or children.latency("request_latency")
            series.sum += total
            series.counts[bisect_left(series.bounds, total)] += 1
        if bandwidth:
            (children.ingress or children.bandwidth("ingress")).value += request_size(ctx)
            (children.egress or children.bandwidth("egress")).value += response_size(ctx)
