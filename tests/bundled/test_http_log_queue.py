"""
Tests for the batching queue of the bundled http-log plugin
(L{echogate.bundled.http_log.BatchQueue}): batching, bounds, concurrency,
retries, back-off and drops.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.http_log import BatchQueue, QueueSettings


class _Sender:
    """
    A send function whose calls are answered by the test.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[bytes], Deferred]] = []

    def __call__(self, batch: list[bytes]) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append((batch, d))
        return d

    def answer(self, index: int = -1, ok: bool = True) -> None:
        d = self.calls[index][1]
        d.callback(None) if ok else d.errback(ConnectionRefusedError("refused"))


class BatchQueueTests(SynchronousTestCase):
    """
    L{BatchQueue}: batching, bounds, concurrency, retries.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.send = _Sender()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def queue(self, **settings: Any) -> BatchQueue:
        return BatchQueue(self.clock, QueueSettings(**settings), self.send, "http://logs.test/")

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events if "http-log" in e.get("log_format", "")]

    def test_one(self) -> None:
        """
        With batches of one, each entry is sent at once.
        """
        queue = self.queue()
        queue.add(b"1")
        self.assertEqual([batch for batch, _ in self.send.calls], [[b"1"]])

    def test_batchFull(self) -> None:
        """
        A full batch is sent at once.
        """
        queue = self.queue(max_batch_size=3)
        for n in b"123":
            queue.add(bytes([n]))
        self.assertEqual([batch for batch, _ in self.send.calls], [[b"1", b"2", b"3"]])

    def test_coalescingDelay(self) -> None:
        """
        A partial batch goes out max_coalescing_delay after its first entry.
        """
        queue = self.queue(max_batch_size=10, max_coalescing_delay=2)
        queue.add(b"1")
        self.clock.advance(1)
        queue.add(b"2")
        self.assertEqual(self.send.calls, [])
        self.clock.advance(1)
        self.assertEqual([batch for batch, _ in self.send.calls], [[b"1", b"2"]])

    def test_concurrencyOne(self) -> None:
        """
        One batch in flight at a time; the next goes when it is done.
        """
        queue = self.queue()
        queue.add(b"1")
        queue.add(b"2")
        self.assertEqual(len(self.send.calls), 1)
        self.send.answer(0)
        self.assertEqual([batch for batch, _ in self.send.calls], [[b"1"], [b"2"]])

    def test_concurrencyUnlimited(self) -> None:
        """
        With concurrency_limit -1, batches do not wait for each other.
        """
        queue = self.queue(concurrency_limit=-1)
        queue.add(b"1")
        queue.add(b"2")
        self.assertEqual(len(self.send.calls), 2)

    def test_fullDropsOldest(self) -> None:
        """
        Past max_entries the oldest entries are dropped, with a log line.
        """
        queue = self.queue(max_entries=2)
        for n in b"12345":
            queue.add(bytes([n]))  # "1" is in flight; "2", "3" dropped
        self.assertEqual(queue.dropped, 2)
        self.send.answer(0)
        self.send.answer(1)
        self.assertEqual([batch for batch, _ in self.send.calls], [[b"1"], [b"4"], [b"5"]])
        self.assertIn("http-log: dropping 1 log entry for http://logs.test/: the queue is full"
                      " (1 dropped so far)", self.messages())

    def test_maxBytes(self) -> None:
        """
        Past max_bytes the oldest entries are dropped.
        """
        queue = self.queue(max_bytes=10)
        queue.add(b"x" * 4)  # in flight
        for n in range(4):
            queue.add(b"%d" % n * 4)
        self.assertEqual(queue.dropped, 2)
        self.assertEqual(len(queue), 2)

    def test_retryBackoff(self) -> None:
        """
        A failed batch is retried after initial_retry_delay, doubling up to
        max_retry_delay, until it is accepted.
        """
        queue = self.queue(initial_retry_delay=1, max_retry_delay=3)
        queue.add(b"1")
        for delay in (1, 2, 3, 3):
            self.send.answer(ok=False)
            count = len(self.send.calls)
            self.clock.advance(delay - 0.001)
            self.assertEqual(len(self.send.calls), count, f"row delay={delay!r}")
            self.clock.advance(0.001)
            self.assertEqual(len(self.send.calls), count + 1, f"row delay={delay!r}")
        self.send.answer()
        self.assertEqual((queue.sent, queue.dropped), (1, 0))
        self.assertEqual({tuple(batch) for batch, _ in self.send.calls}, {(b"1",)})

    def test_giveUp(self) -> None:
        """
        After max_retry_time the batch is dropped with a log line, and the
        next one goes.
        """
        queue = self.queue(initial_retry_delay=1, max_retry_delay=1, max_retry_time=2)
        queue.add(b"1")
        queue.add(b"2")
        for _ in range(3):
            self.send.answer(ok=False)
            self.clock.advance(1)
        self.assertEqual(queue.dropped, 1)
        self.assertEqual(self.send.calls[-1][0], [b"2"])
        self.assertTrue(any("could not send them (refused); giving up" in m for m in self.messages()))

    def test_noRetry(self) -> None:
        """
        max_retry_time -1: a failed batch is dropped at once.
        """
        queue = self.queue(max_retry_time=-1)
        queue.add(b"1")
        self.send.answer(ok=False)
        self.assertEqual(queue.dropped, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sendRaises(self) -> None:
        """
        A send function that raises counts as a failed send.
        """
        def broken(batch: list[bytes]) -> Deferred:
            raise ValueError("bad")

        queue = BatchQueue(self.clock, QueueSettings(max_retry_time=-1), broken, "x")
        queue.add(b"1")
        self.assertEqual(queue.dropped, 1)

    def test_drain(self) -> None:
        """
        drain sends what is queued, tries a waiting retry at once (and not
        again), and fires when nothing is in flight.
        """
        queue = self.queue(max_batch_size=5, max_coalescing_delay=100)
        queue.add(b"1")
        queue.add(b"2")
        done = queue.drain()
        self.assertNoResult(done)
        self.send.answer(ok=False)
        self.successResultOf(done)
        self.assertEqual(queue.dropped, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])
