"""
Tests for L{echogate.routing.router}'s look-up: the index that keeps it to the
routes that could match, and the cache of recent look-ups.
"""
from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.routing.test_router import build, request, route


class _Counter:
    """
    An C{on_candidate} hook that counts the routes a look-up evaluates.
    """

    def __init__(self) -> None:
        self.evaluated: list[dict[str, Any]] = []

    def __call__(self, route: dict[str, Any]) -> None:
        self.evaluated.append(route)

    def take(self) -> int:
        count = len(self.evaluated)
        self.evaluated = []
        return count


class IndexTests(SynchronousTestCase):
    """
    A look-up examines only the routes that could match, not the whole
    table.
    """

    def check(self, routes: list[dict[str, Any]], requests: list[dict[str, Any]],
              expected: list[str | None], most: int) -> None:
        counter = _Counter()
        router = build(routes, cache_size=0, on_candidate=counter)
        for req, name in zip(requests, expected):
            match = request(router, **req)
            with self.subTest(request=req):
                self.assertEqual(match.route["name"] if match else None, name, f"row req={req!r} name={name!r}")
                self.assertLessEqual(counter.take(), most, f"row req={req!r} name={name!r}")

    def test_distinct_hosts(self) -> None:
        """
        With 10,000 routes on distinct hosts, a look-up evaluates only the
        route for its host.
        """
        routes = [route(f"r{i}", hosts=[f"h{i}.example.com"]) for i in range(10000)]
        self.check(
            routes,
            [{"host": "h7.example.com"}, {"host": "H9999.example.com:8000"},
             {"host": "nowhere.example.com"}, {"host": None}],
            ["r7", "r9999", None, None],
            most=1,
        )

    def test_distinct_prefixes(self) -> None:
        """
        With 10,000 routes on distinct path prefixes, a look-up evaluates
        only the routes whose prefix starts its path.
        """
        routes = [route(f"r{i}", paths=[f"/api/v{i}"]) for i in range(10000)]
        self.check(
            routes,
            [{"path": "/api/v1234/x"}, {"path": "/api/v12"}, {"path": "/other"}],
            ["r1234", "r12", None],
            most=4,
        )

    def test_distinct_hosts_and_prefixes(self) -> None:
        """
        Routes on 100 hosts with 100 prefixes each: a look-up evaluates the
        few routes of its host whose prefix starts its path.
        """
        routes = [route(f"r{h}-{p}", hosts=[f"h{h}.test"], paths=[f"/p{p}"])
                  for h in range(100) for p in range(100)]
        self.check(
            routes,
            [{"host": "h42.test", "path": "/p17/x"}, {"host": "h42.test", "path": "/q"}],
            ["r42-17", None],
            most=2,
        )

    def test_distinct_wildcard_hosts(self) -> None:
        """
        With 10,000 leftmost and rightmost wildcard hosts, a look-up
        evaluates only the wildcards that fit its host.
        """
        routes = [route(f"l{i}", hosts=[f"*.d{i}.com"]) for i in range(5000)]
        routes += [route(f"r{i}", hosts=[f"e{i}.*"]) for i in range(5000)]
        self.check(
            routes,
            [{"host": "a.b.d77.com"}, {"host": "e77.co.uk"}, {"host": "d77.com"}],
            ["l77", "r77", None],
            most=1,
        )

    def test_distinct_regexes(self) -> None:
        """
        Regex paths are filed under their literal start, so 10,000 of them
        cost a look-up no more than the ones that could match.
        """
        routes = [route(f"r{i}", paths=[rf"~/items{i}/\d+$"]) for i in range(10000)]
        routes.append(route("alt", paths=[r"~/x|/y"]))
        self.check(
            routes,
            [{"path": "/items42/7"}, {"path": "/items42/x"}, {"path": "/y"}],
            ["r42", None, "alt"],
            most=3,
        )

    def test_hostless_routes_stay_candidates(self) -> None:
        """
        A request with a host still considers the routes that set no host.
        """
        routes = [route(f"h{i}", hosts=[f"h{i}.test"], paths=["/only"]) for i in range(1000)]
        routes.append(route("any", paths=["/"]))
        self.check(routes, [{"host": "h1.test", "path": "/x"}], ["any"], most=2)

    def test_complete(self) -> None:
        """
        The index never hides a route that matches: every route that
        matches a request on its own is evaluated for that request, and the
        answer is the one an unindexed table gives.
        """
        hosts = [None, ["a.com"], ["A.com:8080"], ["*.a.com"], ["a.*"], ["b.a.com", "*.com"]]
        paths = [None, ["/"], ["/x"], ["/x/y", "/z"], [r"~/x/\d+"], ["~(?i)/X"], ["~/x|/z"],
                 ["~^/x/(?<n>y)"], ["~/xz?"]]
        methods = [None, ["GET"]]
        headers = [None, {"x-v": ["1"]}]
        routes = [route(f"r{n}", hosts=h, paths=p, methods=m, headers=hd)
                  for n, (h, p, m, hd) in enumerate(itertools.product(hosts, paths, methods, headers))]
        routes = [r for r in routes if r["hosts"] or r["paths"] or r["methods"] or r["headers"]]
        counter = _Counter()
        router = build(routes, cache_size=0, on_candidate=counter)
        alone = {r["id"]: build([r], cache_size=0, indexed=False) for r in routes}
        unindexed = build(routes, cache_size=0, indexed=False)
        for host, path, method, hdrs in itertools.product(
            [None, "a.com", "a.com:8080", "b.a.com", "a.org", "c.b.a.com:8080"],
            ["/", "/x", "/x/1", "/x/y/z", "/X", "/z", "/q"],
            ["GET", "POST"],
            [{}, {"x-v": ["1"]}],
        ):
            req = {"host": host, "path": path, "method": method, "headers": hdrs}
            match = request(router, **req)
            evaluated = {r["id"] for r in counter.evaluated}
            counter.take()
            matching = {rid for rid, single in alone.items() if request(single, **req)}
            with self.subTest(request=req):
                self.assertLessEqual(matching, evaluated,
                                     f"row host={host!r} path={path!r} method={method!r} hdrs={hdrs!r}")
                self.assertEqual(match is not None, bool(matching),
                                 f"row host={host!r} path={path!r} method={method!r} hdrs={hdrs!r}")
                if match is not None:
                    self.assertIn(match.route["id"], matching,
                                  f"row host={host!r} path={path!r} method={method!r} hdrs={hdrs!r}")
                self.assertEqual(match, request(unindexed, **req),
                                 f"row host={host!r} path={path!r} method={method!r} hdrs={hdrs!r}")

    def test_unindexed(self) -> None:
        """
        An unindexed table evaluates every route, and gives the same answer.
        """
        counter = _Counter()
        routes = [route(f"r{i}", hosts=[f"h{i}.test"]) for i in range(50)]
        router = build(routes, cache_size=0, on_candidate=counter, indexed=False)
        match = request(router, host="h7.test")
        assert match is not None
        self.assertEqual(match.route["name"], "r7")
        self.assertEqual(counter.take(), 50)


class CacheTests(SynchronousTestCase):
    """
    Recent look-ups are remembered, keyed on everything that can change the
    answer.
    """

    def test_hit(self) -> None:
        """
        The same request again evaluates no route and gives the same match.
        """
        counter = _Counter()
        router = build([route(paths=["/a"])], on_candidate=counter)
        first = request(router, path="/a/b")
        self.assertEqual(counter.take(), 1)
        self.assertIs(request(router, path="/a/b"), first)
        self.assertEqual(counter.take(), 0)

    def test_miss_is_remembered(self) -> None:
        """
        A request that matched nothing is remembered too.
        """
        counter = _Counter()
        router = build([route(paths=["/a"], methods=["GET"])], on_candidate=counter)
        self.assertIsNone(request(router, method="POST", path="/a"))
        self.assertIsNone(request(router, method="POST", path="/a"))
        self.assertEqual(counter.take(), 1)

    def test_key(self) -> None:
        """
        Method, host, path, scheme and the values of conditioned headers
        each change the answer, so each is part of the key.
        """
        routes = [
            route("get", methods=["GET"]),
            route("host", hosts=["a.com:80"], paths=["/h"]),
            route("v1", headers={"x-v": ["1"]}, paths=["/"]),
            route("v2", headers={"x-v": ["2"]}, paths=["/"]),
            route("deep", paths=["/deep"], headers={"x-v": ["1", "2"]}),
        ]
        router = build(routes)
        cases = [
            ({"method": "GET", "path": "/q"}, "get"),
            ({"method": "PUT", "path": "/q"}, None),
            ({"host": "a.com", "path": "/h", "method": "POST"}, "host"),
            ({"host": "a.com", "path": "/h", "method": "POST", "scheme": "https"}, None),
            ({"host": "a.com:80", "path": "/h", "method": "POST"}, "host"),
            ({"host": "b.com", "path": "/h", "method": "POST"}, None),
            ({"path": "/", "headers": {"x-v": ["1"]}, "method": "POST"}, "v1"),
            ({"path": "/", "headers": {"x-v": ["2"]}, "method": "POST"}, "v2"),
            ({"path": "/", "headers": {"x-v": ["3"]}, "method": "POST"}, None),
            ({"path": "/deep", "headers": {"x-v": ["2"]}, "method": "POST"}, "deep"),
            ({"path": "/", "headers": {"x-v": ["3"]}, "method": "POST"}, None),
        ]
        for _ in range(2):
            for req, expected in cases:
                match = request(router, **req)
                with self.subTest(request=req):
                    self.assertEqual(match.route["name"] if match else None, expected,
                                     f"row req={req!r} expected={expected!r}")

    def test_unconditioned_headers_share_entries(self) -> None:
        """
        Headers that no route conditions on do not split the cache.
        """
        counter = _Counter()
        router = build([route(paths=["/"], headers={"x-v": ["1"]})], on_candidate=counter)
        request(router, path="/", headers={"x-v": ["1"], "x-trace": ["a"]})
        request(router, path="/", headers={"x-v": ["1"], "x-trace": ["b"]})
        self.assertEqual(counter.take(), 1)

    def test_bounded(self) -> None:
        """
        The cache keeps at most C{cache_size} look-ups, dropping the least
        recently used.
        """
        counter = _Counter()
        router = build([route(paths=["/"])], cache_size=2, on_candidate=counter)
        for path in ("/a", "/b", "/a", "/c"):
            request(router, path=path)
        self.assertEqual(counter.take(), 3)
        request(router, path="/a")
        self.assertEqual(counter.take(), 0)
        request(router, path="/b")
        self.assertEqual(counter.take(), 1)

    def test_disabled(self) -> None:
        """
        With C{cache_size=0} every look-up evaluates the routes.
        """
        counter = _Counter()
        router = build([route(paths=["/"])], cache_size=0, on_candidate=counter)
        request(router, path="/a")
        request(router, path="/a")
        self.assertEqual(counter.take(), 2)
