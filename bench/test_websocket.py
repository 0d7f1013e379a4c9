"""
Tests for the WebSocket benchmark's own logic (L{bench.websocket}); they
start no process.
"""
from __future__ import annotations

import json

from twisted.trial import unittest

from bench.loadgen import LoadResult
from bench.websocket import cpu_per_message, parse_arguments, parse_generator, percentile, result_of

_FOUND = {"messages": 30000, "seconds": 3.0, "connected": 100, "errors": {"message: ConnectionClosedError": 2},
          "p50_ms": 5.5, "p90_ms": 8.0, "p99_ms": 11.0, "max_ms": 20.0}


class PercentileTests(unittest.TestCase):
    def test_nearestRank(self) -> None:
        """The nearest-rank percentile of unsorted values."""
        values = [float(v) for v in range(100, 0, -1)]
        self.assertEqual((percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)),
                         (50.0, 99.0, 100.0))

    def test_empty(self) -> None:
        """No values: 0.0."""
        self.assertEqual(percentile([], 0.5), 0.0)


class ParseGeneratorTests(unittest.TestCase):
    def test_lastObject(self) -> None:
        """The generator's figures are its last JSON line with C{messages}."""
        output = "some warning\n" + json.dumps(_FOUND) + "\n" + json.dumps({"other": 1}) + "\n"
        self.assertEqual(parse_generator(output), _FOUND)

    def test_none(self) -> None:
        """Output without figures (a traceback) is C{None}."""
        self.assertIsNone(parse_generator("Traceback (most recent call last):\n  {broken\n"))


class ResultOfTests(unittest.TestCase):
    def test_result(self) -> None:
        """Messages are the requests; bytes go both ways; CPU is per second of the run."""
        result = result_of(_FOUND, 32, 1024, 1.5)
        self.assertEqual((result.requests, result.rps, result.bytes, result.cpu, result.error_count,
                          result.peak_rss_kb), (30000, 10000.0, 30000 * 64, 0.5, 2, 1024))


class CpuPerMessageTests(unittest.TestCase):
    def test_median(self) -> None:
        """The server's CPU per message is the median over the runs, in microseconds."""
        runs = [LoadResult(requests=r, seconds=1.0, bytes=0, errors={}, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0,
                           max_ms=1.0, peak_rss_kb=0, cpu=0.5) for r in (10_000, 5_000, 20_000)]
        self.assertAlmostEqual(cpu_per_message(runs), 50.0)


class ArgumentsTests(unittest.TestCase):
    def test_quick(self) -> None:
        """--quick shortens every measurement; 100 connections of 32 bytes by default."""
        arguments = parse_arguments(["--quick"])
        self.assertEqual((arguments.rounds, arguments.seconds, arguments.warmup, arguments.connections,
                          arguments.size), (2, 3, 1, 100, 32))

    def test_bounded(self) -> None:
        """Longer runs, more rounds, connections or bytes than the bounds, or another host, are refused."""
        for argv in (["--seconds", "11"], ["--rounds", "11"], ["--connections", "1001"], ["--connections", "0"],
                     ["--size", "70000"], ["--generate", "ws://example.com/"]):
            self.assertRaises(SystemExit, parse_arguments, argv)
