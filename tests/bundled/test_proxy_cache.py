"""
Tests for the bundled proxy-cache plugin (L{echogate.bundled.proxy_cache}):
its schema, hits, misses, refreshes and bypasses, the key, the bounds
(entry size, total size, LRU), Cache-Control, and a hit in the running
gateway.
"""
from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.bundled.proxy_cache import CachedResponse, MemoryCache, ProxyCache
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import ROUTE_ID, GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


class ProxyCacheSchemaTests(SynchronousTestCase):
    """
    proxy-cache's config, field by field.
    """

    def validate(self, **config: Any) -> dict:
        config.setdefault("strategy", "memory")
        return ProxyCache.config_schema.validate(config)

    def refuse(self, **config: Any) -> dict:
        return self.assertRaises(SchemaViolation, self.validate, **config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults, and the memory dictionary's bounds.
        """
        self.assertEqual(self.validate(), {
            "response_code": [200, 301, 404], "request_method": ["GET", "HEAD"],
            "content_type": ["text/plain", "application/json"], "cache_ttl": 300, "strategy": "memory",
            "cache_control": False, "ignore_uri_case": False, "storage_ttl": None,
            "memory": {"dictionary_name": "kong_db_cache", "dictionary_size": 134217728,
                       "max_entry_size": 1048576},
            "vary_query_params": None, "vary_headers": None,
            "response_headers": {"age": True, "X-Cache-Status": True, "X-Cache-Key": True}})

    def test_strategy(self) -> None:
        """
        The strategy is required, and only memory exists.
        """
        error = self.assertRaises(SchemaViolation, ProxyCache.config_schema.validate, {})
        self.assertEqual(error.fields, {"strategy": "required field missing"})
        self.assertEqual(self.refuse(strategy="redis"), {"strategy": "expected one of: memory"})

    def test_lists(self) -> None:
        """
        Statuses between 100 and 900 (at least one), known methods, string
        content types.
        """
        self.assertEqual(self.refuse(response_code=[99]),
                         {"response_code": {"1": "value should be between 100 and 900"}})
        self.assertEqual(self.refuse(response_code=[]), {"response_code": "length must be at least 1"})
        self.assertEqual(self.refuse(request_method=["GET", "DELETE"]),
                         {"request_method": {"2": "expected one of: HEAD, GET, POST, PATCH, PUT"}})
        self.assertEqual(self.refuse(content_type=[1]), {"content_type": {"1": "expected a string"}})
        self.assertEqual(self.refuse(vary_headers="x"), {"vary_headers": "expected an array"})
        self.assertEqual(self.refuse(vary_query_params=[""]),
                         {"vary_query_params": {"1": "length must be at least 1"}})

    def test_numbers(self) -> None:
        """
        TTLs and sizes are positive integers.
        """
        self.assertEqual(self.refuse(cache_ttl=0), {"cache_ttl": "value must be greater than 0"})
        self.assertEqual(self.refuse(cache_ttl=1.5), {"cache_ttl": "expected an integer"})
        self.assertEqual(self.refuse(storage_ttl=-1), {"storage_ttl": "value must be greater than 0"})
        self.assertEqual(self.refuse(memory={"dictionary_size": 0}),
                         {"memory": {"dictionary_size": "value must be greater than 0"}})
        self.assertEqual(self.refuse(memory={"max_entry_size": 0}),
                         {"memory": {"max_entry_size": "value must be greater than 0"}})

    def test_booleans(self) -> None:
        """
        Flags are booleans.
        """
        self.assertEqual(self.refuse(cache_control="yes"), {"cache_control": "expected a boolean"})
        self.assertEqual(self.refuse(ignore_uri_case=1), {"ignore_uri_case": "expected a boolean"})
        self.assertEqual(self.refuse(response_headers={"age": "no"}),
                         {"response_headers": {"age": "expected a boolean"}})

    def test_unknown(self) -> None:
        """
        Unknown fields are refused, nested ones too.
        """
        self.assertEqual(self.refuse(memory={"shm": "x"}), {"memory": {"shm": "unknown field"}})
        self.assertEqual(self.refuse(redis={}), {"redis": "unknown field"})


def _answer(status: int = 200, content_type: str = "application/json", body: bytes = b'{"n": 1}',
            **headers: str) -> UpstreamAnswer:
    return UpstreamAnswer(status, {"Content-Type": content_type, **headers}, body)


class ProxyCacheTests(SynchronousTestCase):
    """
    Through L{GatewayHarness}: what is cached, what is answered from the
    cache, and the diagnostic headers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.answer = _answer(**{"X-Upstream": "v"})
        self.plugin = ProxyCache(clock=self.clock)

    def upstream(self, request: UpstreamRequestSeen) -> UpstreamAnswer:
        return self.answer

    def harness(self, **config: Any) -> GatewayHarness:
        config.setdefault("strategy", "memory")
        return GatewayHarness([self.plugin], configs=[("proxy-cache", config)], upstream=self.upstream,
                              clock=self.clock)

    def get(self, harness: GatewayHarness, path: str = "/x", method: str = "GET", **headers: str) -> Any:
        return self.successResultOf(harness.request(method, path, headers=headers))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        self.assertTrue(verifyObject(IGatewayPlugin, self.plugin))
        self.assertEqual((self.plugin.name, self.plugin.priority), ("proxy-cache", 100))

    def test_missThenHit(self) -> None:
        """
        The first request is a Miss and goes upstream; the second is a Hit
        answered from the cache with the same status, headers and body.
        """
        harness = self.harness()
        first = self.get(harness)
        self.assertEqual(first.header("x-cache-status"), "Miss")
        self.clock.advance(7)
        second = self.get(harness)
        self.assertEqual(second.header("x-cache-status"), "Hit")
        self.assertEqual(len(harness.upstream_requests), 1)
        self.assertEqual((second.status, second.body), (200, b'{"n": 1}'))
        self.assertEqual(second.header("content-type"), "application/json")
        self.assertEqual(second.header("x-upstream"), "v")
        self.assertEqual(second.header("age"), "7")
        self.assertEqual(second.header("content-length"), "8")
        self.assertEqual(second.header("x-cache-key"), first.header("x-cache-key"))

    def test_key(self) -> None:
        """
        X-Cache-Key is Kong's SHA-256 of route, method, path, query and
        vary headers.
        """
        response = self.get(self.harness(), "/x?b=2&a=1")
        expected = hashlib.sha256(f"{ROUTE_ID}|GET|/x|a=1:b=2|".encode()).hexdigest()
        self.assertEqual(response.header("x-cache-key"), expected)

    def test_queryInKey(self) -> None:
        """
        Different query arguments are different entries; their order does not
        matter.
        """
        harness = self.harness()
        self.get(harness, "/x?a=1&b=2")
        self.assertEqual(self.get(harness, "/x?b=2&a=1").header("x-cache-status"), "Hit")
        self.assertEqual(self.get(harness, "/x?a=2").header("x-cache-status"), "Miss")

    def test_varyQueryParams(self) -> None:
        """
        With vary_query_params only those arguments count.
        """
        harness = self.harness(vary_query_params=["a"])
        self.get(harness, "/x?a=1&utm=z")
        self.assertEqual(self.get(harness, "/x?a=1&utm=y").header("x-cache-status"), "Hit")
        self.assertEqual(self.get(harness, "/x?a=2&utm=y").header("x-cache-status"), "Miss")

    def test_varyHeaders(self) -> None:
        """
        With vary_headers those request headers are part of the key.
        """
        harness = self.harness(vary_headers=["Accept-Language"])
        self.get(harness, **{"Accept-Language": "fr"})
        self.assertEqual(self.get(harness, **{"Accept-Language": "fr"}).header("x-cache-status"), "Hit")
        self.assertEqual(self.get(harness, **{"Accept-Language": "de"}).header("x-cache-status"), "Miss")

    def test_ignoreUriCase(self) -> None:
        """
        With ignore_uri_case, /X and /x share an entry.
        """
        harness = self.harness(ignore_uri_case=True)
        self.get(harness, "/X")
        self.assertEqual(self.get(harness, "/x").header("x-cache-status"), "Hit")
        self.assertEqual(self.get(self.harness(), "/Y").header("x-cache-status"), "Miss")

    def test_refresh(self) -> None:
        """
        Past cache_ttl an entry still kept (storage_ttl) is stale: Refresh,
        upstream again, stored again.
        """
        harness = self.harness(cache_ttl=10, storage_ttl=100)
        self.get(harness)
        self.clock.advance(11)
        self.assertEqual(self.get(harness).header("x-cache-status"), "Refresh")
        self.assertEqual(self.get(harness).header("x-cache-status"), "Hit")
        self.assertEqual(len(harness.upstream_requests), 2)

    def test_expiredIsGone(self) -> None:
        """
        Without storage_ttl an entry is kept as long as it is fresh: past
        cache_ttl, a Miss (as Kong's memory strategy).
        """
        harness = self.harness(cache_ttl=10)
        self.get(harness)
        self.clock.advance(11)
        self.assertEqual(self.get(harness).header("x-cache-status"), "Miss")
        self.assertEqual(len(self.plugin.dictionaries.caches["kong_db_cache"]), 1)

    def test_storageTtl(self) -> None:
        """
        Past storage_ttl the entry is gone: a Miss.
        """
        harness = self.harness(cache_ttl=100, storage_ttl=5)
        self.get(harness)
        self.clock.advance(6)
        self.assertEqual(self.get(harness).header("x-cache-status"), "Miss")

    def test_bypassMethod(self) -> None:
        """
        A method that is not cacheable: Bypass, no key, nothing stored.
        """
        harness = self.harness()
        response = self.get(harness, method="POST")
        self.assertEqual(response.header("x-cache-status"), "Bypass")
        self.assertIsNone(response.header("x-cache-key"))
        self.assertEqual(self.get(harness, method="POST").header("x-cache-status"), "Bypass")
        self.assertEqual(self.plugin.dictionaries.caches, {})

    def test_bypassStatus(self) -> None:
        """
        A status that is not cacheable: Bypass, and the next request is a
        Miss again.
        """
        self.answer = _answer(status=500)
        harness = self.harness()
        self.assertEqual(self.get(harness).header("x-cache-status"), "Bypass")
        self.assertEqual(self.get(harness).header("x-cache-status"), "Bypass")
        self.assertEqual(len(harness.upstream_requests), 2)

    def test_bypassContentType(self) -> None:
        """
        Content types must match exactly (parameters too); * matches any.
        """
        self.answer = _answer(content_type="text/html")
        self.assertEqual(self.get(self.harness()).header("x-cache-status"), "Bypass")
        self.answer = _answer(content_type="application/json; charset=utf-8")
        self.assertEqual(self.get(self.harness()).header("x-cache-status"), "Bypass")
        harness = self.harness(content_type=["application/json; charset=utf-8"])
        self.get(harness)
        self.assertEqual(self.get(harness).header("x-cache-status"), "Hit")
        self.answer = _answer(content_type="image/png")
        harness = self.harness(content_type=["image/*"])
        self.get(harness, "/png")
        self.assertEqual(self.get(harness, "/png").header("x-cache-status"), "Hit")

    def test_bypassSetCookie(self) -> None:
        """
        A response that sets a cookie is never stored (it would go to other
        clients).
        """
        self.answer = _answer(**{"Set-Cookie": "session=1"})
        harness = self.harness()
        self.assertEqual(self.get(harness).header("x-cache-status"), "Bypass")
        self.assertEqual(self.get(harness).header("x-cache-status"), "Bypass")
        self.assertEqual(len(harness.upstream_requests), 2)

    def test_largeBodyStreamsUncached(self) -> None:
        """
        A body over max_entry_size reaches the client whole but is not
        stored.
        """
        self.answer = _answer(body=b"x" * 5000)
        harness = self.harness(memory={"max_entry_size": 4096})
        first = self.get(harness)
        self.assertEqual(first.body, b"x" * 5000)
        self.assertEqual(self.get(harness).header("x-cache-status"), "Miss")
        self.assertEqual(len(harness.upstream_requests), 2)

    def test_boundedLru(self) -> None:
        """
        The dictionary holds at most dictionary_size bytes; the least
        recently used entry goes first.
        """
        self.answer = _answer(body=b"y" * 1000)
        harness = self.harness(memory={"dictionary_size": 3000})
        for path in ("/a", "/b"):
            self.get(harness, path)
        self.get(harness, "/a")  # /a is now the most recently used
        self.get(harness, "/c")  # evicts /b
        cache = self.plugin.dictionaries.caches["kong_db_cache"]
        self.assertLessEqual(cache.size, 3000)
        self.assertEqual(len(cache), 2)
        self.assertEqual(self.get(harness, "/a").header("x-cache-status"), "Hit")
        self.assertEqual(self.get(harness, "/b").header("x-cache-status"), "Miss")

    def test_responseHeadersOff(self) -> None:
        """
        response_headers switches the diagnostic headers off.
        """
        harness = self.harness(response_headers={"age": False, "X-Cache-Status": False, "X-Cache-Key": False})
        self.get(harness)
        response = self.get(harness)
        self.assertEqual(len(harness.upstream_requests), 1)
        for name in ("age", "x-cache-status", "x-cache-key"):
            self.assertIsNone(response.header(name), name)

    def test_cacheControlRequest(self) -> None:
        """
        With cache_control, a request with no-cache (or Authorization)
        bypasses the cache, and max-age asks for a fresher entry.
        """
        harness = self.harness(cache_control=True)
        self.answer = _answer(**{"Cache-Control": "max-age=60"})
        self.get(harness)
        self.assertEqual(self.get(harness, **{"Cache-Control": "no-cache"}).header("x-cache-status"), "Bypass")
        self.assertEqual(self.get(harness, Authorization="Basic eA==").header("x-cache-status"), "Bypass")
        self.clock.advance(10)
        self.assertEqual(self.get(harness, **{"Cache-Control": "max-age=20"}).header("x-cache-status"), "Hit")
        self.assertEqual(self.get(harness, **{"Cache-Control": "max-age=5"}).header("x-cache-status"), "Refresh")

    def test_cacheControlResponse(self) -> None:
        """
        With cache_control, the response's max-age is the TTL, and private
        or no-store responses (or none with no max-age) are not stored.
        """
        harness = self.harness(cache_control=True, storage_ttl=100)
        self.answer = _answer(**{"Cache-Control": "public, max-age=5"})
        self.get(harness, "/a")
        self.clock.advance(4)
        self.assertEqual(self.get(harness, "/a").header("x-cache-status"), "Hit")
        self.clock.advance(2)
        self.assertEqual(self.get(harness, "/a").header("x-cache-status"), "Refresh")
        for value in ("private, max-age=60", "no-store", "max-age=0"):
            self.answer = _answer(**{"Cache-Control": value})
            self.assertEqual(self.get(harness, "/b").header("x-cache-status"), "Bypass", value)
        self.answer = _answer()
        self.assertEqual(self.get(harness, "/c").header("x-cache-status"), "Bypass")

    def test_onlyIfCached(self) -> None:
        """
        only-if-cached without an entry answers 504.
        """
        response = self.get(self.harness(cache_control=True), **{"Cache-Control": "only-if-cached"})
        self.assertEqual(response.status, 504)
        self.assertEqual(self.get(self.harness(), **{"Cache-Control": "only-if-cached"}).status, 200)


class MemoryCacheTests(SynchronousTestCase):
    """
    L{MemoryCache} is bounded by the size of its entries.
    """

    def entry(self, size: int) -> CachedResponse:
        return CachedResponse(200, (), b"z" * size, 0.0, 10.0)

    def test_tooLarge(self) -> None:
        """
        An entry larger than the whole cache is refused.
        """
        cache = MemoryCache(1000)
        self.assertFalse(cache.put("k", self.entry(2000), 10))
        self.assertEqual((len(cache), cache.size), (0, 0))

    def test_replace(self) -> None:
        """
        Storing a key again replaces the entry and its size.
        """
        cache = MemoryCache(10000)
        cache.put("k", self.entry(100), 10)
        cache.put("k", self.entry(200), 10)
        self.assertEqual((len(cache), cache.size), (1, self.entry(200).size))

    def test_expiry(self) -> None:
        """
        An entry past its storage time is gone and its size freed.
        """
        cache = MemoryCache(10000)
        cache.put("k", self.entry(100), 10)
        self.assertIsNotNone(cache.get("k", 9.9))
        self.assertIsNone(cache.get("k", 10))
        self.assertEqual(cache.size, 0)


class ProxyCacheGatewayTests(TestCase):
    """
    proxy-cache in a running gateway.
    """

    timeout = 60

    async def test_endToEnd(self) -> None:
        """
        The second identical request is answered from the cache: the
        upstream sees one request, the client gets the same body with the
        upstream's Content-Type.
        """
        upstream, port = start_upstream(self)
        gw = await start_gateway(self)
        await gw.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{port}"})
        await gw.admin("POST", "/services/svc/routes", json={"paths": ["/c"]})
        answer = await gw.admin("POST", "/services/svc/plugins", data={"name": "proxy-cache",
                                                                      "config.strategy": "memory"})
        self.assertEqual(answer.code, 201, answer.body)
        first = await gw.proxy("GET", "/c/item?x=1")
        second = await gw.proxy("GET", "/c/item?x=1")
        self.assertEqual((first.header("x-cache-status"), second.header("x-cache-status")), ("Miss", "Hit"))
        self.assertEqual(first.body, second.body)
        self.assertEqual(second.header("content-type"), "application/json")
        self.assertEqual(len([s for s in upstream.seen if s["path"] == "/item"]), 1)
