"""
The cost of echogate's data path per request, in microseconds, without
sockets: one node's real parts (L{GatewaySite}, L{Gateway}, the plugins,
L{LeanUpstreamClient}) in one process, the client and the upstream played
by in-memory transports, on a L{Clock}. What it leaves out (system calls,
the reactor's polling, the load generator and nginx) is the same for every
version of echogate, so the figure moves only with echogate's own work,
and far less noisily than a load test: use it to A/B a change of a few per
cent, then confirm with C{bench/compare.py}.

Run: C{.venv/bin/python bench/path_cost.py [--plugins header-echo]
[--requests 20000] [--repeats 7] [--warmup 2000] [--cpu] [--base REV]}.
With C{--base}, the same measurement runs alternately in a git worktree
of C{REV} and this tree, and the ratio of the best runs is printed (base /
this tree: above 1 means this tree is cheaper). C{--cpu} times with the
process's CPU time, which other processes on a shared core leave alone.

Under PyPy (the bench's Debian root, see C{bench/pypy.py}): C{bench/in_root.sh
ROOT VENV/bin/pypy3 bench/path_cost.py --warmup 60000 --cpu}, the JIT
warmed first; C{PYTHONPATH=TREE} runs another copy of echogate. It does
not see everything a node does: the JIT traces a node's reads from the
reactor's loop, and a trace that fails there (see docs/performance.md,
round 2, PyPy) may compile here.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

REQUEST = b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Request-Echo: bench\r\n\r\n"  # as wrk sends
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 02:00:00 GMT\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
            + b"x" * 100)


#: Requests before the first measurement, by default.
WARMUP = 2000


def measure(plugins: list[str], requests: int, repeats: int, warmup: int = WARMUP,
            timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """
    Microseconds per request for each of C{repeats} runs of C{requests}
    requests on one kept-alive client connection, after C{warmup}
    requests (on PyPy, give its JIT some 50,000), timed by C{timer}.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from echogate.proxy.gateway import Gateway, GatewayResource
    from echogate.proxy.site import GatewaySite
    from echogate.proxy.snapshot import Snapshot  # noqa: F811
    from echogate.registry import load_plugins
    from echogate.store.data import ConfigurationData
    from echogate.upstream.connection import HTTP11Connection
    from echogate.upstream.lean import LeanUpstreamClient

    available = load_plugins(",".join(plugins) or "bundled")
    service = {"id": "s", "name": "bench", "protocol": "http", "host": "127.0.0.1", "port": 9000, "path": None,
               "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
               "enabled": True}
    route = {"id": "r", "name": "bench", "protocols": ["http", "https"], "methods": None, "hosts": None,
             "paths": ["/"], "headers": None, "strip_path": False, "preserve_host": False, "regex_priority": 0,
             "service": {"id": "s"}, "path_handling": "v0"}
    records = tuple({"id": f"p{i}", "name": name, "config": available[name].config_schema.validate({}),
                     "enabled": True, "route": {"id": "r"}, "service": None, "consumer": None}
                    for i, name in enumerate(plugins))
    data = ConfigurationData(version=1, services=(service,), routes=(route,), plugins=records)
    snapshot = Snapshot.build(data, {name: available[name] for name in plugins})
    clock = Clock()
    client = LeanUpstreamClient(clock)
    gateway = Gateway(clock=clock, snapshot=lambda: snapshot, upstream=client)
    site = GatewaySite(GatewayResource(gateway), reactor=clock)
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    down = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    channel.makeConnection(down)
    conn = HTTP11Connection(client, ("127.0.0.1", 9000))
    up = StringTransport()
    conn.makeConnection(up)
    client._release(conn)

    def one() -> None:
        channel.dataReceived(REQUEST)
        conn.dataReceived(RESPONSE)

    for _ in range(warmup):  # warm up, and check that it proxies
        one()
    answer = down.value()
    if not answer.startswith(b"HTTP/1.1 200") or not answer.endswith(b"x" * 100) or client.idle_count(
            "127.0.0.1", 9000) != 1:
        raise SystemExit(f"the path does not proxy: {answer[:300]!r}")
    if "header-echo" in plugins and b"X-Response-Echo: bench" not in answer:
        raise SystemExit("header-echo does not echo")
    results = []
    gc.collect()
    if hasattr(gc, "freeze"):  # not on PyPy
        gc.freeze()
    for _ in range(repeats):
        down.clear()
        up.clear()
        start = timer()
        for _ in range(requests):
            one()
        results.append((timer() - start) / requests * 1e6)
    return results


def _worktree(revision: str, directory: Path) -> Path:
    tree = directory / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
                   check=True, capture_output=True)
    return tree


def _run_in(tree: Path, arguments: argparse.Namespace) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    script = tree / "bench" / "path_cost.py"
    out = subprocess.run([sys.executable, str(script) if script.exists() else __file__, "--json",
                          "--plugins", arguments.plugins, "--requests", str(arguments.requests),
                          "--repeats", str(arguments.repeats),
                          *(["--warmup", str(arguments.warmup)] if arguments.warmup != WARMUP else []),
                          *(["--cpu"] if arguments.cpu else [])],
                         env=env, cwd=str(tree), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--plugins", default="", help="comma-separated plugins on the route")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="requests before the first measurement")
    parser.add_argument("--cpu", action="store_true",
                        help="time with the process's CPU time (time.process_time) rather than the wall clock: "
                        "time the process waits for a core shared with others does not count")
    parser.add_argument("--rounds", type=int, default=4, help="with --base: alternations")
    parser.add_argument("--base", help="a git revision to compare against")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    plugins = [n for n in arguments.plugins.split(",") if n]
    if arguments.json:
        print(json.dumps(measure(plugins, arguments.requests, arguments.repeats, arguments.warmup,
                                 time.process_time if arguments.cpu else time.perf_counter)))
        return
    if not arguments.base:
        figures = measure(plugins, arguments.requests, arguments.repeats, arguments.warmup,
                          time.process_time if arguments.cpu else time.perf_counter)
        print(f"{statistics.median(figures):.2f} us per request (median of {len(figures)}; "
              f"min {min(figures):.2f}, max {max(figures):.2f})")
        return
    with tempfile.TemporaryDirectory(prefix="echogate-path-cost-") as directory:
        base = _worktree(arguments.base, Path(directory))
        try:
            ours: list[float] = []
            theirs: list[float] = []
            for round_ in range(arguments.rounds):
                theirs += _run_in(base, arguments)
                ours += _run_in(ROOT, arguments)
                print(f"round {round_ + 1}: base {min(theirs):.2f} us, this tree {min(ours):.2f} us (best so far)")
            # The best of many runs: what other work on the machine adds
            # only ever makes a run slower (as timeit reports).
            print(f"base {arguments.base} / this tree: {min(theirs) / min(ours):.3f} (best runs; medians "
                  f"{statistics.median(theirs):.2f} / {statistics.median(ours):.2f} us)")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           capture_output=True)


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, os.environ.get("PYTHONPATH") or str(ROOT))
    main()
