"""
What the single-purpose bench scripts (C{bench/balancing.py},
C{bench/tls.py}, C{bench/uploads.py}, C{bench/websocket.py}) share: their
work directory and tear-down, their options' defaults and range checks,
and the lines they print for rounds, summaries and ratios.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence, TypeVar

from bench.loadgen import LoadResult
from bench.processes import BenchError, stop_all
from bench.report import Summary

__all__ = ["WorkDirectory", "check_ranges", "fill_defaults", "load_average", "ratio_text", "rotated",
           "round_text", "runs_text", "say", "summary_text"]

_T = TypeVar("_T")


def say(text: str) -> None:
    """
    Print C{text} at once (the scripts' output is read as it comes).
    """
    print(text, flush=True)


class WorkDirectory:
    """
    A script's work directory (logs, configs), as a context manager: made
    on entering; on leaving, every process started is stopped (and then
    whatever L{stop_also} was given), and the directory removed unless
    kept. A L{BenchError} raised inside is reported (the directory kept,
    for its logs) and ends the block, with L{status} 1.

    @ivar path: the directory, once entered.
    @ivar status: the script's exit status: 0, or 1 after a L{BenchError}.
    """

    def __init__(self, prefix: str, keep: bool, mode: int | None = None) -> None:
        """
        @param prefix: the start of the directory's name.
        @param keep: keep the directory after a run that succeeded.
        @param mode: the directory's permissions, when others (a server
            run as another user) must read it.
        """
        self._prefix = prefix
        self._keep = keep
        self._mode = mode
        self._stops: list[Callable[[], None]] = []
        self.path = Path()
        self.status = 0

    def stop_also(self, stop: Callable[[], None]) -> None:
        """
        Call C{stop} on leaving, after the started processes are stopped.
        """
        self._stops.append(stop)

    def __enter__(self) -> WorkDirectory:
        self.path = Path(tempfile.mkdtemp(prefix=self._prefix))
        if self._mode is not None:
            self.path.chmod(self._mode)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        failed = isinstance(value, BenchError)
        try:
            if failed:
                say(f"bench: {value}\n(work directory kept: {self.path})")
                self.status = 1
        finally:
            stop_all()
            for stop in self._stops:
                stop()
        if value is None:
            if self._keep:
                say(f"work directory kept: {self.path}")
            else:
                shutil.rmtree(self.path, ignore_errors=True)
        return failed


def fill_defaults(arguments: argparse.Namespace, defaults: Sequence[tuple[str, float, float]]) -> None:
    """
    Give each option of C{defaults} (its destination, its default, its
    default with C{--quick}) that was not given its default.
    """
    for name, full, short in defaults:
        if getattr(arguments, name) is None:
            setattr(arguments, name, short if arguments.quick else full)


def check_ranges(parser: argparse.ArgumentParser, arguments: argparse.Namespace,
                 ranges: Sequence[tuple[str | tuple[str, ...], float, float]]) -> None:
    """
    Stop, through C{parser.error}, at the first of C{ranges} (an option's
    destination, or several sharing one message; the lowest and highest
    value allowed) whose value is out of range.
    """
    for names, low, high in ranges:
        together = (names,) if isinstance(names, str) else names
        if not all(low <= getattr(arguments, name) <= high for name in together):
            options = " and ".join("--" + name.replace("_", "-") for name in together)
            parser.error(f"{options} must be between {low} and {high}")


def rotated(cases: Sequence[_T], number: int) -> list[_T]:
    """
    C{cases} in round C{number}'s order: the first round's, rotated by
    one case a round.
    """
    start = number % len(cases)
    return list(cases[start:]) + list(cases[:start])


def runs_text(values: Sequence[float], form: str) -> str:
    """
    Each round's C{values}, in C{form}, comma-separated.
    """
    return ", ".join(format(value, form) for value in values)


def round_text(number: int, case: str, width: int, result: LoadResult, unit: str = "req/s") -> str:
    """
    The line a load run of round C{number} (counted from 0) prints.
    """
    return (f"round {number + 1}  {case:>{width}}: {result.rps:9,.0f} {unit}  p50 {result.p50_ms:5.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms  server CPU {result.cpu:.0%}"
            + (f"  errors {result.errors}" if result.error_count else ""))


def summary_text(case: str, width: int, summary: Summary, unit: str = "req/s") -> str:
    """
    The start of a case's summary line: its median rate and each round's.
    """
    return f"{case:>{width}}: {summary.rps:9,.0f} {unit} (median; runs {runs_text(summary.all_rps, ',.0f')})"


def ratio_text(name: str, value: float, each: Sequence[float], note: str = "") -> str:
    """
    A ratio's line: its value and each round's, then C{note}.
    """
    return f"{name}: {value:.3f} (rounds: {runs_text(each, '.3f')}{note})"


def load_average() -> str:
    """
    The line with the machine's load average, which the scripts end with.
    """
    return "load average: " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def last_json_with(output: str, key: str) -> dict[str, Any] | None:
    """
    The last line of C{output} that is a JSON object with C{key} (a load
    generator's figures), or C{None} when there is none (it failed).
    """
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if isinstance(found, dict) and key in found:
                return found
    return None
