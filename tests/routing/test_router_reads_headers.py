"""
L{Router.reads_headers}: whether a look-up reads the request's headers at
all (the gateway gives a router that reads none an empty mapping instead
of a view of the request's headers).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from twisted.trial.unittest import SynchronousTestCase

from tests.routing.test_router import build, route


class _Untouchable(Mapping[str, Any]):
    """
    Headers that fail the test when read.
    """

    def __getitem__(self, name: str) -> Any:
        raise AssertionError(f"header {name!r} read")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("headers listed")

    def __len__(self) -> int:
        raise AssertionError("headers counted")


class ReadsHeadersTests(SynchronousTestCase):
    """
    A router reads headers only when some route matches on them.
    """

    def test_noHeaderRoutes(self) -> None:
        """
        Without a route that matches on headers, C{reads_headers} is false,
        and look-ups (hits and misses, cached or not) never read them.
        """
        for cache_size in (0, 10):
            router = build([route("a", paths=["/a"]), route("b", hosts=["b.example"], methods=["GET"])],
                           cache_size=cache_size)
            self.assertFalse(router.reads_headers)
            for _ in range(2):
                self.assertEqual(router.match("GET", "b.example", "/x", _Untouchable()).route["name"], "b")
                self.assertEqual(router.match("GET", None, "/a/1", _Untouchable()).route["name"], "a")
                self.assertIsNone(router.match("GET", None, "/none", _Untouchable()))

    def test_headerRoute(self) -> None:
        """
        With a route that matches on a header, C{reads_headers} is true.
        """
        router = build([route("a", paths=["/a"]), route("h", headers={"x-v": ["1"]})])
        self.assertTrue(router.reads_headers)
        self.assertEqual(router.match("GET", None, "/q", {"x-v": ["1"]}).route["name"], "h")
