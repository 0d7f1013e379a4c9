"""
Tests for L{echogate.store.pgclient}: L{Deadlines}, which bounds every database
call by the injected clock.
"""
from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import DatabaseUnavailable
from echogate.store.pgclient import Deadlines


class DeadlineTests(SynchronousTestCase):
    """
    L{Deadlines} bounds a Deferred by the injected clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.bounded = Deadlines(self.clock, 5.0)
        self.expired: list[bool] = []

    def test_result(self) -> None:
        """
        A result in time passes through and the timer is cancelled.
        """
        inner: Deferred[int] = Deferred()
        outer = self.bounded(inner, self.bounded.deadline(), lambda: self.expired.append(True))
        inner.callback(7)
        self.assertEqual(self.successResultOf(outer), 7)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """
        At the deadline the call is abandoned (C{expire}) and fails with
        L{DatabaseUnavailable}; its late result is dropped.
        """
        inner: Deferred[int] = Deferred()
        outer = self.bounded(inner, self.bounded.deadline(), lambda: self.expired.append(True))
        self.clock.advance(4.9)
        self.assertNoResult(outer)
        self.clock.advance(0.1)
        self.failureResultOf(outer, DatabaseUnavailable)
        self.assertEqual(self.expired, [True])
        inner.errback(RuntimeError("late"))
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])

    def test_shared_deadline(self) -> None:
        """
        A later step gets only what is left of the deadline.
        """
        deadline = self.bounded.deadline()
        self.clock.advance(4.0)
        outer = self.bounded(Deferred(), deadline, lambda: None)
        self.clock.advance(1.0)
        self.failureResultOf(outer, DatabaseUnavailable)

    def test_cancel(self) -> None:
        """
        Cancelling the bounded Deferred abandons the call too.
        """
        outer = self.bounded(Deferred(), self.bounded.deadline(),
                             lambda: self.expired.append(True))
        outer.cancel()
        self.failureResultOf(outer, CancelledError)
        self.assertEqual(self.expired, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
