"""
Tests for L{echogate.heap}: the C heap's trim threshold, and settling the
collector's heap.
"""
from __future__ import annotations

import gc
import platform
import sys
import weakref
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from echogate.heap import MAX_TRIM_THRESHOLD, HeapSettler, ReleaseInSlices, trim_threshold
from tests.ticking import ticking


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


class _Dying:
    """
    An object that says when it is freed (appends its number to C{died}).
    """

    def __init__(self, number: int, died: list[int]):
        self.number = number
        self.died = died

    def __del__(self) -> None:
        self.died.append(self.number)


class _Holder:
    """
    An object holding others, as a snapshot holds its router.
    """

    def __init__(self, **parts: Any):
        self.__dict__.update(parts)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def _run(clock: Clock, release: ReleaseInSlices, between: Callable[[], object] = lambda: None,
         limit: int = 10_000) -> int:
    """
    Run what C{release} schedules on C{clock} until it has nothing left,
    calling C{between} after each call.

    @return: how many calls ran.
    """
    ran = 0
    while clock.getDelayedCalls() and ran < limit:
        clock.advance(max(0.0, clock.getDelayedCalls()[0].getTime() - clock.seconds()))
        ran += 1
        between()
    return ran


class ReleaseInSlicesTests(SynchronousTestCase):
    """
    L{ReleaseInSlices} waits until it is the only holder of what it is
    given, then frees it a slice at a time, changing nothing that anything
    else can reach.
    """

    def setUp(self) -> None:
        if not hasattr(sys, "getrefcount"):
            raise SkipTest("this interpreter counts no references")
        self.clock = Clock()
        self.release = ReleaseInSlices(self.clock, slice_seconds=0.5, timer=ticking())
        self.died: list[int] = []

    def _structure(self, count: int = 300) -> _Holder:
        return _Holder(table={n: (_Dying(n, self.died), n) for n in range(count)},
                       rows=[[_Dying(count + n, self.died)] for n in range(count)])

    def test_inSlices(self) -> None:
        """
        A structure that only the release holds is freed over many slices
        (one step each here: a few dozen items), all of it in the end.
        """
        self.release(self._structure())
        counts: list[int] = []
        ran = _run(self.clock, self.release, lambda: counts.append(len(self.died)))
        self.assertEqual(sorted(self.died), list(range(600)))
        self.assertGreater(ran, 10)
        self.assertLessEqual(max(b - a for a, b in zip([0] + counts, counts)), 64)
        self.assertEqual(self.release.pending, 0)

    def test_waitsForOtherHolders(self) -> None:
        """
        While something else holds the structure (a request still serving
        a replaced snapshot) nothing of it is touched; once that lets go,
        the release frees it.
        """
        structure = self._structure(100)
        self.release(structure)
        for _ in range(100):
            self.clock.advance(0.01)
        self.assertEqual(self.died, [])
        self.assertEqual((len(structure.table), len(structure.rows)), (100, 100))
        self.assertEqual(self.release.pending, 1)
        del structure
        _run(self.clock, self.release)
        self.assertEqual(sorted(self.died), list(range(200)))

    def test_sharedPartsKept(self) -> None:
        """
        A container that something else also refers to is not emptied, and
        an object something refers to weakly is not opened: whenever it can
        still be reached, it is whole.
        """
        shared = {n: _Dying(n, self.died) for n in range(100)}
        weakly = _Holder(items={n: _Dying(100 + n, self.died) for n in range(100)})
        reference = weakref.ref(weakly)
        structure = (shared, weakly, [_Dying(200 + n, []) for n in range(200)])
        del weakly
        self.release(structure)
        del structure

        def whole() -> None:
            seen = reference()
            if seen is not None:
                self.assertEqual(len(seen.items), 100)

        _run(self.clock, self.release, whole)
        self.assertEqual(len(shared), 100)
        self.assertIsNone(reference())
        self.assertEqual(sorted(self.died), list(range(100, 200)))

    def test_takenHoldOf(self) -> None:
        """
        An object that something took hold of again (through a weak
        reference) while the release held it alone is not opened: it stays
        whole.
        """
        holder = _Holder(items={n: _Dying(n, self.died) for n in range(100)})
        reference = weakref.ref(holder)
        self.release((holder, [object() for _ in range(300)]))
        del holder
        kept: list[_Holder] = []

        def take_hold() -> None:
            held = reference()
            if not kept and self.release.pending and held is not None:
                kept.append(held)

        _run(self.clock, self.release, take_hold)
        self.assertEqual(len(kept), 1)
        self.assertEqual(len(kept[0].items), 100)
        self.assertEqual(self.died, [])

    def test_patience(self) -> None:
        """
        A structure still held elsewhere after C{patience} seconds is let
        go of, untouched, and nothing more is scheduled.
        """
        release = ReleaseInSlices(self.clock, poll=1.0, patience=10.0)
        structure = self._structure(10)
        release(structure)
        self.clock.advance(5.0)
        self.assertEqual(release.pending, 1)
        for _ in range(10):
            self.clock.advance(1.0)
        self.assertEqual(release.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(structure.table), 10)

    def test_givenTwice(self) -> None:
        """
        A structure given twice is waited for once (two entries would each
        count as another holder of it).
        """
        structure = self._structure(10)
        self.release(structure)
        self.release(structure)
        self.assertEqual(self.release.pending, 1)
        del structure
        _run(self.clock, self.release)
        self.assertEqual(len(self.died), 20)

    def test_stop(self) -> None:
        """
        C{stop} lets go of everything at once and cancels what was
        scheduled.
        """
        self.release(self._structure(10))
        self.release.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.release.pending, 0)
        self.assertEqual(len(self.died), 20)

    def test_snapshot(self) -> None:
        """
        A configuration snapshot replaced by one built from it (the first
        route deleted: every compiled route of the old one is its own) is
        freed over many slices once the request holding it lets go, and
        the new snapshot still answers for every route.
        """
        from echogate.proxy.snapshot import Snapshot
        from tests.proxy.test_snapshot_slices import _data

        data = _data(1, 300)
        old = Snapshot.build(data, {})
        new = Snapshot.build(attrs_evolve(data, routes=data.routes[1:]), {}, old)
        compiled = [weakref.ref(entry[0]) for entry in old.router._compiled.values()]
        request = old
        self.release(old)
        del old
        self.clock.advance(1.0)
        self.assertTrue(all(reference() is not None for reference in compiled))
        del request
        alive: list[int] = []
        ran = _run(self.clock, self.release,
                   lambda: alive.append(sum(reference() is not None for reference in compiled)))
        self.assertGreater(ran, 5)
        self.assertGreater(alive[1], 0)
        self.assertEqual(alive[-1], 0)
        for n in range(1, 300):
            found = new.router.match("GET", None, f"/r{n}", {})
            self.assertEqual(found.route["name"] if found else None, f"r{n}")


def attrs_evolve(instance: Any, **changes: Any) -> Any:
    """
    C{instance} (an attrs class) with C{changes}.
    """
    import attrs

    return attrs.evolve(instance, **changes)
