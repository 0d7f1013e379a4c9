"""
The proxy's latency while configuration changes land on a node with many
routes: every admin write makes the node reload and recompile its whole
configuration, and requests meanwhile wait for the interpreter.

One echogate node (pinned like the benchmark's) with C{--routes} routes
serves wrk (50 connections, 100-byte answers) for C{--seconds}, once
without changes and once while C{--writes} routes are created through its
Admin API, C{--interval} seconds apart. Prints req/s, p50, p99 and the
worst latency of each, and how long the admin writes took (fastest, slowest, median).

Run: C{.venv/bin/python bench/reload_stall.py [--routes 10000] [--writes 8]}
(it starts its own upstream and PostgreSQL, and stops them).
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.8)
    parser.add_argument("--seconds", type=int, default=10)
    arguments = parser.parse_args()
    if arguments.writes * arguments.interval + 1 > arguments.seconds:
        parser.error("the writes must fit in the load: writes x interval + 1 s <= seconds")
    from tests.postgres import TemporaryServer, create_database

    cores = CoreLayout.detect()
    cores.pin_self()
    directory = Path(tempfile.mkdtemp(prefix="echogate-reload-stall-"))
    directory.chmod(0o755)
    upstream, port = nginx.start_upstream(directory, cores.other)
    server = TemporaryServer()
    node = None
    try:
        server.start()
        node = EchogateNode("reload-stall", Path(sys.executable).parent, create_database(True, server=server),
                            directory / "node", cores.proxy)
        node.start()
        service = node.add_service("bench", port)
        node.add_route("bench", "bench", paths=["/"])
        node.add_filler_routes(service["id"], arguments.routes)
        url = f"http://127.0.0.1:{node.proxy_port}{nginx.PATHS['small']}"
        run_load(Load(url, 50, 3), node.process, cores.other)  # warm-up
        for writes in (0, arguments.writes):
            results: list[LoadResult] = []
            loader = threading.Thread(target=lambda results=results: results.append(
                run_load(Load(url, 50, arguments.seconds), node.process, cores.other)))
            loader.start()
            time.sleep(1)
            took = []
            for i in range(writes):
                started = time.monotonic()
                node.add_route("bench", f"change-{i}", paths=[f"/change/{i}"])
                took.append(time.monotonic() - started)
                time.sleep(arguments.interval)
            loader.join()
            result = results[0]
            print(f"{arguments.routes} routes, {writes} writes: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                  f"p99 {result.p99_ms:.1f} ms, worst {result.max_ms:.1f} ms"
                  + (f"; admin writes {1000 * min(took):.0f}-{1000 * max(took):.0f} ms"
                     f" (median {1000 * statistics.median(took):.0f})" if took else ""),
                  flush=True)
    finally:
        if node is not None:
            node.stop()
        server.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
