"""
The exposition of the prometheus plugin (L{echogate.bundled.prometheus})
for a fixed set of requests, byte for byte: the text in
C{prometheus_exposition.txt} was written by the plugin when it counted
with C{prometheus_client}'s own C{Counter} and C{Histogram} (at ab2a2e1,
prometheus_client 0.26.0, with its wall clock replaced by L{WallClock}),
before it counted in plain per-series numbers; so a change to how requests are counted that
changes a name, a label, a value, a bucket bound, a C{HELP}/C{TYPE} line,
a series' C{_created} time or the order of anything shows here.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import generate_latest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled import prometheus
from echogate.bundled.prometheus import Prometheus
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, UpstreamAnswer

#: The expositions written by the plugin before its plain counts: the
#: sections of the file, by name.
_EXPECTED = Path(__file__).with_name("prometheus_exposition.txt")


def expected(section: str) -> str:
    """
    The section C{section} of L{_EXPECTED} (each starts with a line
    C{=== name}).
    """
    parts = _EXPECTED.read_text(encoding="utf-8").split("=== ")
    found = {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts if part}
    return found[section]


class WallClock:
    """
    The wall clock series' C{_created} times are read from: 1,700,000,000
    plus half a second more at each reading.
    """

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 1_700_000_000.0 + self.readings / 2


def _config(**flags: bool) -> Mapping[str, Any]:
    return MappingProxyType(Prometheus.config_schema.validate(flags))


#: The configs of the log calls: every flag, every flag per consumer,
#: status codes only, latencies only, bandwidth only.
ALL = _config(status_code_metrics=True, latency_metrics=True, bandwidth_metrics=True)
PER_CONSUMER = _config(per_consumer=True, status_code_metrics=True, latency_metrics=True, bandwidth_metrics=True)
STATUS = _config(status_code_metrics=True)
LATENCY = _config(latency_metrics=True)
BANDWIDTH = _config(bandwidth_metrics=True, per_consumer=True)

_SERVICE = {"id": "00000000-0000-4000-8000-000000000001", "name": "orders"}
_UNNAMED = {"id": "00000000-0000-4000-8000-0000000000f1", "name": None}
_ODD = {"id": "00000000-0000-4000-8000-0000000000f2", "name": 'we "quote",\\ and\nbreak: caf\u00e9'}
_ROUTE = {"id": "00000000-0000-4000-8000-000000000002", "name": "list"}
_OTHER_ROUTE = {"id": "00000000-0000-4000-8000-000000000003", "name": None}
_ALICE = {"id": "00000000-0000-4000-8000-0000000000aa", "username": "alice"}
_NAMELESS = {"id": "00000000-0000-4000-8000-0000000000bb", "username": None}


def log_calls() -> Iterator[tuple[Mapping[str, Any], dict[str, Any]]]:
    """
    The log calls of the direct test: C{(config, request)} where the
    request gives the context's service, route, consumer, status, source,
    times (ms after its start: the upstream called, answering, the end)
    and sizes.
    """
    # Latencies on and off every bucket bound of both bucket sets, above
    # the last, and zero; without an upstream call.
    for ms in (0, 1, 2, 3, 7, 24, 25, 26, 80, 99, 100, 101, 399, 750, 1000, 5999, 6000, 6001, 60000, 60001):
        yield ALL, dict(service=_SERVICE, route=_ROUTE, status=200, source="service",
                        times=(ms // 3, ms // 3 + ms // 2, ms), sizes=(100 + ms, 200 + 2 * ms))
    for status, source in ((404, "exit"), (502, "error"), (None, None), (200, "service"), (503, "service")):
        yield ALL, dict(service=_SERVICE, route=_ROUTE, status=status, source=source, times=(None, None, 5),
                        sizes=(90, 40))
    # Unnamed entities (ids), no route, no service; consumers.
    yield ALL, dict(service=_UNNAMED, route=_OTHER_ROUTE, status=201, source="service", times=(1, 30, 31),
                    sizes=(10, 20))
    yield ALL, dict(service=None, route=None, status=404, source="error", times=(None, None, 0), sizes=(50, 60))
    yield PER_CONSUMER, dict(service=_SERVICE, route=_ROUTE, consumer=_ALICE, status=200, source="service",
                             times=(2, 40, 41), sizes=(70, 80))
    yield PER_CONSUMER, dict(service=_SERVICE, route=_ROUTE, consumer=_NAMELESS, status=200, source="service",
                             times=(2, 40, 41), sizes=(70, 80))
    yield ALL, dict(service=_SERVICE, route=_ROUTE, consumer=_ALICE, status=200, source="service",
                    times=(2, 40, 41), sizes=(70, 80))
    # One flag at a time, on series of their own.
    yield STATUS, dict(service=_ODD, route=_ROUTE, status=200, source="service", times=(1, 2, 3), sizes=(1, 2))
    yield LATENCY, dict(service=_ODD, route=_OTHER_ROUTE, status=200, source="service", times=(1, 2, 3),
                        sizes=(1, 2))
    yield BANDWIDTH, dict(service=_ODD, route=_ROUTE, consumer=_ALICE, status=200, source="service",
                          times=(1, 2, 3), sizes=(123456789, 987654321))
    # Large sizes: summed in floats, as before (2 ** 53 + 1 is 2 ** 53 in a
    # float: exact sums would end in ...996 here, not ...992).
    for size in (2 ** 53, 1, 1, 1):
        yield BANDWIDTH, dict(service=_UNNAMED, route=_ROUTE, status=200, source="service", times=(1, 2, 3),
                              sizes=(size, 3))


def _sized(index: int) -> Callable[[Any], int]:
    def size(ctx: Any) -> int:
        result: int = ctx.sizes[index]
        return result

    return size


def run_log_calls(plugin: Prometheus, clock: Clock) -> list[str]:
    """
    Make the L{log_calls} on C{plugin}, its clock C{clock}; the
    expositions of the plugin's registry after the first 12 calls and
    after all. The sizes come from each call (C{request_size} and
    C{response_size} patched by the caller).
    """
    texts = []
    for i, (config, request) in enumerate(log_calls()):
        if i == 12:
            texts.append(generate_latest(plugin.metrics.registry).decode("utf-8"))
        start = clock.seconds()
        sent, answered, end = request["times"]
        ctx = SimpleNamespace(
            service=request["service"], route=request["route"], consumer=request.get("consumer"),
            response=SimpleNamespace(status=request["status"], source=request["source"]),
            started=start, upstream_started=None if sent is None else start + sent / 1000,
            upstream_responded=None if answered is None else start + answered / 1000,
            sizes=request["sizes"])
        clock.advance(end / 1000)
        plugin.log(ctx, config)
        clock.advance(1)
    texts.append(generate_latest(plugin.metrics.registry).decode("utf-8"))
    return texts


class _Traffic(GatewayPlugin):
    """
    C{/exit}: answered 403 by the plugin; C{/alice...}: authenticated as
    alice.
    """

    name = "traffic"
    version = "1.0.0"
    priority = 2000
    config_schema = Record({})

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        if ctx.request.path == "/exit":
            ctx.exit(403)
        elif ctx.request.path.startswith("/alice"):
            ctx.authenticate({"id": _ALICE["id"], "username": "alice"})


#: The requests of the gateway test: C{(path, upstream's status, upstream's
#: delay in ms)}; C{/broken}: the upstream refuses the connection.
GATEWAY_REQUESTS = [("/ok", 200, 10), ("/ok/again", 200, 30), ("/missing", 404, 260), ("/exit", 0, 0),
                    ("/broken", 0, 0), ("/alice", 200, 5), ("/alice/slow", 503, 12000), ("/ok/slow", 200, 70000)]


def run_gateway(test: SynchronousTestCase, plugin: Prometheus, clock: Clock) -> str:
    """
    Send L{GATEWAY_REQUESTS} through a gateway with C{plugin} (status codes
    and latencies per consumer) and the L{_Traffic} plugin; the exposition
    of the plugin's registry.
    """
    delays = {path: (status, ms) for path, status, ms in GATEWAY_REQUESTS}

    def upstream(request: Any) -> Any:
        if request.path == "/broken":
            raise ConnectionRefusedError()
        status, ms = delays[request.path]
        d: Deferred = Deferred()
        clock.callLater(ms / 1000, d.callback, UpstreamAnswer(status, {"Content-Type": "text/plain"}, b"hi"))
        return d

    harness = GatewayHarness([plugin, _Traffic()], clock=clock, upstream=upstream, configs=[
        ("prometheus", {"per_consumer": True, "status_code_metrics": True, "latency_metrics": True}),
        ("traffic", {})])
    for path, _, ms in GATEWAY_REQUESTS:
        d = harness.request("GET", path)
        clock.advance(ms / 1000)
        test.successResultOf(d)
        clock.advance(1)
    return generate_latest(plugin.metrics.registry).decode("utf-8")


class ExpositionTests(SynchronousTestCase):
    """
    The plugin's exposition for the same requests is what it was with
    C{prometheus_client}'s metrics.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.wall = WallClock()
        self.plugin = Prometheus(clock=self.clock, metrics=prometheus.GatewayMetrics(wall=self.wall))

    def test_logCalls(self) -> None:
        """
        Log calls with every flag, label and bucket: the same text,
        mid-way and at the end.
        """
        self.patch(prometheus, "request_size", _sized(0))
        self.patch(prometheus, "response_size", _sized(1))
        middle, end = run_log_calls(self.plugin, self.clock)
        self.assertEqual(middle, expected("log calls, after 12"))
        self.assertEqual(end, expected("log calls, at the end"))

    def test_gateway(self) -> None:
        """
        Requests through a gateway (answered by the service, a plugin, the
        gateway): the same text.
        """
        self.assertEqual(run_gateway(self, self.plugin, self.clock), expected("gateway"))

    def test_empty(self) -> None:
        """
        Before any request: every family's C{HELP} and C{TYPE}, no series.
        """
        self.assertEqual(generate_latest(self.plugin.metrics.registry).decode("utf-8"), expected("empty"))
