"""
The scenarios and the contenders: what is measured, and every server
that is measured, each started on 127.0.0.1 and pinned to the server
core.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import attrs

from bench import nginx
from bench.gateway import BACKLOG, EchogateNode
from bench.processes import BenchError, CoreLayout, Process
from bench.stack import REALISTIC, Stack, add_stack

__all__ = ["Scenario", "SCENARIOS", "Contender", "CONTENDERS", "DEFAULT_CONTENDERS", "PYPY_CONTENDERS",
           "Running", "Bench", "Runtime", "describe_runtime"]

HERE = Path(__file__).resolve().parent


@attrs.frozen
class Scenario:
    """
    One kind of load: which upstream answer (C{kind}: C{small}, C{large}
    or C{post}), how many connections, and the POST body size.
    """

    name: str
    kind: str
    connections: int
    description: str
    post_bytes: int = 0


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("small-50", "small", 50, "GET, 100-byte answer, 50 connections"),
    Scenario("small-500", "small", 500, "GET, 100-byte answer, 500 connections"),
    Scenario("large-50", "large", 50, "GET, 1 MiB answer, 50 connections"),
    Scenario("post-64k", "post", 50, "POST with a 64 KiB body, 100-byte answer, 50 connections",
             post_bytes=64 * 1024),
)}


@attrs.frozen
class Runtime:
    """
    A Python to run the Twisted contenders with: C{bin_dir} holds its
    C{python} (or C{pypy3}) and C{twistd}.
    """

    name: str
    bin_dir: Path
    python: Path
    echogate: bool = True
    #: What every command of this Python runs under (see L{bench.pypy}).
    launcher: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return "" if self.name == "CPython" else f" ({self.name})"


@attrs.define
class Bench:
    """
    What every contender needs: the work directory, the core layout, the
    upstream's port, and a way to get a fresh migrated database.
    """

    directory: Path
    cores: CoreLayout
    upstream: Process
    upstream_port: int
    database: Callable[[], str]


@attrs.define
class Running:
    """
    A started contender: its server process (whose RSS and CPU are
    watched), the port to load, the path prefix its route needs, a note
    for the report, and whether wrk is pinned away from the server's core
    while it loads it.
    """

    process: Process
    port: int
    stop: Callable[[], None]
    prefix: str = ""
    note: str = ""
    pin_load: bool = True
    #: Headers every request to it carries besides the echo header (a
    #: plugin stack's key), as C{(name, value)} pairs.
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Contender:
    """
    One server to measure.

    @ivar scenarios: the scenarios it takes part in (C{None}: all).
    @ivar python: whether it is a Python program (then it can run under
        PyPy too).
    @ivar echogate: whether it is echogate (then it needs a database).
    """

    name: str
    description: str
    start: Callable[[Bench, Runtime], Running]
    scenarios: tuple[str, ...] | None = None
    python: bool = True
    echogate: bool = False

    def takes_part(self, scenario: str) -> bool:
        return self.scenarios is None or scenario in self.scenarios


def _direct(bench: Bench, runtime: Runtime) -> Running:
    return Running(bench.upstream, bench.upstream_port, lambda: None)


def _nginx_proxy(bench: Bench, runtime: Runtime) -> Running:
    process, port = nginx.start_proxy(bench.directory, bench.upstream_port, bench.cores.proxy)
    return Running(process, port, process.stop)


def _script(name: str, *arguments: str) -> Callable[[Bench, Runtime], Running]:
    def start(bench: Bench, runtime: Runtime) -> Running:
        label = f"{name}-{runtime.name.lower()}"
        process = Process(label, [*runtime.launcher, str(runtime.python), str(HERE / f"{name}.py"), "--port", "0",
                                  "--backlog", str(BACKLOG),
                                  *[a.format(upstream=bench.upstream_port) for a in arguments]],
                          bench.directory / f"{label}.log", cpus=bench.cores.proxy)
        process.start()
        port = int(process.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        return Running(process, port, process.stop)

    return start


def _node(bench: Bench, runtime: Runtime, label: str, options: tuple[str, ...] = (),
          pinned: bool = True) -> EchogateNode:
    name = f"{label}-{runtime.name.lower()}"
    node = EchogateNode(name, runtime.bin_dir, bench.database(), bench.directory / name,
                        bench.cores.proxy if pinned else bench.cores.every, options=options,
                        launcher=runtime.launcher)
    node.start()
    node.add_service("bench", bench.upstream_port)
    return node


#: Twisted's Agent as the upstream client instead of echogate's own (the default).
AGENT = ("--upstream-client", "agent")
#: echogate's own upstream client, whatever the runtime's default.
LEAN = ("--upstream-client", "lean")


def _echogate(plugins: int, options: tuple[str, ...] = ()) -> Callable[[Bench, Runtime], Running]:
    """
    echogate with one route (C{/}) and up to C{plugins} bundled plugins on
    it, started with C{options}.
    """

    def start(bench: Bench, runtime: Runtime) -> Running:
        label = {0: "echogate", 1: "echogate-header-echo"}.get(plugins, f"echogate-{plugins}-plugins")
        if options:
            label += "-" + "-".join(o.lstrip("-") for o in options)
        node = _node(bench, runtime, label, options)
        route = node.add_route("bench", "bench", paths=["/"])
        node.wait_until_served(nginx.PATHS["small"])
        note = ""
        if plugins == 1:
            kept = node.add_plugins(route["id"], ["header-echo"], nginx.PATHS["small"], 1)
            if kept != ["header-echo"]:
                raise BenchError("header-echo is not available or does not let requests through")
        elif plugins:
            kept = node.add_plugins(route["id"], node.available_plugins(), nginx.PATHS["small"], plugins)
            note = f"{len(kept)} plugins: {', '.join(kept)}"
            if len(kept) < plugins:
                note += f" (only {len(kept)} bundled plugins let every request through)"
        return Running(node.process, node.proxy_port, node.stop, note=note)

    return start


def _echogate_workers(count: int) -> Callable[[Bench, Runtime], Running]:
    """
    echogate with C{--workers count}, one route, no plugins, on every core
    (not pinned, and neither is wrk while it loads it): the RSS and CPU
    reported are the whole process tree's.
    """

    def start(bench: Bench, runtime: Runtime) -> Running:
        node = _node(bench, runtime, f"echogate-workers-{count}", ("--workers", str(count)), pinned=False)
        node.process.tree = True
        node.add_route("bench", "bench", paths=["/"])
        node.process.wait_for_log(r"(?s)(echogate ready.*){%d}" % count, timeout=120)
        node.wait_until_served(nginx.PATHS["small"])
        return Running(node.process, node.proxy_port, node.stop, pin_load=False)

    return start


def _echogate_rate_limiting(policy: str) -> Callable[[Bench, Runtime], Running]:
    """
    echogate with one route and rate-limiting on it with a limit no run
    reaches, counting in C{policy}'s store (C{local}, C{cluster}: the
    node's PostgreSQL, C{redis}: a Redis server started for it).
    """

    def start(bench: Bench, runtime: Runtime) -> Running:
        node = _node(bench, runtime, f"echogate-ratelimit-{policy}")
        route = node.add_route("bench", "bench", paths=["/"])
        node.wait_until_served(nginx.PATHS["small"])
        fields = [("name", "rate-limiting"), ("config.second", "1000000000"), ("config.policy", policy)]
        stops = [node.stop]
        if policy == "redis":
            from tests.redisserver import RedisServer

            redis = RedisServer()
            redis.start()
            stops.insert(0, redis.stop)
            fields += [("config.redis_host", "127.0.0.1"), ("config.redis_port", str(redis.port))]
        node.api.post(f"/routes/{route['id']}/plugins", fields)
        node.wait_until_served(nginx.PATHS["small"])

        def stop() -> None:
            for step in stops:
                step()

        return Running(node.process, node.proxy_port, stop, note=f"rate-limiting, policy {policy}")

    return start


def _echogate_stack(stack: Stack) -> Callable[[Bench, Runtime], Running]:
    """
    echogate with one route and a plugin stack of L{bench.stack} on it,
    configured through the Admin API (the consumer, its key-auth key, each
    plugin's config as a JSON body); its requests carry the key.
    """

    def start(bench: Bench, runtime: Runtime) -> Running:
        node = _node(bench, runtime, f"echogate-{stack.name}")
        route = node.add_route("bench", "bench", paths=["/"])
        node.wait_until_served(nginx.PATHS["small"])
        add_stack(node, route["id"], stack)
        return Running(node.process, node.proxy_port, node.stop, note=f"plugins: {', '.join(stack.plugins)}",
                       headers=stack.headers)

    return start


def _echogate_routes(total: int) -> Callable[[Bench, Runtime], Running]:
    """
    echogate with C{total} routes: the one the requests match (C{/bench},
    strip_path), a last one added through the Admin API (C{/last}, to know
    when the node has loaded everything) and fillers the requests never
    match, written straight to the database (L{bench.routes}).
    """

    def start(bench: Bench, runtime: Runtime) -> Running:
        node = _node(bench, runtime, f"echogate-{total}-routes")
        service = node.api.call("GET", "/services/bench")
        node.add_route("bench", "bench", paths=["/bench"])
        node.add_filler_routes(service["id"], total)
        node.wait_until_served("/bench" + nginx.PATHS["small"])
        return Running(node.process, node.proxy_port, node.stop, prefix="/bench")

    return start


CONTENDERS: dict[str, Contender] = {c.name: c for c in (
    Contender("direct", "the upstream itself (nginx, no proxy)", _direct, python=False),
    Contender("nginx", "nginx proxy_pass, keep-alive pool of 100 upstream connections",
              _nginx_proxy, python=False),
    Contender("twisted-proxy", "twisted.web.proxy.ReverseProxyResource (HTTP/1.0, a connection "
              "per request)", _script("reverse_proxy", "--upstream-port", "{upstream}")),
    Contender("agent-proxy", "minimal Agent proxy, persistent pool of 100, an endpoint per request",
              _script("agent_proxy", "--upstream-port", "{upstream}")),
    Contender("agent-proxy-cached", "minimal Agent proxy, persistent pool of 100, one cached endpoint",
              _script("agent_proxy", "--upstream-port", "{upstream}", "--cached-endpoint")),
    Contender("lean-proxy", "minimal twisted.web proxy on echogate's lean client (no routing, no plugins)",
              _script("lean_proxy", "--upstream-port", "{upstream}")),
    Contender("hello", "bare twisted.web resource answering from memory (the ceiling)",
              _script("hello")),
    Contender("raw-hello", "a bare Twisted Protocol answering from memory on echogate's reactor, no twisted.web "
              "(the ceiling of any Twisted server)", _script("raw_hello")),
    Contender("raw-proxy", "bare Twisted Protocols proxying each head to a kept-alive upstream connection on "
              "echogate's reactor and write batching, no twisted.web, nothing checked (the floor of a Python proxy "
              "on Twisted)", _script("raw_proxy", "--upstream-port", "{upstream}")),
    Contender("echogate", "echogate, one route, no plugins", _echogate(0), echogate=True),
    Contender("echogate-header-echo", "echogate, one route, header-echo", _echogate(1), echogate=True),
    Contender("echogate-5-plugins", "echogate, one route, five bundled plugins", _echogate(5),
              echogate=True),
    Contender("echogate-agent", "echogate, one route, no plugins, upstream_client=agent",
              _echogate(0, AGENT), echogate=True),
    Contender("echogate-agent-header-echo", "echogate, one route, header-echo, upstream_client=agent",
              _echogate(1, AGENT), echogate=True),
    Contender("echogate-lean", "echogate, one route, no plugins, upstream_client=lean",
              _echogate(0, LEAN), echogate=True),
    Contender("echogate-twisted-reactor", "echogate, one route, no plugins, reactor=twisted (Twisted's epoll "
              "reactor, a log context per ready connection)", _echogate(0, ("--reactor", "twisted")),
              echogate=True),
    Contender("echogate-workers-1", "echogate --workers 1, one route, no plugins, not pinned",
              _echogate_workers(1), scenarios=("small-50", "small-500"), echogate=True),
    Contender("echogate-workers-2", "echogate --workers 2, one route, no plugins, not pinned",
              _echogate_workers(2), scenarios=("small-50", "small-500"), echogate=True),
    Contender("echogate-ratelimit-local", "echogate, one route, rate-limiting (local policy)",
              _echogate_rate_limiting("local"), scenarios=("small-50",), echogate=True),
    Contender("echogate-ratelimit-cluster", "echogate, one route, rate-limiting (cluster policy: PostgreSQL)",
              _echogate_rate_limiting("cluster"), scenarios=("small-50",), echogate=True),
    Contender("echogate-ratelimit-redis", "echogate, one route, rate-limiting (redis policy)",
              _echogate_rate_limiting("redis"), scenarios=("small-50",), echogate=True),
    Contender("echogate-realistic", "echogate, one route, the realistic stack (key-auth, rate-limiting, "
              "prometheus, correlation-id, request-transformer)", _echogate_stack(REALISTIC),
              scenarios=("small-50", "small-500"), echogate=True),
    Contender("echogate-10-routes", "echogate, 10 routes, no plugins", _echogate_routes(10),
              scenarios=("small-50",), echogate=True),
    Contender("echogate-10000-routes", "echogate, 10,000 routes, no plugins",
              _echogate_routes(10_000), scenarios=("small-50",), echogate=True),
)}

#: What runs unless C{--contenders} says otherwise.
DEFAULT_CONTENDERS = ("direct", "nginx", "twisted-proxy", "agent-proxy", "lean-proxy", "hello", "echogate",
                      "echogate-header-echo", "echogate-5-plugins", "echogate-agent", "echogate-agent-header-echo",
                      "echogate-workers-1", "echogate-workers-2", "echogate-ratelimit-local",
                      "echogate-ratelimit-cluster", "echogate-ratelimit-redis", "echogate-realistic",
                      "echogate-10-routes",
                      "echogate-10000-routes")

#: The contenders that also run under PyPy when it is there.
PYPY_CONTENDERS = ("twisted-proxy", "agent-proxy", "lean-proxy", "hello", "raw-hello", "raw-proxy", "echogate",
                   "echogate-header-echo", "echogate-agent", "echogate-lean", "echogate-realistic")


def describe_runtime(runtime: Runtime) -> str:
    out = subprocess.run([*runtime.launcher, str(runtime.python), "-c",
                          "import sys, twisted; print(sys.version.split()[0], 'Twisted', twisted.__version__)"],
                         capture_output=True, text=True)
    return f"{runtime.name} {out.stdout.strip()}"

