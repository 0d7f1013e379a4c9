"""
Running a generator of build steps in tests (a snapshot's compile, an
index built in steps) to its end.
"""
from __future__ import annotations

from typing import Any


def run_steps(steps: Any) -> tuple[int, Any]:
    """
    Run a generator of steps to its end: how many times it yielded, and
    what it returned.
    """
    yielded = 0
    try:
        while True:
            next(steps)
            yielded += 1
    except StopIteration as stop:
        return yielded, stop.value
