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
