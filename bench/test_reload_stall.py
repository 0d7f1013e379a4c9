"""
Tests for the reload stall benchmark's own logic (L{bench.reload_stall});
they start no process.
"""
from __future__ import annotations

from twisted.trial import unittest

from bench.reload_stall import longest_hold, write


class LongestHoldTests(unittest.TestCase):
    def test_window(self) -> None:
        """The longest CPU time among the probe's lines inside the window."""
        lines = "100.0 9.0 8.0\n101.5 30.0 3.0\n102.0 12.0 11.5\n103.5 50.0 40.0\n"
        self.assertEqual(longest_hold(lines, 100.5, 103.0), 11.5)

    def test_none(self) -> None:
        """No line in the window: 0.0."""
        self.assertEqual(longest_hold("100.0 9.0 8.0\n\n", 200.0, 300.0), 0.0)


class _Node:
    """
    Records the Admin API calls of L{write}.
    """

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.api = self

    def post(self, path: str, fields: list) -> None:
        self.calls.append(("post", path, fields))

    def add_route(self, service: str, name: str, paths: list) -> None:
        self.calls.append(("route", service, name, paths))


class WriteTests(unittest.TestCase):
    def test_route(self) -> None:
        """A route write adds route C{change-N}."""
        node = _Node()
        write(node, 3, "routes")
        self.assertEqual(node.calls, [("route", "bench", "change-3", ["/change/3"])])

    def test_key(self) -> None:
        """A key write adds a key-auth key to filler consumer N."""
        node = _Node()
        write(node, 3, "keys")
        self.assertEqual(node.calls, [("post", "/consumers/filler-3/key-auth", [("key", "change-key-3")])])
