"""
Tests for L{echogate.heap}: the C heap's trim threshold, and settling the
collector's heap.
"""
from __future__ import annotations

import gc
import platform
import weakref

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from echogate.heap import MAX_TRIM_THRESHOLD, HeapSettler, trim_threshold


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


class _Collector:
    """
    The parts of C{gc} a L{HeapSettler} uses, recording calls; C{frozen}
    is what C{get_freeze_count} answers.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frozen = 1000

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def get_freeze_count(self) -> int:
        return self.frozen


class HeapSettlerTests(SynchronousTestCase):
    """
    L{HeapSettler} makes a full pass the first time and when the heap's
    allocated blocks have grown by C{growth}, and otherwise only freezes
    what is new (no collection: one walks every frozen object).
    """

    def setUp(self) -> None:
        self.collector = _Collector()
        self.settle = HeapSettler(self.collector, growth=0.25, allocated=lambda: self.collector.frozen)

    def test_firstFull(self) -> None:
        """
        The first settling unfreezes, collects and freezes everything.
        """
        self.settle()
        self.assertEqual(self.collector.calls, ["unfreeze", "collect", "freeze"])
        self.assertEqual(self.settle.full_passes, 1)

    def test_thenYoung(self) -> None:
        """
        Later settlings only freeze while the heap has grown by no more
        than C{growth}.
        """
        self.settle()
        for frozen in (1000, 1250, 900, 1250):
            self.collector.calls.clear()
            self.collector.frozen = frozen
            self.settle()
            self.assertEqual(self.collector.calls, ["freeze"], frozen)
        self.assertEqual(self.settle.full_passes, 1)

    def test_grownFull(self) -> None:
        """
        Once the frozen heap has grown by more than C{growth} since the
        last full pass, the settling is a full pass, and the growth after
        it counts from what it left.
        """
        self.settle()
        self.collector.calls.clear()
        self.collector.frozen = 1251
        self.settle()
        self.assertEqual(self.collector.calls, ["freeze", "unfreeze", "collect", "freeze"])
        self.assertEqual(self.settle.full_passes, 2)
        self.collector.calls.clear()
        self.collector.frozen = 1500
        self.settle()
        self.assertEqual(self.collector.calls, ["freeze"])

    def test_noGenerations(self) -> None:
        """
        A collector without C{freeze} (PyPy's) is left alone.
        """
        HeapSettler(object())()

    def test_frozenCycleWaits(self) -> None:
        """
        With the real collector: a reference cycle frozen while in use and
        dropped afterwards outlives a settling that is not a full pass, and
        is freed by the next full pass.
        """
        if not hasattr(gc, "freeze"):
            raise SkipTest("this collector has no generations to freeze")
        self.addCleanup(gc.unfreeze)

        class Node:
            pass

        held = Node()
        held.self = held  # type: ignore[attr-defined]
        gone = weakref.ref(held)
        settle = HeapSettler(growth=10.0)
        settle()
        del held
        settle()
        self.assertIsNotNone(gone())
        settle._baseline = 0  # as if the frozen heap had grown past the threshold
        settle()
        self.assertIsNone(gone())
        self.assertEqual(settle.full_passes, 2)
