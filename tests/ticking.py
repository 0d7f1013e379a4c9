"""
A timer for tests of work done in time slices.
"""
from __future__ import annotations

from typing import Callable


def ticking() -> Callable[[], float]:
    """
    A timer that moves one second on at each reading: with slices of half
    a second, every slice is one step.
    """
    now = [0.0]

    def timer() -> float:
        now[0] += 1.0
        return now[0]

    return timer
