"""
Fill a database with many routes quickly: the same complete records the
Admin API would store (L{echogate.entities.writes.prepare_insert}), written
straight through the store, a few at a time.

Through the Admin API every write waits for the node to reload its whole
configuration, so 10,000 routes one by one cost minutes of reloads of an
ever larger table; written here, a running node only sees change
notifications, which it coalesces.

Run: C{python -m bench.routes DSN SERVICE_ID FIRST COUNT [configs]}; prints
the number of routes written (with C{configs}, each route also gets a
rate-limiting config, and a consumer with a key-auth key is added for each).
"""
from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Iterator

from twisted.internet.defer import DeferredSemaphore, ensureDeferred, gatherResults
from twisted.internet.task import react

from echogate.entities import writes
from echogate.store.postgres import PostgresStore

__all__ = ["filler_body", "fill"]


def filler_body(n: int, service_id: str) -> dict[str, Any]:
    """
    Route C{n} of the filler: three in four match by path prefix
    (C{/filler/N/api}), one in four by host and path
    (C{fN.example.com}, C{/}); the benchmark's requests match none.
    """
    body: dict[str, Any] = {"name": f"filler-{n}", "service": {"id": service_id}}
    if n % 4 == 3:
        body.update(hosts=[f"f{n}.example.com"], paths=["/"])
    else:
        body.update(paths=[f"/filler/{n}/api"])
    return body


def _records(service_id: str, first: int, count: int) -> Iterator[dict[str, Any]]:
    now = int(time.time())
    for n in range(first, first + count):
        yield writes.prepare_insert("routes", filler_body(n, service_id), plugins={}, now=now,
                                      new_id=str(uuid.uuid4()))


def _configs(route: dict[str, Any], n: int, plugins: Any) -> list[tuple[str, dict[str, Any]]]:
    """
    What C{--configs} adds for filler route C{n}: a rate-limiting config
    on it, and a consumer with a key-auth key.
    """
    now = int(time.time())
    consumer = writes.prepare_insert("consumers", {"username": f"filler-{n}"}, plugins={}, now=now,
                                     new_id=str(uuid.uuid4()))
    return [
        ("plugins", writes.prepare_insert("plugins", {"name": "rate-limiting", "config": {"second": 1000},
                                                      "route": {"id": route["id"]}}, plugins=plugins, now=now,
                                          new_id=str(uuid.uuid4()))),
        ("consumers", consumer),
        ("keyauth_credentials", {"id": str(uuid.uuid4()), "consumer": {"id": consumer["id"]},
                                 "key": f"filler-key-{n}", "created_at": now, "updated_at": now, "tags": None,
                                 "ttl": None}),
    ]


async def fill(reactor: Any, dsn: str, service_id: str, first: int, count: int,
               concurrency: int = 4, configs: bool = False) -> int:
    """
    Insert filler routes C{first} to C{first + count - 1}; with
    C{configs}, each with a plugin config, and as many consumers with a
    key-auth key (L{_configs}).
    """
    store = PostgresStore(reactor, dsn, pool_size=concurrency, query_timeout=60.0)
    await store.start()
    try:
        gate = DeferredSemaphore(concurrency)
        routes = list(_records(service_id, first, count))
        await gatherResults([gate.run(store.insert, "routes", record) for record in routes], consumeErrors=True)
        if configs:
            from echogate.registry import load_plugins

            plugins = load_plugins("rate-limiting")
            extra = [write for n, route in enumerate(routes, first) for write in _configs(route, n, plugins)]
            for kind in ("plugins", "consumers", "keyauth_credentials"):
                await gatherResults([gate.run(store.insert, entity, record) for entity, record in extra
                                     if entity == kind], consumeErrors=True)
    finally:
        await store.stop()
    return count


def main(reactor: Any, dsn: str, service_id: str, first: str, count: str, configs: str = "") -> Any:
    async def run() -> None:
        written = await fill(reactor, dsn, service_id, int(first), int(count), configs=configs == "configs")
        print(written, flush=True)

    return ensureDeferred(run())


if __name__ == "__main__":
    react(main, sys.argv[1:])
