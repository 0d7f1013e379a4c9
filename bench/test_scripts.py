"""
Tests for what the bench scripts share (L{bench.scripts}); they start no
process.
"""
from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout
from pathlib import Path

from twisted.trial import unittest

from bench.loadgen import LoadResult
from bench.processes import BenchError
from bench.scripts import WorkDirectory, check_ranges, fill_defaults, ratio_text, rotated, round_text


class WorkDirectoryTests(unittest.TestCase):
    """
    L{WorkDirectory} makes the work directory and tears it down.
    """

    def test_removedAfterSuccess(self) -> None:
        """A run that succeeds removes the directory, and its status is 0."""
        with redirect_stdout(io.StringIO()), WorkDirectory("echogate-test-", keep=False) as work:
            self.assertTrue(work.path.is_dir())
        self.assertFalse(work.path.exists())
        self.assertEqual(work.status, 0)

    def test_keep(self) -> None:
        """With keep, the directory stays, and the script says where."""
        out = io.StringIO()
        with redirect_stdout(out), WorkDirectory("echogate-test-", keep=True, mode=0o755) as work:
            pass
        self.addCleanup(work.path.rmdir)
        self.assertEqual(work.path.stat().st_mode & 0o777, 0o755)
        self.assertEqual(out.getvalue(), f"work directory kept: {work.path}\n")

    def test_benchError(self) -> None:
        """
        A L{BenchError} is reported, ends the block with status 1 and keeps
        the directory; the extra stops run.
        """
        out = io.StringIO()
        stopped: list[str] = []
        with redirect_stdout(out), WorkDirectory("echogate-test-", keep=False) as work:
            work.stop_also(lambda: stopped.append("server"))
            raise BenchError("no nginx")
        self.addCleanup(work.path.rmdir)
        self.assertEqual(work.status, 1)
        self.assertEqual(stopped, ["server"])
        self.assertEqual(out.getvalue(), f"bench: no nginx\n(work directory kept: {work.path})\n")

    def test_otherErrorPropagates(self) -> None:
        """Any other exception goes on, after the stops, the directory kept."""
        stopped: list[str] = []
        directory = Path()

        def run() -> None:
            nonlocal directory
            with WorkDirectory("echogate-test-", keep=False) as work:
                directory = work.path
                work.stop_also(lambda: stopped.append("server"))
                raise KeyError("x")

        self.assertRaises(KeyError, run)
        self.addCleanup(directory.rmdir)
        self.assertEqual(stopped, ["server"])


class OptionTests(unittest.TestCase):
    """
    L{fill_defaults} and L{check_ranges}.
    """

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser()
        parser.add_argument("--quick", action="store_true")
        parser.add_argument("--rounds", type=int)
        parser.add_argument("--handshake-seconds", type=int)
        return parser

    def test_defaults(self) -> None:
        """Options not given take their default, or their C{--quick} one."""
        arguments = self.parser().parse_args([])
        fill_defaults(arguments, (("rounds", 3, 2), ("handshake_seconds", 5, 2)))
        self.assertEqual((arguments.rounds, arguments.handshake_seconds), (3, 5))
        quick = self.parser().parse_args(["--quick", "--rounds", "4"])
        fill_defaults(quick, (("rounds", 3, 2), ("handshake_seconds", 5, 2)))
        self.assertEqual((quick.rounds, quick.handshake_seconds), (4, 2))

    def test_inRange(self) -> None:
        """Values within their ranges pass."""
        parser = self.parser()
        arguments = parser.parse_args(["--rounds", "1", "--handshake-seconds", "10"])
        check_ranges(parser, arguments, (("rounds", 1, 10), (("rounds", "handshake_seconds"), 1, 10)))

    def test_outOfRange(self) -> None:
        """A value out of range stops with the option's names in the message."""
        for argv, message in ((["--rounds", "0", "--handshake-seconds", "1"], "--rounds must be between 1 and 10"),
                              (["--rounds", "1", "--handshake-seconds", "11"],
                               "--rounds and --handshake-seconds must be between 1 and 10")):
            parser = self.parser()
            arguments = parser.parse_args(argv)
            errors = io.StringIO()
            parser.print_usage = lambda file=None: None  # type: ignore[method-assign]
            parser._print_message = lambda text, file=None, errors=errors: errors.write(text)  # type: ignore[method-assign,misc]
            self.assertRaises(SystemExit, check_ranges, parser, arguments,
                              (("rounds", 1, 10), (("rounds", "handshake_seconds"), 1, 10)))
            self.assertIn(message, errors.getvalue())


class TextTests(unittest.TestCase):
    """
    The lines the scripts print.
    """

    def test_rotated(self) -> None:
        """Each round starts one case later."""
        self.assertEqual([rotated(("a", "b", "c"), n) for n in range(4)],
                         [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]])

    def test_ratio(self) -> None:
        """A ratio, each round's, then the note."""
        self.assertEqual(ratio_text("a / b", 0.91234, (0.9, 0.95), "; goal >= 0.9"),
                         "a / b: 0.912 (rounds: 0.900, 0.950; goal >= 0.9)")

    def test_round(self) -> None:
        """A round's line, with its errors when there are any."""
        result = LoadResult(requests=2000, seconds=2.0, bytes=0, errors={"timeout": 1}, p50_ms=1.5, p90_ms=2.0,
                            p99_ms=12.25, max_ms=20.0, peak_rss_kb=0, cpu=0.5)
        self.assertEqual(round_text(0, "echogate", 10, result, "msg/s"),
                         "round 1    echogate:     1,000 msg/s  p50  1.50 ms  p99  12.25 ms  server CPU 50%"
                         "  errors {'timeout': 1}")
