"""
Tests for the gRPC benchmark's own logic (L{bench.grpc_calls}); they start no
process.
"""
from __future__ import annotations

import json

from twisted.trial import unittest

from bench.grpc_calls import parse_arguments, parse_generator, result_of

_FOUND = {"calls": 12000, "seconds": 3.0, "errors": {"UNAVAILABLE": 2}, "p50_ms": 5.5, "p90_ms": 8.0,
          "p99_ms": 11.0, "max_ms": 20.0}


class ParseGeneratorTests(unittest.TestCase):
    def test_lastObject(self) -> None:
        """The generator's figures are its last JSON line with C{calls}."""
        output = "a warning\n" + json.dumps(_FOUND) + "\n" + json.dumps({"other": 1}) + "\n"
        self.assertEqual(parse_generator(output), _FOUND)

    def test_none(self) -> None:
        """Output without figures (a traceback) is C{None}."""
        self.assertIsNone(parse_generator("Traceback (most recent call last):\n  {broken\n"))


class ResultOfTests(unittest.TestCase):
    def test_result(self) -> None:
        """Calls are the requests; CPU is per second of the run; errors by status."""
        result = result_of(_FOUND, 1024, 1.5)
        self.assertEqual((result.requests, result.rps, result.cpu, result.errors, result.peak_rss_kb),
                         (12000, 4000.0, 0.5, {"UNAVAILABLE": 2}, 1024))


class ArgumentsTests(unittest.TestCase):
    def test_quick(self) -> None:
        """--quick shortens every measurement; 50 calls in flight by default."""
        arguments = parse_arguments(["--quick"])
        self.assertEqual((arguments.rounds, arguments.seconds, arguments.warmup, arguments.concurrency),
                         (2, 3, 1, 50))

    def test_bounded(self) -> None:
        """Longer runs, more rounds or calls in flight than the bounds, or another host, are refused."""
        for argv in (["--seconds", "11"], ["--rounds", "11"], ["--concurrency", "1001"], ["--concurrency", "0"],
                     ["--generate", "example.com:50051"]):
            self.assertRaises(SystemExit, parse_arguments, argv)
