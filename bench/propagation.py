"""
Multi-node propagation latency (issue 4): two echogate nodes share one
PostgreSQL server; node B is kept busy by wrk while routes are created
one by one through node A's Admin API, and for each we measure how long
until node B's proxy serves it (polling B).

Run by itself: C{.venv/bin/python bench/propagation.py [--changes 50]}
(it starts its own upstream and PostgreSQL); C{bench/run.py} runs it too.
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from bench import nginx
from bench.gateway import EchogateNode
from bench.loadgen import wrk_binary
from bench.processes import BenchError, CoreLayout, Process

__all__ = ["Propagation", "measure", "markdown"]

_LOAD = "/bench" + nginx.PATHS["small"]


@attrs.frozen
class Propagation:
    """
    What L{measure} found, in milliseconds.

    @ivar write_ms: node A's Admin API answer time for each change.
    @ivar seen_ms: from node A's answer until node B served the new
        route, for each change that B served in time.
    @ivar missed: changes B did not serve within the time allowed.
    @ivar load: node B's throughput under wrk meanwhile (req/s), or
        C{None} when wrk printed no summary.
    """

    changes: int
    write_ms: tuple[float, ...]
    seen_ms: tuple[float, ...]
    missed: int
    load_connections: int
    load: float | None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _served(connection: http.client.HTTPConnection, path: str) -> bool:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status == 200


def _poll(port: int, path: str, deadline: float) -> float | None:
    """
    Ask node B for C{path} until it answers 200 (the time then) or the
    deadline passes (C{None}).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while time.monotonic() < deadline:
            try:
                if _served(connection, path):
                    return time.monotonic()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return None
    finally:
        connection.close()


def measure(directory: Path, cores: CoreLayout, upstream_port: int, dsn: str, bin_dir: Path,
            changes: int = 50, connections: int = 50, max_wait: float = 30.0) -> Propagation:
    """
    Start nodes A (beside the load generator) and B (on the server core)
    on C{dsn}, load B with wrk, make C{changes} route changes through A,
    and time each until B serves it. Stops everything it started.
    """
    if wrk_binary() is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    a = EchogateNode("node-a", bin_dir, dsn, directory / "node-a", cores.other)
    b = EchogateNode("node-b", bin_dir, dsn, directory / "node-b", cores.proxy)
    load: Process | None = None
    try:
        a.start()
        b.start()
        a.add_service("bench", upstream_port)
        a.add_route("bench", "bench", paths=["/bench"])
        b.wait_until_served(_LOAD)
        bound = changes * (max_wait + 5) + 60
        load = Process("propagation-wrk", [
            str(wrk_binary()), "-t", "1", "-c", str(connections), "-d", f"{bound:.0f}s", "-s",
            str(Path(__file__).with_name("wrk.lua")), f"http://127.0.0.1:{b.proxy_port}{_LOAD}"],
            directory / "propagation-wrk.log", cpus=cores.other, stop_signal=signal.SIGINT)
        load.start()
        time.sleep(1.0)
        writes, seen, missed = [], [], 0
        for n in range(changes):
            started = time.monotonic()
            a.add_route("bench", f"change-{n}", paths=[f"/change/{n}"])
            written = time.monotonic()
            writes.append((written - started) * 1000)
            served = _poll(b.proxy_port, f"/change/{n}" + nginx.PATHS["small"], written + max_wait)
            if served is None:
                missed += 1
            else:
                seen.append((served - written) * 1000)
        load.stop()
        return Propagation(changes, tuple(writes), tuple(seen), missed, connections, _load_rps(load))
    finally:
        if load is not None:
            load.stop()
        b.stop()
        a.stop()


def _load_rps(load: Process) -> float | None:
    for line in load.log_tail(100_000).splitlines():
        if line.startswith("BENCH-RESULT "):
            data = json.loads(line.split(" ", 1)[1])
            return data["requests"] / (data["duration_us"] / 1e6)
    return None


def markdown(result: Propagation) -> str:
    """
    The report's section: median, 90th percentile and worst.
    """
    def row(name: str, values: tuple[float, ...]) -> str:
        if not values:
            return f"| {name} | – | – | – |"
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        return f"| {name} | {statistics.median(values):.1f} | {p90:.1f} | {max(values):.1f} |"

    load = f"{result.load:,.0f} req/s" if result.load is not None else "unknown"
    lines = [
        f"{result.changes} routes created one by one through node A's Admin API while node B served "
        f"{load} (wrk, {result.load_connections} connections); node B polled until it served each."
        + (f" **{result.missed} not served within the time allowed.**" if result.missed else ""),
        "",
        "| ms | median | p90 | worst |",
        "|---|---:|---:|---:|",
        row("node A's Admin API answer (POST /services/bench/routes)", result.write_ms),
        row("from node A's answer until node B serves the route", result.seen_ms),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="routes to create (default 50)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections on node B")
    arguments = parser.parse_args()
    from tests.postgres import TemporaryServer, create_database

    cores = CoreLayout.detect()
    cores.pin_self()
    directory = Path(tempfile.mkdtemp(prefix="echogate-propagation-"))
    upstream, port = nginx.start_upstream(directory, cores.other)
    server = TemporaryServer()
    try:
        server.start()
        result = measure(directory, cores, port, create_database(True, server=server),
                         Path(sys.executable).parent, arguments.changes, arguments.connections)
        print(markdown(result))
    finally:
        upstream.stop()
        server.remove()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
