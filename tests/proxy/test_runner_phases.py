"""
Tests for how L{echogate.proxy.runner} calls plugin phases: L{call_phase}, which
names the plugin and phase of any failure, and L{run_phase}, which runs one
phase of a plan's steps (see L{tests.proxy.test_runner}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.plan import PluginIndex
from echogate.proxy.runner import PluginFailure, call_phase, run_phase
from tests.proxy.test_runner import ROUTE, SERVICE, make_plugin, record


class CallPhaseTests(SynchronousTestCase):
    """
    L{call_phase} names the plugin and phase of any exception.
    """

    def test_value(self) -> None:
        """
        A synchronous result is returned as it is.
        """
        self.assertEqual(call_phase("p", "access", lambda a, b: (a, b), 1, 2), (1, 2))
        self.assertIsNone(call_phase("p", "access", lambda: None))

    def test_synchronousException(self) -> None:
        """
        A synchronous exception becomes a L{PluginFailure} naming the plugin
        and phase and carrying the original exception.
        """
        error = ZeroDivisionError("oops")

        def phase() -> None:
            raise error

        failure = self.assertRaises(PluginFailure, call_phase, "my-plugin", "access", phase)
        self.assertEqual((failure.plugin, failure.phase), ("my-plugin", "access"))
        self.assertIs(failure.error, error)
        self.assertIs(failure.__cause__, error)
        self.assertEqual(str(failure), "plugin 'my-plugin' failed in access: ZeroDivisionError('oops')")

    def test_deferredResult(self) -> None:
        """
        A Deferred result is returned (with its result passed through).
        """
        d: Deferred = Deferred()
        result = call_phase("p", "log", lambda: d)
        self.assertIs(result, d)
        d.callback("value")
        self.assertEqual(self.successResultOf(result), "value")

    def test_deferredFailure(self) -> None:
        """
        A Deferred that fails fails with a L{PluginFailure}.
        """
        d: Deferred = Deferred()
        result = call_phase("my-plugin", "header_filter", lambda: d)
        d.errback(ZeroDivisionError("later"))
        failure = self.failureResultOf(result, PluginFailure).value
        self.assertEqual((failure.plugin, failure.phase), ("my-plugin", "header_filter"))
        self.assertIsInstance(failure.error, ZeroDivisionError)

    def test_coroutine(self) -> None:
        """
        An C{async def} phase becomes a Deferred of its result.
        """
        async def phase(x: int) -> int:
            return x + 1

        result = call_phase("p", "access", phase, 1)
        self.assertIsInstance(result, Deferred)
        self.assertEqual(self.successResultOf(result), 2)

    def test_coroutineException(self) -> None:
        """
        An C{async def} phase that raises (before or after awaiting) fails
        with a L{PluginFailure}.
        """
        gate: Deferred = Deferred()

        async def at_once() -> None:
            raise KeyError("now")

        async def later() -> None:
            await gate
            raise ValueError("later")

        now = call_phase("p", "rewrite", at_once)
        self.assertIsInstance(self.failureResultOf(now, PluginFailure).value.error, KeyError)
        pending = call_phase("p", "body_filter", later)
        gate.callback(None)
        failure = self.failureResultOf(pending, PluginFailure).value
        self.assertEqual(failure.phase, "body_filter")
        self.assertIsInstance(failure.error, ValueError)

    def test_pluginFailureNotWrappedAgain(self) -> None:
        """
        A L{PluginFailure} passes through unchanged.
        """
        inner = PluginFailure("inner", "access", KeyError())

        def phase() -> None:
            raise inner

        self.assertIs(self.assertRaises(PluginFailure, call_phase, "outer", "access", phase), inner)
        result = call_phase("outer", "access", lambda: fail(inner))
        self.assertIs(self.failureResultOf(result, PluginFailure).value, inner)


class _Context:
    """
    What L{run_phase} uses of a request context: a view per plugin, and
    the exit a plugin made.
    """

    def __init__(self) -> None:
        self.exit: Any = None
        self.views: dict[str, Any] = {}

    def view(self, name: str) -> Any:
        return self.views.setdefault(name, ("view", name))


class RunPhaseTests(SynchronousTestCase):
    """
    L{run_phase} runs one phase of a plan's steps in one loop: views,
    configs, exits, Deferreds, coroutines and failures.
    """

    def plan(self, **behaviours: Any) -> Any:
        """
        A static plan of plugins named after C{behaviours} (in that order),
        each calling its behaviour from its access phase; configs
        C{{"name": name}}.
        """
        plugins = {name: make_plugin(name, len(behaviours) - i, access=lambda self, ctx, config, b=b: b(ctx, config))
                   for i, (name, b) in enumerate(behaviours.items())}
        return PluginIndex([record(name, {"name": name}) for name in plugins], plugins).plan(ROUTE, SERVICE)

    def test_synchronous(self) -> None:
        """
        Every step is called in order with its view and its entry's config;
        the result is C{None}.
        """
        seen = []
        plan = self.plan(a=lambda ctx, config: seen.append((ctx, config["name"])),
                         b=lambda ctx, config: seen.append((ctx, config["name"])))
        self.assertIsNone(run_phase(_Context(), plan.access_steps, "access"))
        self.assertEqual(seen, [(("view", "a"), "a"), (("view", "b"), "b")])

    def test_configOf(self) -> None:
        """
        C{config_of} gives each step's config; C{None} skips the step.
        """
        seen = []
        plan = self.plan(a=lambda ctx, config: seen.append(config), b=lambda ctx, config: seen.append(config))
        run_phase(_Context(), plan.access_steps, "access", lambda step: None if step.name == "a" else {"x": 1})
        self.assertEqual(seen, [{"x": 1}])

    def test_untilExit(self) -> None:
        """
        With C{until_exit}, no step runs after one made an exit; without,
        they all run.
        """
        seen = []

        def leave(ctx: Any, config: Any) -> None:
            seen.append("a")
            context.exit = "exit"

        plan = self.plan(a=leave, b=lambda ctx, config: seen.append("b"))
        context = _Context()
        self.assertIsNone(run_phase(context, plan.access_steps, "access", until_exit=True))
        self.assertEqual(seen, ["a"])
        context = _Context()
        run_phase(context, plan.access_steps, "access")
        self.assertEqual(seen, ["a", "a", "b"])

    def test_deferred(self) -> None:
        """
        A step returning a Deferred makes the result a Deferred; the next
        step runs once it fired, unless an exit was made meanwhile.
        """
        gate: Deferred = Deferred()
        seen = []
        plan = self.plan(a=lambda ctx, config: gate, b=lambda ctx, config: seen.append("b"))
        result = run_phase(_Context(), plan.access_steps, "access", until_exit=True)
        self.assertNoResult(result)
        self.assertEqual(seen, [])
        gate.callback("ignored")
        self.assertEqual(seen, ["b"])
        self.assertIsNone(self.successResultOf(result))

        gate = Deferred()
        context = _Context()
        result = run_phase(context, plan.access_steps, "access", until_exit=True)
        context.exit = "exit"
        gate.callback(None)
        self.assertIsNone(self.successResultOf(result))
        self.assertEqual(seen, ["b"])

    def test_coroutine(self) -> None:
        """
        A coroutine phase is run as a Deferred.
        """
        seen = []

        async def later(ctx: Any, config: Any) -> None:
            seen.append("a")

        plan = self.plan(a=later, b=lambda ctx, config: seen.append("b"))
        result = run_phase(_Context(), plan.access_steps, "access")
        self.assertIsNone(self.successResultOf(result))
        self.assertEqual(seen, ["a", "b"])

    def test_raises(self) -> None:
        """
        An exception becomes a L{PluginFailure} naming the plugin and the
        phase; the steps after it do not run.
        """
        seen = []
        plan = self.plan(a=lambda ctx, config: 1 / 0, b=lambda ctx, config: seen.append("b"))
        error = self.assertRaises(PluginFailure, run_phase, _Context(), plan.access_steps, "access")
        self.assertEqual((error.plugin, error.phase), ("a", "access"))
        self.assertIsInstance(error.error, ZeroDivisionError)
        self.assertEqual(seen, [])

    def test_failsLater(self) -> None:
        """
        A Deferred that fails becomes a L{PluginFailure} of its step.
        """
        plan = self.plan(a=lambda ctx, config: fail(KeyError("k")))
        failure = self.failureResultOf(run_phase(_Context(), plan.access_steps, "access"), PluginFailure)
        self.assertEqual((failure.value.plugin, failure.value.phase), ("a", "access"))
        self.assertIsInstance(failure.value.error, KeyError)
