"""
Tests for L{echogate.proxy.runner.run_steps}: one phase run over steps,
synchronously until a step returns a Deferred or a coroutine, stopping
early and failing (see L{tests.proxy.test_runner}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.runner import run_steps


class RunStepsTests(SynchronousTestCase):
    """
    L{run_steps} runs one phase over steps, paying for a Deferred only when
    a phase returns one.
    """

    def test_synchronous(self) -> None:
        """
        When every call returns synchronously the result is C{None} (not a
        Deferred) and every item was called in order.
        """
        called = []
        result = run_steps([1, 2, 3], called.append)
        self.assertIsNone(result)
        self.assertEqual(called, [1, 2, 3])

    def test_synchronousValues(self) -> None:
        """
        A phase that returns a plain value (not a Deferred) is synchronous.
        """
        called = []

        def call(item: int) -> int:
            called.append(item)
            return item

        self.assertIsNone(run_steps([1, 2], call))
        self.assertEqual(called, [1, 2])

    def test_empty(self) -> None:
        """
        No items: C{None}.
        """
        self.assertIsNone(run_steps([], lambda item: self.fail("called")))

    def test_deferred(self) -> None:
        """
        A Deferred makes the result a Deferred; the next item runs only
        once it has fired.
        """
        called = []
        waiting: dict[int, Deferred] = {}

        def call(item: int) -> Any:
            called.append(item)
            if item == 2:
                waiting[item] = Deferred()
                return waiting[item]
            return None

        result = run_steps([1, 2, 3], call)
        self.assertIsInstance(result, Deferred)
        self.assertEqual(called, [1, 2])
        self.assertNoResult(result)
        waiting[2].callback("ignored")
        self.assertEqual(called, [1, 2, 3])
        self.assertIsNone(self.successResultOf(result))

    def test_severalDeferreds(self) -> None:
        """
        Each Deferred is waited for in turn.
        """
        called = []
        waiting: list[Deferred] = []

        def call(item: int) -> Deferred:
            called.append(item)
            d: Deferred = Deferred()
            waiting.append(d)
            return d

        result = run_steps([1, 2, 3], call)
        for expected in ([1], [1, 2], [1, 2, 3]):
            self.assertEqual(called, expected)
            self.assertNoResult(result)
            waiting[-1].callback(None)
        self.successResultOf(result)

    def test_alreadyFired(self) -> None:
        """
        An already-fired Deferred is a Deferred result, but every item still
        runs at once.
        """
        called = []

        def call(item: int) -> Deferred:
            called.append(item)
            return succeed(None)

        result = run_steps([1, 2], call)
        self.assertIsInstance(result, Deferred)
        self.assertEqual(called, [1, 2])
        self.successResultOf(result)

    def test_coroutine(self) -> None:
        """
        An C{async def} phase is awaited like a Deferred.
        """
        called = []
        gate: Deferred = Deferred()

        async def slow(item: int) -> None:
            called.append(("start", item))
            await gate
            called.append(("end", item))

        def call(item: int) -> Any:
            if item == 1:
                return slow(item)
            called.append(("sync", item))
            return None

        result = run_steps([1, 2], call)
        self.assertIsInstance(result, Deferred)
        self.assertEqual(called, [("start", 1)])
        gate.callback(None)
        self.assertEqual(called, [("start", 1), ("end", 1), ("sync", 2)])
        self.successResultOf(result)

    def test_stopSynchronous(self) -> None:
        """
        Once C{stop()} is true after a call, no further item runs.
        """
        called = []
        result = run_steps([1, 2, 3], called.append, lambda: 2 in called)
        self.assertIsNone(result)
        self.assertEqual(called, [1, 2])

    def test_stopAfterDeferred(self) -> None:
        """
        C{stop()} is also checked after an asynchronous call: an C{access}
        phase that answers after a Deferred stops the ones after it.
        """
        called = []
        gate: Deferred = Deferred()

        def call(item: int) -> Any:
            called.append(item)
            return gate if item == 1 else None

        result = run_steps([1, 2, 3], call, lambda: 1 in called and gate.called)
        gate.callback(None)
        self.successResultOf(result)
        self.assertEqual(called, [1])

    def test_stopAfterCoroutine(self) -> None:
        """
        C{stop()} is checked after an C{async def} call finishes.
        """
        called = []
        stopped = []
        gate: Deferred = Deferred()

        async def first() -> None:
            await gate
            stopped.append(True)

        def call(item: int) -> Any:
            called.append(item)
            return first() if item == 1 else None

        result = run_steps([1, 2], call, lambda: bool(stopped))
        gate.callback(None)
        self.successResultOf(result)
        self.assertEqual(called, [1])

    def test_start(self) -> None:
        """
        C{start} skips the first items.
        """
        called = []
        run_steps([1, 2, 3], called.append, start=1)
        self.assertEqual(called, [2, 3])

    def test_synchronousException(self) -> None:
        """
        An exception raised synchronously propagates, and the items after
        it do not run.
        """
        called = []

        def call(item: int) -> None:
            called.append(item)
            if item == 1:
                raise ZeroDivisionError()

        self.assertRaises(ZeroDivisionError, run_steps, [1, 2], call)
        self.assertEqual(called, [1])

    def test_asynchronousException(self) -> None:
        """
        A failed Deferred fails the result, and the items after it do not
        run.
        """
        called = []

        def call(item: int) -> Any:
            called.append(item)
            return fail(ZeroDivisionError()) if item == 1 else None

        result = run_steps([1, 2], call)
        self.failureResultOf(result, ZeroDivisionError)
        self.assertEqual(called, [1])
