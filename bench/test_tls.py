"""
Tests for the TLS benchmark's own logic (L{bench.tls}); they start no
process.
"""
from __future__ import annotations

from twisted.trial import unittest

from bench.tls import Handshakes, parse_arguments, parse_s_time

#: What C{openssl s_time -reuse -tls1_2 -time 1} prints (OpenSSL 3.0).
_REUSED = """\
Collecting connection statistics for 1 seconds
rrrrr

5 connections in 0.32s; 15.63 connections/user sec, bytes read 0
5 connections in 2 real seconds, 0 bytes read per connection


Now timing with session id reuse.
starting
"""

_NEW = """\
Collecting connection statistics for 1 seconds
***

3 connections in 0.46s; 6.52 connections/user sec, bytes read 0
3 connections in 2 real seconds, 0 bytes read per connection
"""


class ParseSTimeTests(unittest.TestCase):
    def test_resumed(self) -> None:
        """The count of the real-seconds line, and one resumed session per C{r}."""
        self.assertEqual(parse_s_time(_REUSED), (5, 5))

    def test_new(self) -> None:
        """Full handshakes (C{*}) are not counted as resumed."""
        self.assertEqual(parse_s_time(_NEW), (3, 0))

    def test_noCount(self) -> None:
        """Output without a count (a connection error) is C{None}."""
        self.assertIsNone(parse_s_time("connect: Connection refused\nconnect:errno=111\n"))


class HandshakesTests(unittest.TestCase):
    def test_rate(self) -> None:
        """The rate is the connections over the measured wall time."""
        self.assertEqual(Handshakes(connections=3000, resumed=0, seconds=2.5, cpu=0.9).rate, 1200.0)


class ArgumentsTests(unittest.TestCase):
    def test_quick(self) -> None:
        """--quick shortens every measurement."""
        arguments = parse_arguments(["--quick"])
        self.assertEqual((arguments.rounds, arguments.seconds, arguments.warmup, arguments.handshake_seconds),
                         (2, 3, 1, 2))

    def test_bounded(self) -> None:
        """Longer measurements, more rounds or more clients than the bounds are refused."""
        for argv in (["--seconds", "11"], ["--handshake-seconds", "60"], ["--rounds", "11"], ["--clients", "9"],
                     ["--clients", "0"]):
            self.assertRaises(SystemExit, parse_arguments, argv)
