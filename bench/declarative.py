"""
What a declarative file of many routes costs: loading it in memory (what a
DB-less node does: C{declarative.load}, then the L{Snapshot} build), and
C{echogate config sync} of a change of one route into a database that
already holds the file.

The file has one service and C{--routes} routes (each a name and a path).
The in-memory load runs C{--rounds} times in this process (the fastest and
the median are printed, each phase apart). The syncs run the console
script as an operator does (its own process: start-up, plugin discovery,
the file's load, the database's load, the plan, one transaction), on a
PostgreSQL server of its own: the first sync (every route created), a
C{diff} that finds nothing, then C{--rounds} syncs that each change one
route's path. Every process is bounded by C{--timeout} seconds.

Run: C{.venv/bin/python bench/declarative.py [--routes 10000] [--rounds 3]}
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def routes_file(routes: int, changed: int | None = None, round: int = 0) -> str:
    """
    The declarative file: one service and C{routes} routes; route
    C{changed} (if any) with a path of its own for C{round}.
    """
    lines = ['_format_version: "3.0"', "services:", "- name: bench", "  url: http://127.0.0.1:9/",
             "  routes:"]
    for i in range(routes):
        path = f"/changed/{round}" if i == changed else f"/route/{i}"
        lines += [f"  - name: route-{i}", f"    paths: [{path}]"]
    return "\n".join(lines) + "\n"


def load_in_memory(text: str, plugins: Any) -> tuple[float, float]:
    """
    Seconds to load C{text} and to build its snapshot.
    """
    from echogate import declarative
    from echogate.proxy.snapshot import Snapshot

    started = time.perf_counter()
    loaded = declarative.load(text, plugins)
    parsed = time.perf_counter()
    Snapshot.build(loaded.configuration_data(), plugins)
    return parsed - started, time.perf_counter() - parsed


def command(timeout: float, *argv: str) -> tuple[float, str]:
    """
    Run C{echogate *argv} in its own process; its wall time and output.
    """
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "echogate.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"echogate {' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.stdout


def summary(values: list[float]) -> str:
    return f"fastest {min(values):.2f} s, median {statistics.median(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    arguments = parser.parse_args()
    from echogate.registry import load_plugins
    from tests.postgres import TemporaryServer, create_database

    plugins = load_plugins("bundled")
    text = routes_file(arguments.routes)
    print(f"{arguments.routes} routes, {len(text) / 1e6:.1f} MB of YAML")
    loads, builds = [], []
    for _ in range(arguments.rounds):
        load, build = load_in_memory(text, plugins)
        loads.append(load)
        builds.append(build)
    totals = [a + b for a, b in zip(loads, builds)]
    print(f"in memory: declarative.load {summary(loads)}; Snapshot.build {summary(builds)};"
          f" both {summary(totals)}")

    directory = Path(tempfile.mkdtemp(prefix="echogate-declarative-"))
    server = TemporaryServer()
    try:
        server.start()
        dsn = create_database(True, server=server)
        path = directory / "kong.yml"
        path.write_text(text)
        took, out = command(arguments.timeout, "config", "sync", str(path), "--database", dsn)
        print(f"first sync: {took:.2f} s ({out.strip().splitlines()[-1]})")
        took, out = command(arguments.timeout, "config", "diff", str(path), "--database", dsn)
        print(f"diff, nothing changed: {took:.2f} s ({out.strip().splitlines()[-1]})")
        syncs = []
        for round in range(arguments.rounds):
            path.write_text(routes_file(arguments.routes, changed=arguments.routes // 2, round=round))
            took, out = command(arguments.timeout, "config", "sync", str(path), "--database", dsn)
            syncs.append(took)
            lines = out.strip().splitlines()
            if lines[-1] != "Summary: created 0, updated 1, deleted 0":
                raise SystemExit(f"unexpected sync: {out}")
        print(f"sync of one changed route: {summary(syncs)} ({lines[0]})")
    finally:
        server.stop()
        server.remove()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
