"""
Tests for L{echogate.heap} on a Python without C{sys.getallocatedblocks}
(PyPy): the module loads, and settling does nothing there.
"""
from __future__ import annotations

import runpy
import sys

from twisted.trial.unittest import SynchronousTestCase

import echogate.heap


class WithoutAllocatedBlocksTests(SynchronousTestCase):
    """
    PyPy's C{sys} has no C{getallocatedblocks}: echogate's data path
    imports L{echogate.heap} all the same (it once stopped echogate from
    running under PyPy at all).
    """

    def test_loads(self) -> None:
        """
        The module runs without C{sys.getallocatedblocks}, and its
        settler does nothing with a collector that cannot freeze.
        """
        real = sys.getallocatedblocks
        del sys.getallocatedblocks
        try:
            namespace = runpy.run_path(echogate.heap.__file__)
        finally:
            sys.getallocatedblocks = real

        class NoGenerations:
            collected = 0

            def collect(self) -> None:
                self.collected += 1

        collector = NoGenerations()
        namespace["HeapSettler"](collector)()
        self.assertEqual(collector.collected, 0)

    def test_releaseWithoutReferenceCounts(self) -> None:
        """
        Without C{sys.getrefcount} (PyPy counts no references), the module
        loads and L{echogate.heap.ReleaseInSlices} lets go of what it is
        given at once: nothing is held or scheduled.
        """
        from twisted.internet.task import Clock

        real = sys.getrefcount
        del sys.getrefcount
        try:
            namespace = runpy.run_path(echogate.heap.__file__)
        finally:
            sys.getrefcount = real
        clock = Clock()
        release = namespace["ReleaseInSlices"](clock)
        release({"a": [1, 2, 3]})
        self.assertEqual((release.pending, clock.getDelayedCalls()), (0, []))

