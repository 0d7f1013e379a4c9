"""
Tests for the reload stall benchmark's own logic (L{bench.reload_stall});
they start no process.
"""
from __future__ import annotations

from twisted.trial import unittest

from bench.reload_stall import longest_hold


class LongestHoldTests(unittest.TestCase):
    def test_window(self) -> None:
        """The longest CPU time among the probe's lines inside the window."""
        lines = "100.0 9.0 8.0\n101.5 30.0 3.0\n102.0 12.0 11.5\n103.5 50.0 40.0\n"
        self.assertEqual(longest_hold(lines, 100.5, 103.0), 11.5)

    def test_none(self) -> None:
        """No line in the window: 0.0."""
        self.assertEqual(longest_hold("100.0 9.0 8.0\n\n", 200.0, 300.0), 0.0)
