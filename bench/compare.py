"""
A/B one echogate change: a node running this tree's echogate against a
node running another revision's (checked out with C{git worktree}), in
one invocation, on the same upstream and PostgreSQL, loaded in
alternating rounds so that the machine's other work hits both sides.

Run: C{.venv/bin/python bench/compare.py [--base HEAD~1] [--plugins
header-echo] [--rounds 3] [--seconds 8] [--connections 50] [--path /100b]}.
Prints each round's req/s and the ratio of this tree to the base (the
median of the per-round ratios). Each node is pinned to the server core,
one at a time; wrk, nginx and PostgreSQL run on the other cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx, report
from bench.gateway import ECHO_HEADER, EchogateNode
from bench.loadgen import Load, LoadResult, run_load
from bench.processes import CoreLayout

REPO = Path(__file__).resolve().parent.parent


def _worktree(revision: str, directory: Path) -> Path:
    path = directory / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), revision],
                   check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare against (git)")
    parser.add_argument("--plugins", default="", help="comma-separated plugins to put on the route")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--path", default=nginx.PATHS["small"])
    arguments = parser.parse_args()
    from tests.postgres import TemporaryServer, create_database

    cores = CoreLayout.detect()
    cores.pin_self()
    directory = Path(tempfile.mkdtemp(prefix="echogate-compare-"))
    directory.chmod(0o755)
    base_tree = _worktree(arguments.base, directory)
    upstream, port = nginx.start_upstream(directory, cores.other)
    server = TemporaryServer()
    nodes: dict[str, EchogateNode] = {}
    try:
        server.start()
        # The base node imports echogate from its worktree first.
        base_env = {**os.environ, "PYTHONPATH": str(base_tree)}
        for name, env in (("this tree", None), (f"base {arguments.base}", base_env)):
            node = EchogateNode(name.replace(" ", "-").replace("~", "-"), Path(sys.executable).parent,
                                create_database(True, server=server), directory / f"node{len(nodes)}",
                                cores.proxy, env=env)
            nodes[name] = node.start()
            node.add_service("bench", port)
            route = node.add_route("bench", "bench", paths=["/"])
            node.wait_until_served(nginx.PATHS["small"])
            plugins = [p for p in arguments.plugins.split(",") if p]
            if plugins and node.add_plugins(route["id"], plugins, nginx.PATHS["small"], len(plugins)) != plugins:
                raise SystemExit(f"could not add every plugin of {plugins}")
        results: dict[str, list[LoadResult]] = {name: [] for name in nodes}
        for number in range(arguments.rounds):
            for name, node in nodes.items():
                load = Load(f"http://127.0.0.1:{node.proxy_port}{arguments.path}", arguments.connections,
                            arguments.seconds, headers=(f"{ECHO_HEADER[0]}: {ECHO_HEADER[1]}",))
                run_load(Load(load.url, load.connections, 2, headers=load.headers), None, cores.other)
                result = run_load(load, node.process, cores.other)
                results[name].append(result)
                rate = result.rps
                errors = sum(result.errors.values())
                print(f"round {number + 1}  {name:>16}: {rate:9,.0f} req/s  p99 {result.p99_ms:6.1f} ms"
                      + (f"  ({errors} errors)" if errors else ""), flush=True)
        ours, base = (report.summarize(runs) for runs in results.values())
        value, each = report.ratio(ours, base)
        print(f"\nthis tree / base {arguments.base}: {value:.3f} (rounds: {', '.join(f'{r:.3f}' for r in each)}); "
              f"medians {ours.rps:,.0f} / {base.rps:,.0f} req/s")
    finally:
        for node in nodes.values():
            node.stop()
        server.stop()
        upstream.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)


if __name__ == "__main__":
    main()
