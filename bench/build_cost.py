"""
What a configuration change costs a node to compile, with many routes: one
process builds the snapshot (L{echogate.proxy.snapshot.Snapshot.build}) of a
table of C{--routes} routes after one change (a route added, a route
changed, the first route deleted), once from scratch and once from the
snapshot it replaces (as a running node does), alternately, and prints
the median milliseconds of each and their ratio. The heap is settled
first as a node's is (a full collection, then frozen, and the collector's
young threshold raised to the default C{gc_young_threshold}).

It also prints, for the build from the previous snapshot, the longest
step of L{Snapshot.building} (what one slice of a node's compile may
overrun by) and how long freeing the snapshot it replaces takes at once
(what L{echogate.heap.ReleaseInSlices} spreads over slices), both in CPU
time, medians.

With C{--configs}, every route has a plugin config (rate-limiting) and
there are as many consumers, each with a key-auth key; the changes then
include a config changed, a key added, a key changed and a consumer
added with a key (what the plugin and credential indexes cost:
L{echogate.proxy.reusing}; a store lists records by creation, so what is
added comes last, and the credential index extends the previous one's
tables, while a key changed in the middle has its table indexed anew).

Run: C{.venv/bin/python bench/build_cost.py [--routes 10000] [--repeats 7] [--configs]}.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.routes import filler_body
from echogate.entities import writes
from echogate.heap import young_threshold
from echogate.proxy.snapshot import Snapshot
from echogate.registry import load_plugins
from echogate.settings import DEFAULTS
from echogate.store.data import ConfigurationData

__all__ = ["measure"]


def _records(count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    now = 1_700_000_000
    service_id = str(uuid.uuid4())
    service = writes.prepare_insert("services", {"name": "bench", "url": "http://127.0.0.1:1/"},
                                    plugins={}, now=now, new_id=service_id)
    routes = [writes.prepare_insert("routes", filler_body(n, service_id), plugins={}, now=now + n,
                                    new_id=str(uuid.uuid4())) for n in range(count)]
    return service, routes


def _configs(routes: list[dict[str, Any]], plugins: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], ...]]:
    """
    A rate-limiting config on each route, and a consumer with a key-auth
    key for each.
    """
    now = 1_700_000_000
    configs = tuple(writes.prepare_insert("plugins", {"name": "rate-limiting", "config": {"second": 100},
                                                      "route": {"id": r["id"]}}, plugins=plugins, now=now,
                                          new_id=str(uuid.uuid4())) for r in routes)
    consumers = tuple(writes.prepare_insert("consumers", {"username": f"u{n}"}, plugins={}, now=now,
                                            new_id=str(uuid.uuid4())) for n in range(len(routes)))
    keys = tuple({"id": str(uuid.uuid4()), "consumer": {"id": c["id"]}, "key": f"key-{n}", "created_at": now,
                  "tags": None, "ttl": None} for n, c in enumerate(consumers))
    return {"plugins": configs, "consumers": consumers, "keyauth_credentials": keys}


def _changes(service: dict[str, Any], routes: list[dict[str, Any]],
             extra: Mapping[str, tuple[dict[str, Any], ...]]) -> dict[str, ConfigurationData]:
    count = len(routes)
    added = writes.prepare_insert("routes", filler_body(count, service["id"]), plugins={},
                                  now=1_700_000_000 + count, new_id=str(uuid.uuid4()))
    middle = count // 2
    changed = dict(routes[middle], paths=[f"/changed/{middle}"])
    tables = {
        "a route added": routes + [added],
        "a route changed": routes[:middle] + [changed] + routes[middle + 1:],
        "the first route deleted": routes[1:],
    }
    changes = {what: ConfigurationData(version=2, services=(service,), routes=tuple(table), **extra)
               for what, table in tables.items()}
    if extra:
        configs, keys = extra["plugins"], extra["keyauth_credentials"]
        middle_config = dict(configs[middle], config=dict(configs[middle]["config"], second=5))
        changes["a plugin config changed"] = ConfigurationData(
            version=2, services=(service,), routes=tuple(routes),
            **dict(extra, plugins=configs[:middle] + (middle_config,) + configs[middle + 1:]))
        changes["a key added"] = ConfigurationData(
            version=2, services=(service,), routes=tuple(routes),
            **dict(extra, keyauth_credentials=keys + (dict(keys[0], id=str(uuid.uuid4()), key="another"),)))
        changes["a key changed"] = ConfigurationData(
            version=2, services=(service,), routes=tuple(routes),
            **dict(extra, keyauth_credentials=keys[:middle] + (dict(keys[middle], key="changed"),)
                   + keys[middle + 1:]))
        consumer = dict(extra["consumers"][0], id=str(uuid.uuid4()), username="another")
        changes["a consumer added"] = ConfigurationData(
            version=2, services=(service,), routes=tuple(routes),
            **dict(extra, consumers=extra["consumers"] + (consumer,), keyauth_credentials=keys + (
                dict(keys[0], id=str(uuid.uuid4()), consumer={"id": consumer["id"]}, key="another"),)))
    return changes


def _time(build: Callable[[], object]) -> float:
    started = time.perf_counter()
    build()
    return (time.perf_counter() - started) * 1000


def _longest_step(data: ConfigurationData, previous: Snapshot, plugins: Mapping[str, Any]) -> float:
    """
    The CPU milliseconds of the longest step of L{Snapshot.building}.
    """
    steps = Snapshot.building(data, plugins, previous)
    longest = 0.0
    while True:
        started = time.thread_time()
        try:
            next(steps)
        except StopIteration:
            return max(longest, (time.thread_time() - started) * 1000)
        longest = max(longest, (time.thread_time() - started) * 1000)


def _freeing(before: ConfigurationData, data: ConfigurationData, plugins: Mapping[str, Any]) -> float:
    """
    The CPU milliseconds of freeing at once a snapshot of C{before} after
    a snapshot of C{data} was built from it (what dies: its parts that its
    successor did not take).
    """
    replaced = Snapshot.build(before, plugins)
    successor = Snapshot.build(data, plugins, replaced)
    started = time.thread_time()
    del replaced
    took = (time.thread_time() - started) * 1000
    del successor
    return took


def measure(routes: int, repeats: int, configs: bool = False) -> dict[str, tuple[list[float], ...]]:
    """
    For each change, the milliseconds of each build from scratch and of
    each build from the previous snapshot; the CPU milliseconds of the
    longest step of each build from the previous snapshot, and of freeing
    the replaced snapshot.
    """
    service, records = _records(routes)
    plugins = load_plugins("bundled") if configs else {}
    extra = _configs(records, plugins) if configs else {}
    before = ConfigurationData(version=1, services=(service,), routes=tuple(records), **extra)
    previous = Snapshot.build(before, plugins)
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    young_threshold(int(DEFAULTS["gc_young_threshold"]))
    try:
        figures: dict[str, tuple[list[float], ...]] = {}
        for what, data in _changes(service, records, extra).items():
            scratch: list[float] = []
            incremental: list[float] = []
            steps: list[float] = []
            freeing: list[float] = []
            for _ in range(repeats):
                scratch.append(_time(lambda data=data: Snapshot.build(data, plugins)))
                incremental.append(_time(lambda data=data: Snapshot.build(data, plugins, previous)))
                steps.append(_longest_step(data, previous, plugins))
                freeing.append(_freeing(before, data, plugins))
            figures[what] = (scratch, incremental, steps, freeing)
        return figures
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--configs", action="store_true",
                        help="a plugin config on every route, and as many consumers with a key-auth key")
    arguments = parser.parse_args()
    figures = measure(arguments.routes, arguments.repeats, arguments.configs)
    print(f"{arguments.routes:,} routes, {arguments.repeats} builds of each (median ms)\n")
    print("| change | from scratch | from the previous snapshot | ratio | longest step (CPU) |"
          " freeing the replaced snapshot (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, (scratch, incremental, steps, freeing) in figures.items():
        a, b = statistics.median(scratch), statistics.median(incremental)
        print(f"| {what} | {a:.1f} | {b:.1f} | {a / b:.2f}× | {statistics.median(steps):.2f} |"
              f" {statistics.median(freeing):.2f} |")


if __name__ == "__main__":
    main()
