"""
Tests for L{echogate.heap}: the C heap's trim threshold.
"""
from __future__ import annotations

import platform

from twisted.trial.unittest import SynchronousTestCase

from echogate.heap import MAX_TRIM_THRESHOLD, trim_threshold


class _Libc:
    """
    A C library with glibc's C{mallopt}, recording what it is asked.
    """

    def __init__(self, answer: int = 1):
        self.calls: list[tuple[int, int]] = []
        self._answer = answer

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self._answer


class TrimThresholdTests(SynchronousTestCase):
    """
    L{trim_threshold} sets glibc's C{M_TRIM_THRESHOLD} where it can.
    """

    def test_set(self) -> None:
        """
        A size is passed to C{mallopt} as C{M_TRIM_THRESHOLD} (-1).
        """
        libc = _Libc()
        self.assertTrue(trim_threshold(16 * 1024 * 1024, libc))
        self.assertEqual(libc.calls, [(-1, 16 * 1024 * 1024)])

    def test_zeroLeavesIt(self) -> None:
        """
        C{0} leaves the C library's own threshold: C{mallopt} is not called.
        """
        libc = _Libc()
        self.assertFalse(trim_threshold(0, libc))
        self.assertEqual(libc.calls, [])

    def test_capped(self) -> None:
        """
        A size beyond what C{mallopt}'s C{int} takes is capped.
        """
        libc = _Libc()
        trim_threshold(2**40, libc)
        self.assertEqual(libc.calls, [(-1, MAX_TRIM_THRESHOLD)])

    def test_noMallopt(self) -> None:
        """
        A C library without C{mallopt} (not glibc) is left alone.
        """
        self.assertFalse(trim_threshold(1024, object()))

    def test_refused(self) -> None:
        """
        C{mallopt} answering 0 (refused) is reported as not set.
        """
        self.assertFalse(trim_threshold(1024, _Libc(answer=0)))

    def test_thisProcess(self) -> None:
        """
        On glibc, the process's own C library takes the threshold.
        """
        if platform.libc_ver()[0] != "glibc":
            raise self.skipTest("not a glibc system")
        self.assertTrue(trim_threshold(16 * 1024 * 1024))
