"""
Unit tests of L{echogate.upstream.deadlines.DeadlineQueue} on a L{Clock}: when
deadlines expire, cancelling them, the one reactor call they share, the
memory cancelled ones hold, and callbacks that change the queue or fail.
"""
from __future__ import annotations

import gc
import math
import weakref
from typing import Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.upstream.deadlines import Deadline, DeadlineQueue


class Recorder:
    """
    Callbacks that note, in C{fired}, their name and the clock's time.
    """

    def __init__(self, clock: Clock):
        self.clock = clock
        self.fired: list[tuple[str, float]] = []

    def __call__(self, name: str) -> Callable[[], None]:
        return lambda: self.fired.append((name, self.clock.seconds()))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.fired]


class Owner:
    """
    Something a callback keeps alive (as an exchange's bound method does).
    """

    def expire(self) -> None:
        pass


class CountingClock(Clock):
    """
    A L{Clock} counting the calls made on it.
    """

    made = 0

    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> IDelayedCall:
        self.made += 1
        return super().callLater(delay, callable, *args, **kw)


class QueueTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.queue = DeadlineQueue(self.clock)
        self.record = Recorder(self.clock)

    def armed(self) -> float:
        """
        When the one pending reactor call fires.
        """
        calls = self.clock.getDelayedCalls()
        self.assertEqual(len(calls), 1)
        return calls[0].getTime()


class ExpiryTests(QueueTestCase):
    def test_firesAtDeadline(self) -> None:
        """
        A deadline's callback runs when the clock reaches it, not before.
        """
        self.queue.add(5, self.record("a"))
        self.clock.advance(math.nextafter(5.0, 0.0))
        self.assertEqual(self.record.fired, [])
        self.clock.advance(5.0 - self.clock.seconds())
        self.assertEqual(self.record.fired, [("a", 5.0)])

    def test_notWithEarlierOne(self) -> None:
        """
        A deadline does not expire with an earlier one, however close.
        """
        later = math.nextafter(1.0, 2.0)
        self.queue.add(1, self.record("a"))
        self.queue.add(later, self.record("b"))
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [("a", 1.0)])
        self.clock.advance(later - 1.0)
        self.assertEqual(self.record.fired, [("a", 1.0), ("b", later)])

    def test_firesOnce(self) -> None:
        """
        An expired deadline is gone: nothing pending, nothing armed, no
        second call.
        """
        deadline = self.queue.add(1, self.record("a"))
        self.clock.advance(1)
        self.assertFalse(deadline.active())
        self.assertEqual(self.queue.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        deadline.cancel()
        self.clock.advance(10)
        self.assertEqual(self.record.names, ["a"])

    def test_sameTimeoutInOrder(self) -> None:
        """
        Deadlines of one timeout expire one by one, each at its own time.
        """
        for name in "abc":
            self.queue.add(2, self.record(name))
            self.clock.advance(1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [("a", 2.0), ("b", 3.0), ("c", 4.0)])

    def test_interleavedTimeouts(self) -> None:
        """
        Deadlines of different timeouts expire in deadline order, even
        when several are due at once.
        """
        self.queue.add(5, self.record("a5"))
        self.queue.add(3, self.record("b3"))
        self.clock.advance(1)
        self.queue.add(5, self.record("c6"))
        self.queue.add(3, self.record("d4"))
        self.queue.add(0.5, self.record("e1.5"))
        self.clock.advance(10)
        self.assertEqual(self.record.names, ["e1.5", "b3", "d4", "a5", "c6"])

    def test_interleavedTimeoutsEachOnTime(self) -> None:
        """
        Deadlines of different timeouts each expire at their own time.
        """
        self.queue.add(5, self.record("a"))
        self.queue.add(3, self.record("b"))
        self.clock.advance(1)
        self.queue.add(5, self.record("c"))
        self.queue.add(3, self.record("d"))
        self.clock.pump([1] * 6)
        self.assertEqual(self.record.fired, [("b", 3.0), ("d", 4.0), ("a", 5.0), ("c", 6.0)])

    def test_rearmedOnTime(self) -> None:
        """
        A deadline the call is re-armed for after another expired still
        expires at its time, where the clock's arithmetic would put the
        call a little later (0.06 + (0.9 - 0.06) > 0.9).
        """
        self.queue.add(0.9, self.record("a"))
        self.queue.add(0.06, self.record("b"))
        self.clock.advance(0.06)
        self.assertEqual(self.record.names, ["b"])
        self.assertLessEqual(self.armed(), 0.9)
        self.clock.advance(0.04)
        self.clock.advance(0.8)
        self.assertEqual(self.record.fired[1:], [("a", 0.9)])

    def test_clockWentBack(self) -> None:
        """
        A deadline added after the clock went back expires before the
        ones of the same timeout added earlier, at its time.
        """
        self.clock.advance(10)
        self.queue.add(5, self.record("a15"))
        self.clock.rightNow = 8.0
        self.queue.add(5, self.record("b13"))
        self.clock.advance(5)
        self.assertEqual(self.record.fired, [("b13", 13.0)])
        self.clock.advance(2)
        self.assertEqual(self.record.names, ["b13", "a15"])


class CancelTests(QueueTestCase):
    def test_cancelled(self) -> None:
        """
        A cancelled deadline's callback never runs.
        """
        deadline = self.queue.add(5, self.record("a"))
        self.queue.add(5, self.record("b"))
        deadline.cancel()
        self.assertFalse(deadline.active())
        self.clock.advance(10)
        self.assertEqual(self.record.names, ["b"])

    def test_cancelTwice(self) -> None:
        """
        Cancelling a cancelled deadline does nothing.
        """
        deadline = self.queue.add(5, self.record("a"))
        self.queue.add(5, self.record("b"))
        deadline.cancel()
        deadline.cancel()
        self.assertEqual(self.queue.pending, 1)
        self.clock.advance(10)
        self.assertEqual(self.record.names, ["b"])

    def test_cancelLastLeavesCall(self) -> None:
        """
        Cancelling the last pending deadline leaves the armed call; when
        it fires it runs nothing, arms nothing and drops the empty FIFOs.
        """
        first = self.queue.add(5, self.record("a"))
        second = self.queue.add(3, self.record("b"))
        first.cancel()
        self.assertEqual(self.armed(), 3.0)
        second.cancel()
        self.assertEqual(self.armed(), 3.0)
        self.assertEqual((self.queue.pending, self.queue.stored), (0, 0))
        self.clock.advance(3)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.record.fired, [])
        self.assertEqual(self.queue._fifos, {})

    def test_refilledWithoutReactor(self) -> None:
        """
        A queue emptied and refilled for each of many requests (one at a
        time) arms one call for all of them; each deadline still expires
        at its own time.
        """
        clock = CountingClock()
        queue = DeadlineQueue(clock)
        record = Recorder(clock)
        for _ in range(1000):
            queue.add(5, record("x")).cancel()
            clock.advance(0.001)
        self.assertEqual(clock.made, 1)
        last = clock.seconds() + 5
        queue.add(5, record("last"))
        clock.advance(5 - clock.seconds())
        self.assertEqual(record.names, [])
        self.assertEqual(clock.made, 2)
        clock.advance(last - clock.seconds())
        self.assertEqual(record.fired, [("last", last)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancelEarliestLazy(self) -> None:
        """
        Cancelling the earliest deadline leaves the armed call alone; when
        it fires it runs nothing and is armed for the next deadline.
        """
        first = self.queue.add(2, self.record("a"))
        self.clock.advance(1)
        self.queue.add(2, self.record("b"))
        call = self.clock.getDelayedCalls()[0]
        first.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [])
        self.assertEqual(self.armed(), 3.0)
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [("b", 3.0)])

    def test_cancelledDropsCallback(self) -> None:
        """
        A cancelled deadline, still held by its FIFO, keeps its callback's
        object alive no longer.
        """
        self.queue.add(5, self.record("first"))
        owner = Owner()
        deadline = self.queue.add(5, owner.expire)
        self.queue.add(5, self.record("last"))
        gone = weakref.ref(owner)
        deadline.cancel()
        del owner
        gc.collect()
        self.assertIsNone(gone())
        self.assertEqual(self.queue.stored, 3)

    def test_expiredDropsCallback(self) -> None:
        """
        An expired deadline no longer references its callback's object.
        """
        owner = Owner()
        deadline = self.queue.add(1, owner.expire)
        gone = weakref.ref(owner)
        self.clock.advance(1)
        del owner
        gc.collect()
        self.assertIsNone(gone())
        self.assertFalse(deadline.active())

    def test_boundedUnderCancellations(self) -> None:
        """
        Deadlines cancelled behind a pending one are dropped once they
        are more than half of their FIFO (and more than a few dozen):
        10,000 add/cancel cycles leave a few dozen stored.
        """
        self.queue.add(60, self.record("long"))
        for _ in range(10000):
            self.queue.add(60, self.record("short")).cancel()
            self.clock.advance(0.001)
        self.assertLessEqual(self.queue.stored, 1 + 33)
        self.assertEqual(self.queue.pending, 1)

    def test_boundedManyPending(self) -> None:
        """
        With many deadlines pending and cancelled in any order, the FIFOs
        hold at most about twice the pending ones (plus a few dozen).
        """
        pending = [self.queue.add(60, self.record("x")) for _ in range(100)]
        for i in range(10000):
            pending.append(self.queue.add(60 if i % 2 else 30, self.record("x")))
            pending.pop(7 * i % len(pending)).cancel()
            self.clock.advance(0.001)
            self.assertLessEqual(self.queue.stored, 2 * self.queue.pending + 2 * 33, f"row i={i!r}")
        self.assertEqual(self.queue.pending, 100)

    def test_cancelledHeadsDropped(self) -> None:
        """
        Deadlines cancelled in the order they were added are dropped at
        once from the head of their FIFO.
        """
        pending = [self.queue.add(5, self.record("x")) for _ in range(10)]
        for deadline in pending[:5]:
            deadline.cancel()
        self.assertEqual(self.queue.stored, 5)

    def test_emptyTimeoutForgotten(self) -> None:
        """
        A timeout whose deadlines are all gone leaves no FIFO behind once
        another timeout's FIFO is made, or the armed call fired.
        """
        self.queue.add(60, self.record("long"))
        for seconds in range(1, 60):
            self.queue.add(seconds, self.record("x")).cancel()
        self.assertEqual(self.queue.stored, 1)
        self.assertEqual(sorted(self.queue._fifos), [59, 60])
        self.clock.advance(1)
        self.assertEqual(list(self.queue._fifos), [60])
        self.assertEqual(self.armed(), 60.0)

    def test_emptyTimeoutKept(self) -> None:
        """
        The FIFO of a timeout whose deadlines are all gone is used again
        by its next deadline.
        """
        self.queue.add(5, self.record("a")).cancel()
        fifo = self.queue._fifos[5]
        self.queue.add(5, self.record("b"))
        self.assertIs(self.queue._fifos[5], fifo)


class ArmingTests(QueueTestCase):
    def test_onePendingCall(self) -> None:
        """
        However many deadlines, at most one call is pending on the reactor.
        """
        for seconds in (9, 8, 10, 1, 7, 1, 0.5, 20):
            self.queue.add(seconds, self.record("x"))
            self.assertEqual(len(self.clock.getDelayedCalls()), 1, f"row seconds={seconds!r}")
        for _ in range(25):
            self.clock.advance(1)
            self.assertLessEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.record.fired), 8)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_laterLeavesReactorAlone(self) -> None:
        """
        Adding deadlines later than the armed one neither makes nor moves
        a reactor call.
        """
        self.queue.add(5, self.record("a"))
        call = self.clock.getDelayedCalls()[0]
        self.clock.advance(1)
        self.queue.add(5, self.record("b"))
        self.queue.add(10, self.record("c"))
        self.queue.add(5, self.record("d"))
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        self.assertTrue(call.active())
        self.assertEqual(call.getTime(), 5.0)

    def test_shorterRearms(self) -> None:
        """
        A shorter timeout added later moves the armed call earlier.
        """
        self.queue.add(10, self.record("a"))
        self.clock.advance(1)
        self.queue.add(3, self.record("b"))
        self.assertEqual(self.armed(), 4.0)
        self.clock.advance(3)
        self.assertEqual(self.record.fired, [("b", 4.0)])
        self.assertEqual(self.armed(), 10.0)
        self.clock.advance(6)
        self.assertEqual(self.record.fired, [("b", 4.0), ("a", 10.0)])


class CallbackTests(QueueTestCase):
    def test_cancelOtherDue(self) -> None:
        """
        A callback may cancel a deadline due in the same run: it does not
        run.
        """
        second = self.queue.add(2, self.record("b"))
        first = self.queue.add(1, second.cancel)
        self.clock.advance(5)
        self.assertFalse(first.active())
        self.assertEqual(self.record.fired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelOtherLater(self) -> None:
        """
        A callback may cancel a later deadline: it never runs, and nothing
        is left armed for it.
        """
        later = self.queue.add(5, self.record("b"))
        self.queue.add(1, later.cancel)
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.record.fired, [])

    def test_cancelItself(self) -> None:
        """
        A callback may cancel its own (expired) deadline.
        """
        deadlines: list[Deadline] = []
        deadlines.append(self.queue.add(1, lambda: deadlines[0].cancel()))
        self.queue.add(2, self.record("b"))
        self.clock.advance(2)
        self.assertEqual(self.record.names, ["b"])

    def test_addWhileFiring(self) -> None:
        """
        A callback may add deadlines, which expire at their own time; the
        call is armed for them.
        """
        self.queue.add(1, lambda: self.queue.add(3, self.record("b")))
        self.queue.add(2, self.record("a"))
        self.clock.advance(1)
        self.assertEqual(self.armed(), 2.0)
        self.clock.pump([1] * 5)
        self.assertEqual(self.record.fired, [("a", 2.0), ("b", 4.0)])

    def test_addDueWhileFiring(self) -> None:
        """
        A deadline of no seconds added by a callback runs after the
        callbacks already due, from a new call.
        """
        def first() -> None:
            self.record("a")()
            self.queue.add(0, self.record("c"))

        self.queue.add(1, first)
        self.queue.add(1, self.record("b"))
        self.clock.advance(1)
        self.assertEqual(self.record.names, ["a", "b", "c"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_addAndCancelLastWhileFiring(self) -> None:
        """
        A callback adding and cancelling the only other deadline leaves
        nothing armed.
        """
        self.queue.add(1, lambda: self.queue.add(3, self.record("b")).cancel())
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.queue.stored, 0)

    def test_failingCallback(self) -> None:
        """
        A callback that raises is logged; the others due still run, and
        the queue goes on working.
        """
        self.queue.add(1, lambda: 1 // 0)
        self.queue.add(1, self.record("b"))
        self.queue.add(2, self.record("c"))
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.record.names, ["b"])
        self.clock.advance(1)
        self.queue.add(1, self.record("d"))
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [("b", 1.0), ("c", 2.0), ("d", 3.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StopTests(QueueTestCase):
    def test_stop(self) -> None:
        """
        Stopping cancels the armed call; the pending deadlines never run.
        """
        deadline = self.queue.add(1, self.record("a"))
        self.queue.add(2, self.record("b"))
        self.queue.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(deadline.active())
        self.assertEqual((self.queue.pending, self.queue.stored), (0, 0))
        deadline.cancel()
        self.clock.advance(10)
        self.assertEqual(self.record.fired, [])

    def test_addAfterStop(self) -> None:
        """
        Deadlines added after C{stop} are timed as before.
        """
        self.queue.add(1, self.record("a"))
        self.queue.stop()
        self.queue.add(1, self.record("b"))
        self.clock.advance(1)
        self.assertEqual(self.record.fired, [("b", 1.0)])

    def test_stopWhileFiring(self) -> None:
        """
        A callback stopping the queue keeps the other due ones from running.
        """
        self.queue.add(1, self.queue.stop)
        self.queue.add(1, self.record("b"))
        self.queue.add(2, self.record("c"))
        self.clock.advance(5)
        self.assertEqual(self.record.fired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
