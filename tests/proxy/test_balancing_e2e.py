"""
Load balancing end to end: a gateway node on the suite's PostgreSQL, an
upstream with targets made through the Admin API as Kong's docs show, and
several real upstream servers on 127.0.0.1, one of which is killed.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest
from twisted.web import server

from echogate.proxy.balancing import NO_PEER
from tests.gateway import RunningGateway, start_gateway
from tests.upstream_server import UpstreamResource
from tests.waiting import until


class _Backend:
    """
    One upstream server that can be killed: it stops listening and cuts
    its open connections.
    """

    def __init__(self, testcase: unittest.TestCase):
        self.resource = UpstreamResource()
        self.site = server.Site(self.resource)
        self.site.log = lambda request: None  # type: ignore[method-assign]
        self.protocols: list[Any] = []
        build = self.site.buildProtocol

        def track(address: Any) -> Any:
            protocol = build(address)
            self.protocols.append(protocol)
            return protocol

        self.site.buildProtocol = track  # type: ignore[method-assign]
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.alive = True
        testcase.addCleanup(self.kill)

    def kill(self) -> Deferred | None:
        if not self.alive:
            return None
        self.alive = False
        stopped = self.listening.stopListening()
        for protocol in self.protocols:
            # (Site's protocol wraps the HTTPChannel, which has the transport)
            transport = getattr(getattr(protocol, "_channel", protocol), "transport", None)
            if transport is not None and transport.connected:
                transport.abortConnection()
        return stopped

    @property
    def count(self) -> int:
        return len(self.resource.seen)


class BalancingTests(unittest.TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.gw: RunningGateway = await start_gateway(self)

    async def upstream(self, backends: list[_Backend], weights: list[int] | None = None,
                       **fields: Any) -> None:
        """
        POST /upstreams and its targets, a service on it and a route,
        then wait until the node proxies to it.
        """
        answer = await self.gw.admin("POST", "/upstreams", json={"name": "backend.v1", **fields})
        self.assertEqual(answer.code, 201, answer.body)
        for index, backend in enumerate(backends):
            weight = weights[index] if weights else 100
            answer = await self.gw.admin("POST", "/upstreams/backend.v1/targets",
                                         json={"target": f"127.0.0.1:{backend.port}", "weight": weight})
            self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/services", json={"name": "s", "url": "http://backend.v1"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await self.gw.admin("POST", "/services/s/routes", json={"paths": ["/"]})
        self.assertEqual(answer.code, 201, answer.body)

        async def proxied() -> bool:
            answer = await self.gw.proxy("GET", "/ready")
            self.last = (answer.code, answer.body)
            return answer.code == 200

        try:
            await until(proxied, message="the node proxies to the upstream", timeout=3)
        except AssertionError:
            self.fail(f"not proxied: {self.last}")
        for backend in backends:
            backend.resource.seen.clear()

    async def get_many(self, count: int, headers: dict[str, str] | None = None) -> list[int]:
        codes = []
        for _ in range(count):
            answer = await self.gw.proxy("GET", "/x", headers=headers or {})
            codes.append(answer.code)
        return codes

    async def test_roundRobin(self) -> None:
        """Three targets of equal weight: 30 requests, 10 each."""
        backends = [_Backend(self) for _ in range(3)]
        await self.upstream(backends)
        self.assertEqual(await self.get_many(30), [200] * 30)
        self.assertEqual([b.count for b in backends], [10, 10, 10])

    async def test_weights(self) -> None:
        """Weights 300 and 100: 3 requests in 4 go to the first; weight 0 gets none."""
        backends = [_Backend(self) for _ in range(3)]
        await self.upstream(backends, weights=[300, 100, 0])
        await self.get_many(40)
        self.assertEqual([b.count for b in backends], [30, 10, 0])

    async def test_killedTarget(self) -> None:
        """
        One of three targets killed under load: its requests are retried on
        the others (nothing was sent), none fails, and once the passive
        check has counted it, it gets no more tries.
        """
        backends = [_Backend(self) for _ in range(3)]
        await self.upstream(backends, healthchecks={"passive": {"unhealthy": {"tcp_failures": 1}}})
        await self.get_many(6)
        await backends[1].kill()
        codes = await self.get_many(30)
        self.assertEqual(codes, [200] * 30)
        self.assertEqual(backends[0].count + backends[2].count, 34)
        self.assertEqual(backends[1].count, 2)
        health = await self.gw.admin("GET", "/upstreams/backend.v1/health")
        states = {t["target"]: t["health"] for t in health.json()["data"]}
        self.assertEqual(states[f"127.0.0.1:{backends[1].port}"], "UNHEALTHY")

    async def test_consistentHashing(self) -> None:
        """Hashing on a header: each user always reaches the same target."""
        backends = [_Backend(self) for _ in range(3)]
        await self.upstream(backends, algorithm="consistent-hashing", hash_on="header",
                            hash_on_header="x-user")
        where: dict[str, set[int]] = {}
        for user in ["ann", "bob", "cat", "dan", "eve", "fay"] * 3:
            before = [b.count for b in backends]
            self.assertEqual((await self.gw.proxy("GET", "/x", headers={"X-User": user})).code, 200)
            after = [b.count for b in backends]
            where.setdefault(user, set()).add(next(i for i in range(3) if after[i] != before[i]))
        self.assertTrue(all(len(places) == 1 for places in where.values()), where)

    async def test_leastConnections(self) -> None:
        """
        least-connections with a slow request in flight on one target:
        the next requests all go to the other, until it is answered.
        """
        backends = [_Backend(self) for _ in range(2)]
        await self.upstream(backends, algorithm="least-connections")
        slow = Deferred.fromCoroutine(self.gw.proxy("GET", "/slow?delay=2"))
        busy = await until(lambda: next((b for b in backends if b.count), None), message="the slow request arrived")
        other = backends[1 - backends.index(busy)]
        codes = await self.get_many(6)
        self.assertEqual(codes, [200] * 6)
        self.assertEqual((busy.count, other.count), (1, 6))
        self.assertEqual((await slow).code, 200)

    async def test_hashCookie(self) -> None:
        """
        hash_on cookie: a client without the cookie is given one, and with
        it every request reaches the same target.
        """
        backends = [_Backend(self) for _ in range(3)]
        await self.upstream(backends, hash_on="cookie", hash_on_cookie="sticky", hash_on_cookie_path="/app")
        first = await self.gw.proxy("GET", "/x")
        cookie = first.header("set-cookie")
        self.assertIsNotNone(cookie)
        name_value, _, path = cookie.partition("; ")
        self.assertEqual((name_value.split("=")[0], path), ("sticky", "Path=/app"))
        for backend in backends:
            backend.resource.seen.clear()
        for _ in range(6):
            answer = await self.gw.proxy("GET", "/x", headers={"Cookie": name_value})
            self.assertEqual(answer.code, 200)
            self.assertIsNone(answer.header("set-cookie"))
        self.assertEqual(sorted(b.count for b in backends), [0, 0, 6])

    async def test_noTarget(self) -> None:
        """An upstream whose every target is down and tried: Kong's 503."""
        backends = [_Backend(self)]
        await self.upstream(backends, healthchecks={"passive": {"unhealthy": {"tcp_failures": 1}}})
        await backends[0].kill()
        answer = await self.gw.proxy("GET", "/x")
        self.assertIn(answer.code, (502, 503))
        answer = await self.gw.proxy("GET", "/x")
        self.assertEqual((answer.code, answer.json()), (503, {"message": NO_PEER}))

    async def test_hostHeader(self) -> None:
        """The service's host (the upstream's name) is the Host header the targets see, as in Kong."""
        backends = [_Backend(self)]
        await self.upstream(backends)
        await self.get_many(1)
        self.assertEqual(backends[0].resource.seen[0]["headers"]["host"], ["backend.v1"])
