"""
The proxy's latency while configuration changes land on a node with many
routes: every admin write makes the node reload its configuration and
compile the next snapshot, and requests meanwhile must not wait.

One echogate node (pinned like the benchmark's) with C{--routes} routes
serves wrk (50 connections, 100-byte answers) for C{--seconds}, once
without changes and once while C{--writes} routes are created through its
Admin API, C{--interval} seconds apart; C{--rounds} such pairs, one after
the other. Prints req/s, p50, p99 and the worst latency of each run, how
long the admin writes took (fastest, slowest, median), and the figure of
issue 25's target: the worst latency under changes less the p99 without
them (the target: at most 10 ms).

C{--configs} gives every filler route a rate-limiting config and adds a
consumer with a key-auth key for each (10,000 routes: 10,000 plugin
configs and 10,000 consumers), which the node's plugin and credential
indexes hold. With C{--configs}, C{--writes-of keys} makes each write add
a key-auth key to one of those consumers (through
C{/consumers/{username}/key-auth}) instead of a route: what rebuilds the
credential index (L{echogate.pdk.credentials.CredentialIndex.building}).

C{--node-path DIR} puts DIR first on the node's C{PYTHONPATH}, to measure
another checkout (C{git archive COMMIT | tar -x -C DIR}) with the same
script. C{--probe} also prints, for each run, the longest the node's
reactor thread was held between two ticks of a 1 ms probe, in CPU time
(C{bench/reactor_probe}): on a shared machine, where other processes
stretch wrk's latencies, this is the node's own part.

Run: C{.venv/bin/python bench/reload_stall.py [--routes 10000] [--writes 8] [--rounds 1]}
(it starts its own upstream and PostgreSQL, and stops them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx
from bench.gateway import EchogateNode
from bench.loadgen import Load, LoadResult, run_load
from bench.processes import CoreLayout

PROBE = Path(__file__).resolve().parent / "reactor_probe"


def longest_hold(lines: str, start: float, end: float) -> float:
    """
    The longest CPU time (ms) the probe's C{lines} (C{WALL GAP-MS CPU-MS})
    report between C{start} and C{end} (wall-clock seconds); 0.0 for none.
    """
    held = [float(cpu) for wall, _, cpu in (line.split() for line in lines.splitlines() if line.strip())
            if start <= float(wall) <= end]
    return max(held, default=0.0)


def write(node: EchogateNode, n: int, kind: str) -> None:
    """
    The C{n}th write: a route, or a key-auth key of one of the consumers
    C{--configs} added (C{filler-N}, as L{bench.routes} names them).
    """
    if kind == "keys":
        node.api.post(f"/consumers/filler-{n}/key-auth", [("key", f"change-key-{n}")])
    else:
        node.add_route("bench", f"change-{n}", paths=[f"/change/{n}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.8)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--node-path", default=None, help="put this directory first on the node's PYTHONPATH")
    parser.add_argument("--probe", action="store_true", help="measure the reactor thread's longest hold too")
    parser.add_argument("--configs", action="store_true",
                        help="a plugin config on every filler route, and as many consumers with a key-auth key")
    parser.add_argument("--writes-of", choices=("routes", "keys"), default="routes",
                        help="what each write adds: a route, or (with --configs) a key-auth key")
    arguments = parser.parse_args()
    if arguments.writes_of == "keys" and not (
            arguments.configs and arguments.routes - 2 >= arguments.writes * arguments.rounds):
        parser.error("--writes-of keys needs --configs, and a filler consumer for each write")
    if arguments.writes * arguments.interval + 1 > arguments.seconds:
        parser.error("the writes must fit in the load: writes x interval + 1 s <= seconds")
    if not 1 <= arguments.rounds <= 10 or not 1 <= arguments.seconds <= 60:
        parser.error("--rounds from 1 to 10, --seconds from 1 to 60")
    from tests.postgres import TemporaryServer, create_database

    cores = CoreLayout.detect()
    cores.pin_self()
    directory = Path(tempfile.mkdtemp(prefix="echogate-reload-stall-"))
    directory.chmod(0o755)
    env = None
    probe = directory / "probe.txt"
    if arguments.node_path is not None or arguments.probe:
        path = [str(Path(arguments.node_path).resolve())] if arguments.node_path is not None else []
        path += [str(PROBE)] if arguments.probe else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        if arguments.probe:
            env["ECHOGATE_BENCH_PROBE"] = str(probe)
    upstream, port = nginx.start_upstream(directory, cores.other)
    server = TemporaryServer()
    node = None
    excess: list[float] = []
    try:
        server.start()
        node = EchogateNode("reload-stall", Path(sys.executable).parent, create_database(True, server=server),
                            directory / "node", cores.proxy, env=env)
        node.start()
        service = node.add_service("bench", port)
        node.add_route("bench", "bench", paths=["/"])
        node.add_filler_routes(service["id"], arguments.routes, configs=arguments.configs)
        url = f"http://127.0.0.1:{node.proxy_port}{nginx.PATHS['small']}"
        run_load(Load(url, 50, 3), node.process, cores.other)  # warm-up
        written = 0
        for _ in range(arguments.rounds):
            idle_p99 = 0.0
            for writes in (0, arguments.writes):
                results: list[LoadResult] = []
                loader = threading.Thread(target=lambda results=results: results.append(
                    run_load(Load(url, 50, arguments.seconds), node.process, cores.other)))
                started_at = time.time()
                loader.start()
                time.sleep(1)
                took = []
                for _ in range(writes):
                    started = time.monotonic()
                    write(node, written, arguments.writes_of)
                    written += 1
                    took.append(time.monotonic() - started)
                    time.sleep(arguments.interval)
                loader.join()
                result = results[0]
                what = f" of {arguments.writes_of}" if writes else ""
                line = (f"{arguments.routes} routes, {writes} writes{what}: {result.rps:,.0f} req/s, "
                        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, worst {result.max_ms:.1f} ms")
                if arguments.probe:
                    held = longest_hold(probe.read_text() if probe.exists() else "", started_at, time.time())
                    line += f", reactor held {held:.1f} ms of CPU at most"
                if writes:
                    excess.append(result.max_ms - idle_p99)
                    line += (f"; admin writes {1000 * min(took):.0f}-{1000 * max(took):.0f} ms"
                             f" (median {1000 * statistics.median(took):.0f});"
                             f" worst under writes - p99 without: {excess[-1]:.1f} ms")
                else:
                    idle_p99 = result.p99_ms
                print(line, flush=True)
        if excess:
            print(f"worst under writes - p99 without, by round: {', '.join(f'{e:.1f}' for e in excess)} ms"
                  f" (median {statistics.median(excess):.1f}; target <= 10)", flush=True)
    finally:
        if node is not None:
            node.stop()
        server.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
