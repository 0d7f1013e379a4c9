"""
rate-limiting's shared policies against real servers: C{redis} against a
real Redis (C{redis-server}, started by the tests), C{cluster} against the
suite's PostgreSQL, and both across two gateway nodes, where the requests
let through stay within the documented bound.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from echogate.bundled.rate_limiting import RateLimiting
from echogate.bundled.ratelimit_policies import PostgresCounters, StoreUnavailable, batch_size, window
from echogate.bundled.ratelimit_redis import RedisClient, RedisCounters, RedisPolicy, RedisSettings
from echogate.testing import GatewayHarness
from tests.gateway import RunningGateway, start_gateway
from tests.postgres import PostgresMixin
from tests.redisserver import RedisMixin, shared_redis
from tests.upstream_server import start_upstream
from tests.waiting import until

_names = iter(range(1, 1_000_000))


def _unique() -> str:
    return f"t{next(_names)}-{id(object())}"


class RedisPolicyTests(TestCase, RedisMixin):
    """
    L{RedisPolicy} and L{RedisCounters} against a real Redis.
    """

    timeout = 30

    def client(self, port: int | None = None, **settings: Any) -> RedisClient:
        client = RedisClient(reactor, RedisSettings(host="127.0.0.1", port=port or shared_redis().port,
                                                    **settings))
        self.addCleanup(client.close)
        return client

    async def test_countsAndStops(self) -> None:
        """
        Requests are counted until the limit; then nothing more is counted,
        and the counters expire with their window.
        """
        policy = RedisPolicy(self.client())
        identifier = _unique()
        now = reactor.seconds()
        results = [await policy.consume(identifier, {"day": 3, "year": 10}, now) for _ in range(5)]
        self.assertEqual([r.stop for r in results], [None, None, None, "day", "day"])
        self.assertEqual([r.counts["day"] for r in results], [0, 1, 2, 3, 3])
        self.assertEqual(results[-1].counts["year"], 3)
        start, end = window("day", now)
        reply = shared_redis().command(("TTL", f"ratelimit:{identifier}:day:{start}"))
        ttl = int(reply.strip()[1:])
        self.assertTrue(0 < ttl <= end - now + 1, reply)

    async def test_exactAcrossClients(self) -> None:
        """
        Two nodes' clients checking at once let exactly the limit through.
        """
        nodes = [RedisPolicy(self.client()), RedisPolicy(self.client())]
        identifier = _unique()
        now = reactor.seconds()
        results = await gatherResults([nodes[n % 2].consume(identifier, {"day": 25}, now) for n in range(80)])
        self.assertEqual(sum(r.stop is None for r in results), 25)

    async def test_passwordAndDatabase(self) -> None:
        """
        With a password (AUTH) and a database (SELECT); a wrong password is
        unavailable.
        """
        server = self.private_redis("--requirepass", "s3cret")
        identifier = _unique()
        policy = RedisPolicy(self.client(server.port, password="s3cret", database=2))
        self.assertIsNone((await policy.consume(identifier, {"day": 5}, reactor.seconds())).stop)
        keys = server.command(("AUTH", "s3cret"), ("SELECT", "2"), ("KEYS", "*"))
        self.assertIn(identifier.encode(), keys)
        wrong = RedisPolicy(self.client(server.port, password="nope"))
        with self.assertRaises(StoreUnavailable):
            await wrong.consume(identifier, {"day": 5}, reactor.seconds())

    async def test_down(self) -> None:
        """
        A stopped Redis is unavailable, at once while backing off; once it
        is back the client reconnects.
        """
        server = self.private_redis()
        client = RedisClient(reactor, RedisSettings(host="127.0.0.1", port=server.port), retry_delay=0.05)
        self.addCleanup(client.close)
        policy = RedisPolicy(client)
        identifier = _unique()
        await policy.consume(identifier, {"day": 5}, reactor.seconds())
        server.stop()
        with self.assertRaises(StoreUnavailable):
            await policy.consume(identifier, {"day": 5}, reactor.seconds())
        with self.assertRaises(StoreUnavailable):
            await policy.consume(identifier, {"day": 5}, reactor.seconds())
        server.start()

        async def reconnected() -> Any:
            # Unavailable while the client backs off (retry_delay); then
            # it reconnects and the request is counted.
            try:
                return await policy.consume(identifier, {"day": 5}, reactor.seconds())
            except StoreUnavailable:
                return None

        usage = await until(reconnected, timeout=10, interval=0.02, message="the client reconnects to Redis")
        self.assertIsNone(usage.stop)

    async def test_batchedCounters(self) -> None:
        """
        L{RedisCounters} adds batches and returns every node's totals.
        """
        a, b = RedisCounters(self.client()), RedisCounters(self.client())
        key = (_unique(), "day", 0)
        expires = int(reactor.seconds()) + 60
        self.assertEqual(await a.add([(key, 3, expires)]), {key: 3})
        self.assertEqual(await b.add([(key, 4, expires)]), {key: 7})
        self.assertEqual(await a.add([]), {})

    async def test_faultTolerantThroughPlugin(self) -> None:
        """
        Through the plugin with Redis stopped: let through (fault_tolerant)
        or 500.
        """
        server = self.private_redis()
        server.stop()
        plugin = RateLimiting(reactor=reactor)
        self.addCleanup(plugin.stores.stop)
        config = {"minute": 5, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": server.port}
        harness = GatewayHarness([plugin], configs=[("rate-limiting", config)])
        response = await harness.request("GET", "/")
        self.assertEqual(response.status, 200)
        self.assertIsNone(response.header("x-ratelimit-limit-minute"))
        strict = RateLimiting(reactor=reactor)
        self.addCleanup(strict.stores.stop)
        harness = GatewayHarness([strict], configs=[("rate-limiting", {**config, "fault_tolerant": False})])
        self.assertEqual((await harness.request("GET", "/")).status, 500)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)


class PostgresCountersTests(TestCase, PostgresMixin):
    """
    L{PostgresCounters} against the real PostgreSQL.
    """

    timeout = 60

    async def test_addAndTotals(self) -> None:
        """
        Two nodes' additions accumulate in one row per counter, and each
        sync returns the totals.
        """
        dsn = self.database()
        a, b = PostgresCounters(reactor, dsn), PostgresCounters(reactor, dsn)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        expires = int(reactor.seconds()) + 3600
        one, two = ("x", "hour", 100), ("y", "hour", 100)
        self.assertEqual(await a.add([(one, 2, expires), (two, 1, expires)]), {one: 2, two: 1})
        self.assertEqual(await b.add([(one, 5, expires)]), {one: 7})
        self.assertEqual(await a.add([]), {})

    async def test_expiredDeleted(self) -> None:
        """
        Rows of windows that ended are deleted.
        """
        import psycopg2

        dsn = self.database()
        counters = PostgresCounters(reactor, dsn)
        self.addCleanup(counters.close)
        now = int(reactor.seconds())
        counters._next_cleanup = now + 1000
        await counters.add([(("old", "second", now - 10), 1, now - 9), (("new", "day", now), 1, now + 100)])
        counters._next_cleanup = 0
        await counters.add([])
        connection = psycopg2.connect(dsn)
        self.addCleanup(connection.close)
        with connection.cursor() as cursor:
            cursor.execute("SELECT identifier FROM ratelimiting_counters")
            self.assertEqual(cursor.fetchall(), [("new",)])

    async def test_down(self) -> None:
        """
        A stopped server is L{StoreUnavailable}.
        """
        server = self.temporary_server()
        from echogate.store import migrations

        migrations.migrate(server.dsn())
        counters = PostgresCounters(reactor, server.dsn(), timeout=2)
        self.addCleanup(counters.close)
        await counters.add([])
        server.stop()
        with self.assertRaises(StoreUnavailable):
            await counters.add([(("x", "day", 0), 1, int(reactor.seconds()) + 10)])


class TwoNodesTests(TestCase):
    """
    Two gateway nodes sharing the database (and Redis): the requests let
    through in a window stay within the documented bound.
    """

    timeout = 120

    async def setUp(self) -> None:
        _, self.upstream_port = start_upstream(self)
        from tests.postgres import fresh_database

        database = await fresh_database()
        self.plugins = [RateLimiting(), RateLimiting()]
        self.nodes: list[RunningGateway] = []
        for plugin in self.plugins:
            self.nodes.append(await start_gateway(self, database=database,
                                                  plugin_objects={"rate-limiting": plugin}))
        a = self.nodes[0]
        await a.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{self.upstream_port}"})
        await a.admin("POST", "/services/svc/routes", json={"name": "rt", "paths": ["/rl"]})

    async def configure(self, config: dict) -> None:
        answer = await self.nodes[0].admin("POST", "/routes/rt/plugins",
                                           json={"name": "rate-limiting", "config": config})
        self.assertEqual(answer.code, 201, answer.body)
        version = self.nodes[0].service.live.current.version
        for _ in range(250):
            if self.nodes[1].service.live.current.version >= version:
                return
            await deferLater(reactor, 0.02, lambda: None)
        self.fail("node B never saw the plugin")

    async def burst(self, total: int) -> list[int]:
        """
        C{total} requests, alternating between the nodes, 20 at a time.
        """
        codes: list[int] = []
        for first in range(0, total, 20):
            answers = await gatherResults([ensureDeferred(self.nodes[n % 2].proxy("GET", "/rl/x"))
                                           for n in range(first, min(total, first + 20))])
            codes += [a.code for a in answers]
        return codes

    async def test_cluster(self) -> None:
        """
        cluster: at least the limit and at most limit + batch_size(limit)
        requests are let through by two nodes, with far fewer syncs than
        requests.
        """
        limit = 60
        await self.configure({"day": limit, "policy": "cluster"})
        codes = await self.burst(180)
        admitted = codes.count(200)
        self.assertEqual(set(codes), {200, 429})
        self.assertGreaterEqual(admitted, limit)
        self.assertLessEqual(admitted, limit + batch_size(limit))
        syncs = sum(p.syncs for plugin in self.plugins for p in plugin.stores.cluster_batched.values())
        self.assertLess(syncs, admitted)

    async def test_redis(self) -> None:
        """
        redis: two nodes let exactly the limit through.
        """
        limit = 40
        await self.configure({"day": limit, "policy": "redis", "redis_host": "127.0.0.1",
                              "redis_port": shared_redis().port})
        codes = await self.burst(120)
        self.assertEqual(codes.count(200), limit)
        refused = await self.nodes[1].proxy("GET", "/rl/x")
        self.assertEqual(refused.code, 429)
        self.assertEqual(refused.json(), {"message": "API rate limit exceeded"})
        self.assertEqual(refused.header("x-ratelimit-remaining-day"), "0")
        self.assertIsNotNone(refused.header("retry-after"))

    async def test_redisBatched(self) -> None:
        """
        redis with a sync_rate: within limit + batch_size(limit).
        """
        limit = 40
        await self.configure({"day": limit, "policy": "redis", "redis_host": "127.0.0.1",
                              "redis_port": shared_redis().port, "sync_rate": 0.05})
        admitted = (await self.burst(120)).count(200)
        self.assertGreaterEqual(admitted, limit)
        self.assertLessEqual(admitted, limit + batch_size(limit))

    async def test_local(self) -> None:
        """
        local: each node counts for itself, with the headers on every answer.
        """
        await self.configure({"day": 5, "policy": "local"})
        codes = await self.burst(20)
        self.assertEqual(codes.count(200), 10)
        answer = await self.nodes[0].proxy("GET", "/rl/x")
        self.assertEqual(answer.header("x-ratelimit-limit-day"), "5")
        self.assertEqual(answer.header("ratelimit-remaining"), "0")
