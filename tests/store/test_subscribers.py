"""
Tests for L{echogate.store.postgres._Subscribers}: the callbacks of one
kind of news a PostgreSQL store delivers.
"""
from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from echogate.store.postgres import _Subscribers


class SubscribersTests(SynchronousTestCase):
    def test_onceEachSubscription(self) -> None:
        """
        A callback subscribed twice is called twice, and unsubscribing one
        of its subscriptions leaves the other.
        """
        seen: list[int] = []
        subscribers: _Subscribers[int] = _Subscribers("test subscriber")
        first = subscribers.add(seen.append)
        subscribers.add(seen.append)
        subscribers.deliver(1)
        first()
        first()  # (twice is harmless)
        subscribers.deliver(2)
        self.assertEqual(seen, [1, 1, 2])
        self.assertTrue(subscribers.any())

    def test_failureLoggedOthersCalled(self) -> None:
        """
        A subscriber that raises is logged, naming the kind, and the next
        one is still called.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        seen: list[int] = []
        subscribers: _Subscribers[int] = _Subscribers("test subscriber")

        def broken(value: int) -> None:
            raise RuntimeError("no")

        subscribers.add(broken)
        subscribers.add(seen.append)
        subscribers.deliver(3)
        self.assertEqual(seen, [3])
        failures = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual([e["what"] for e in failures], ["test subscriber"])
        self.flushLoggedErrors(RuntimeError)
