"""
Tests for the HTTP/2 benchmark's own logic (L{bench.http2}); they start no
process.
"""
from __future__ import annotations

from twisted.trial import unittest

from bench.http2 import H2LOAD, Case, cases, h2load_argv, parse_arguments, parse_h2load

_OUTPUT = """\
starting benchmark...
Application protocol: h2c
finished in 3.00s, 9000.50 req/s, 1.20MB/s
requests: 27003 total, 27050 started, 27003 done, 27000 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 26990 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 3.50MB (3670016) total, 300.00KB (307200) headers (space savings 90.00%), 2.57MB (2700000) data
                     min         max         mean         sd        +/- sd
time for request:      250us     12.50ms      5.25ms      1.00ms    70.00%
time for connect:      100us       900us       400us       200us    60.00%
"""


class ParseH2loadTests(unittest.TestCase):
    def test_summary(self) -> None:
        """2xx answers over the time h2load reports; the failures by kind; mean and max latency."""
        result = parse_h2load(_OUTPUT, 2048, 1.5)
        assert result is not None
        self.assertEqual((result.requests, result.seconds, result.bytes, result.peak_rss_kb, result.cpu),
                         (26990, 3.0, 3670016, 2048, 0.5))
        self.assertEqual(result.errors, {"failed": 3, "errored": 2, "timeout": 1, "status": 10})
        self.assertEqual((result.p50_ms, result.max_ms, result.p99_ms), (5.25, 12.5, 0.0))

    def test_units(self) -> None:
        """Milliseconds of run time, and latencies in microseconds or seconds."""
        output = (_OUTPUT.replace("finished in 3.00s", "finished in 500.00ms")
                  .replace("12.50ms      5.25ms", "1.50s      750us"))
        result = parse_h2load(output)
        assert result is not None
        self.assertEqual((result.seconds, result.max_ms, result.p50_ms), (0.5, 1500.0, 0.75))

    def test_none(self) -> None:
        """Output without a summary (h2load could not connect): C{None}."""
        self.assertIsNone(parse_h2load("starting benchmark...\nNo protocol negotiated. Aborted.\n"))


class CasesTests(unittest.TestCase):
    def test_sameStreams(self) -> None:
        """Every case has as many requests in flight as wrk's connections."""
        every = cases(50)
        self.assertEqual([c.name for c in every], ["h1-wrk", "h1-h2load", "h2c", "h2c-mux", "h2-tls"])
        self.assertEqual({c.connections * c.streams for c in every}, {50})

    def test_argv(self) -> None:
        """h2load for a time, one thread, pinned; C{--h1} for the HTTP/1.1 case."""
        argv = h2load_argv(Case("x", "h2load", "h2c", 10, 5), "http://127.0.0.1:1/100b", 3, "0")
        self.assertEqual(argv, ["taskset", "-c", "0", H2LOAD, "-t", "1", "-c", "10", "-m", "5", "-D", "3",
                                "http://127.0.0.1:1/100b"])
        self.assertIn("--h1", h2load_argv(cases(50)[1], "http://127.0.0.1:1/", 3, None))


class ArgumentsTests(unittest.TestCase):
    def test_quick(self) -> None:
        """--quick shortens every measurement; 50 connections by default."""
        arguments = parse_arguments(["--quick"])
        self.assertEqual((arguments.rounds, arguments.seconds, arguments.warmup, arguments.connections),
                         (2, 3, 1, 50))

    def test_bounded(self) -> None:
        """Longer runs, more rounds or connections than the bounds are refused."""
        for argv in (["--seconds", "11"], ["--rounds", "11"], ["--connections", "501"], ["--connections", "0"]):
            self.assertRaises(SystemExit, parse_arguments, argv)
