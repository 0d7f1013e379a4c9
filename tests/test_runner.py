"""
Tests for L{echogate.runner}: which plugin config applies to a request
(scope precedence, priority order) and how phases are run.
"""
from __future__ import annotations

import operator
import uuid
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from echogate.plugin import GatewayPlugin
from echogate.runner import PluginFailure, PluginIndex, call_phase, freeze, phases_of, run_phase, run_steps
from echogate.schema import Record

ROUTE = "00000000-0000-4000-8000-0000000000a1"
SERVICE = "00000000-0000-4000-8000-0000000000b1"
CONSUMER = "00000000-0000-4000-8000-0000000000c1"
OTHER_ROUTE = "00000000-0000-4000-8000-0000000000a2"
OTHER_SERVICE = "00000000-0000-4000-8000-0000000000b2"
OTHER_CONSUMER = "00000000-0000-4000-8000-0000000000c2"

# Kong's order, most specific first: (label, route, service, consumer).
SCOPES = [
    ("route+service+consumer", ROUTE, SERVICE, CONSUMER),
    ("route+consumer", ROUTE, None, CONSUMER),
    ("service+consumer", None, SERVICE, CONSUMER),
    ("route+service", ROUTE, SERVICE, None),
    ("consumer", None, None, CONSUMER),
    ("route", ROUTE, None, None),
    ("service", None, SERVICE, None),
    ("global", None, None, None),
]


def make_plugin(name: str, priority: int = 0, **phases: Any) -> GatewayPlugin:
    """
    A plugin called C{name} with the given phase functions.
    """
    attributes = {"name": name, "version": "1.0.0", "priority": priority, "config_schema": Record({})}
    attributes.update(phases)
    return type("TestPlugin", (GatewayPlugin,), attributes)()


def record(name: str, config: dict | None = None, route: str | None = None, service: str | None = None,
           consumer: str | None = None, enabled: bool = True) -> dict:
    """
    A stored plugin record.
    """
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "config": config if config is not None else {},
        "enabled": enabled,
        "route": {"id": route} if route else None,
        "service": {"id": service} if service else None,
        "consumer": {"id": consumer} if consumer else None,
        "protocols": ["http", "https"],
        "tags": None,
        "created_at": 0,
    }


def noop(self: Any, ctx: Any, config: Any) -> None:
    pass


class PrecedenceTests(SynchronousTestCase):
    """
    L{PluginIndex.resolve} picks the most specific config in Kong's order.
    """

    def index(self, scopes: list[tuple]) -> PluginIndex:
        records = [record("p", {"scope": label}, route, service, consumer)
                   for label, route, service, consumer in scopes]
        return PluginIndex(records, {"p": make_plugin("p", access=noop)})

    def test_orderWithConsumer(self) -> None:
        """
        With all 8 scopes configured, removing the most specific one at a
        time yields the next in Kong's order.
        """
        for start, (label, *_) in enumerate(SCOPES):
            index = self.index(SCOPES[start:])
            entry = index.resolve("p", ROUTE, SERVICE, CONSUMER)
            self.assertEqual(entry.config["scope"], label)

    def test_orderWithConsumerReversedInput(self) -> None:
        """
        The order in which configs were stored does not matter.
        """
        for start, (label, *_) in enumerate(SCOPES):
            index = self.index(list(reversed(SCOPES[start:])))
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, CONSUMER).config["scope"], label)

    def test_eachScopeAlone(self) -> None:
        """
        Each scope on its own applies to a request on that route, service
        and consumer.
        """
        for scope in SCOPES:
            index = self.index([scope])
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, CONSUMER).config["scope"], scope[0])

    def test_withoutConsumer(self) -> None:
        """
        Without a consumer, consumer-scoped configs never apply: the order
        is route+service, route, service, global.
        """
        without = [s for s in SCOPES if s[3] is None]
        self.assertEqual([s[0] for s in without], ["route+service", "route", "service", "global"])
        consumers = [s for s in SCOPES if s[3] is not None]
        for start, (label, *_) in enumerate(without):
            index = self.index(consumers + without[start:])
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, None).config["scope"], label)
        self.assertIsNone(self.index(consumers).resolve("p", ROUTE, SERVICE, None))

    def test_otherScopesDoNotApply(self) -> None:
        """
        Configs for another route, service or consumer never apply.
        """
        others = [
            ("other", OTHER_ROUTE, SERVICE, CONSUMER),
            ("other", ROUTE, OTHER_SERVICE, CONSUMER),
            ("other", ROUTE, SERVICE, OTHER_CONSUMER),
            ("other", OTHER_ROUTE, None, None),
            ("other", None, OTHER_SERVICE, None),
            ("other", None, None, OTHER_CONSUMER),
        ]
        index = self.index(others)
        self.assertIsNone(index.resolve("p", ROUTE, SERVICE, CONSUMER))
        index = self.index(others + [SCOPES[-1]])
        self.assertEqual(index.resolve("p", ROUTE, SERVICE, CONSUMER).config["scope"], "global")

    def test_noConfig(self) -> None:
        """
        A plugin with no config resolves to C{None}.
        """
        self.assertIsNone(self.index([]).resolve("p", ROUTE, SERVICE, CONSUMER))
        self.assertIsNone(self.index([]).resolve("unknown", ROUTE, SERVICE, CONSUMER))

    def test_disabledIgnored(self) -> None:
        """
        A disabled config is ignored: the next most specific one applies.
        """
        records = [record("p", {"scope": "route"}, route=ROUTE, enabled=False),
                   record("p", {"scope": "global"})]
        index = PluginIndex(records, {"p": make_plugin("p", access=noop)})
        self.assertEqual(index.resolve("p", ROUTE, SERVICE, None).config["scope"], "global")
        self.assertEqual([e.config["scope"] for e in index.entries("p")], ["global"])

    def test_disabledOnlyConfig(self) -> None:
        """
        A plugin whose only config is disabled is not in any plan.
        """
        index = PluginIndex([record("p", enabled=False)], {"p": make_plugin("p", access=noop)})
        self.assertEqual(index.plan(ROUTE, SERVICE), ())
        self.assertEqual(index.global_steps, ())
        self.assertEqual(index.names_in_use(), [])

    def test_unknownPluginSkipped(self) -> None:
        """
        A config of a plugin that is not enabled on this node is skipped
        and listed.
        """
        index = PluginIndex([record("absent"), record("p")], {"p": make_plugin("p", access=noop)})
        self.assertEqual(index.skipped, ["absent"])
        self.assertEqual(index.names_in_use(), ["p"])


class PlanTests(SynchronousTestCase):
    """
    L{PluginIndex.plan} lists the steps of a route and service in priority
    order.
    """

    def test_priorityOrder(self) -> None:
        """
        Higher priority first; ties by name.
        """
        plugins = {
            "low": make_plugin("low", 1, access=noop),
            "high": make_plugin("high", 100, access=noop),
            "b-tie": make_plugin("b-tie", 50, access=noop),
            "a-tie": make_plugin("a-tie", 50, access=noop),
            "negative": make_plugin("negative", -1, access=noop),
        }
        index = PluginIndex([record(n) for n in reversed(list(plugins))], plugins)
        self.assertEqual([s.name for s in index.plan(ROUTE, SERVICE)],
                         ["high", "a-tie", "b-tie", "low", "negative"])
        self.assertEqual([s.name for s in index.global_steps], ["high", "a-tie", "b-tie", "low", "negative"])

    def test_onlyApplicable(self) -> None:
        """
        A plugin configured only for another route is not in the plan.
        """
        plugins = {"here": make_plugin("here", access=noop), "there": make_plugin("there", access=noop)}
        index = PluginIndex([record("here", route=ROUTE), record("there", route=OTHER_ROUTE)], plugins)
        self.assertEqual([s.name for s in index.plan(ROUTE, SERVICE)], ["here"])
        self.assertEqual([s.name for s in index.plan(OTHER_ROUTE, SERVICE)], ["there"])

    def test_mostSpecificEntry(self) -> None:
        """
        A step carries the most specific config without a consumer.
        """
        index = PluginIndex([record("p", {"v": "global"}), record("p", {"v": "route"}, route=ROUTE)],
                            {"p": make_plugin("p", access=noop)})
        (step,) = index.plan(ROUTE, SERVICE)
        self.assertEqual(step.entry.config["v"], "route")
        (step,) = index.plan(OTHER_ROUTE, SERVICE)
        self.assertEqual(step.entry.config["v"], "global")

    def test_consumerOnly(self) -> None:
        """
        A plugin configured only for a consumer is in the plan with no
        entry, to be resolved once the consumer is known.
        """
        index = PluginIndex([record("p", consumer=CONSUMER)], {"p": make_plugin("p", access=noop)})
        (step,) = index.plan(ROUTE, SERVICE)
        self.assertIsNone(step.entry)
        self.assertTrue(step.by_consumer)

    def test_consumerOnOtherRoute(self) -> None:
        """
        A consumer config tied to another route does not make the step
        consumer-dependent.
        """
        index = PluginIndex([record("p", route=OTHER_ROUTE, consumer=CONSUMER), record("p")],
                            {"p": make_plugin("p", access=noop)})
        (step,) = index.plan(ROUTE, SERVICE)
        self.assertFalse(step.by_consumer)

    def test_globalStepsOnlyGlobal(self) -> None:
        """
        The global steps (for C{rewrite}) are the plugins with a global
        config, carrying that config even when more specific ones exist.
        """
        plugins = {"g": make_plugin("g", rewrite=noop), "r": make_plugin("r", rewrite=noop)}
        index = PluginIndex([record("g", {"v": "global"}), record("g", {"v": "route"}, route=ROUTE),
                             record("r", route=ROUTE)], plugins)
        self.assertEqual([(s.name, s.entry.config["v"]) for s in index.global_steps], [("g", "global")])

    def test_planCached(self) -> None:
        """
        A plan is compiled once per route and service.
        """
        index = PluginIndex([record("p")], {"p": make_plugin("p", access=noop)})
        self.assertIs(index.plan(ROUTE, SERVICE), index.plan(ROUTE, SERVICE))

    def test_stepsByPhase(self) -> None:
        """
        A plan picks out, in its order, the steps that have each phase, so
        a request runs only through the plugins that have it.
        """
        plugins = {
            "a": make_plugin("a", 30, access=noop, log=noop),
            "b": make_plugin("b", 20, rewrite=noop, header_filter=noop, body_filter=noop),
            "c": make_plugin("c", 10, access=noop, header_filter=noop, log=noop),
        }
        plan = PluginIndex([record(n) for n in plugins], plugins).plan(ROUTE, SERVICE)
        self.assertEqual([s.name for s in plan], ["a", "b", "c"])
        names = lambda steps: [s.name for s in steps]  # noqa: E731
        self.assertEqual(names(plan.rewrite_steps), ["b"])
        self.assertEqual(names(plan.access_steps), ["a", "c"])
        self.assertEqual(names(plan.header_filter_steps), ["b", "c"])
        self.assertEqual(names(plan.body_filter_steps), ["b"])
        self.assertEqual(names(plan.log_steps), ["a", "c"])

    def test_staticWithoutConsumerConfigs(self) -> None:
        """
        A plan is static (every step's config is its entry's) unless a
        consumer-scoped config may apply to one of its steps.
        """
        plugins = {"p": make_plugin("p", access=noop), "q": make_plugin("q", access=noop)}
        index = PluginIndex([record("p"), record("q"), record("q", route=ROUTE, consumer=CONSUMER)], plugins)
        self.assertTrue(index.global_steps.static)
        self.assertFalse(index.plan(ROUTE, SERVICE).static)
        self.assertTrue(index.plan(OTHER_ROUTE, SERVICE).static)

    def test_phasesLookedUp(self) -> None:
        """
        A step has the plugin's phase methods, C{None} for the others.
        """
        index = PluginIndex([record("p")], {"p": make_plugin("p", access=noop)})
        (step,) = index.plan(ROUTE, SERVICE)
        self.assertIsNotNone(step.access)
        for phase in ("rewrite", "header_filter", "body_filter", "log"):
            self.assertIsNone(getattr(step, phase))

    def test_phasesOf(self) -> None:
        """
        L{phases_of} ignores attributes that are not callable.
        """
        p = make_plugin("p", access=noop, log="not a method")
        phases = phases_of(p)
        self.assertIsNotNone(phases["access"])
        self.assertIsNone(phases["log"])
        self.assertEqual(set(phases), {"init", "rewrite", "access", "header_filter", "body_filter", "log"})


class FreezeTests(SynchronousTestCase):
    """
    L{freeze} gives plugins configs they cannot change.
    """

    def test_mapping(self) -> None:
        """
        A frozen mapping refuses assignment and deletion.
        """
        config = freeze({"a": 1})
        self.assertEqual(dict(config), {"a": 1})
        self.assertRaises(TypeError, operator.setitem, config, "a", 2)
        self.assertRaises(TypeError, operator.delitem, config, "a")

    def test_nested(self) -> None:
        """
        Nested mappings are frozen; lists become tuples.
        """
        config = freeze({"r": {"x": [1, {"y": 2}]}})
        self.assertRaises(TypeError, operator.setitem, config["r"], "x", 0)
        self.assertEqual(config["r"]["x"][0], 1)
        self.assertIsInstance(config["r"]["x"], tuple)
        self.assertRaises(TypeError, operator.setitem, config["r"]["x"][1], "y", 3)

    def test_copy(self) -> None:
        """
        Changing the original afterwards does not change the frozen copy.
        """
        original = {"a": [1]}
        config = freeze(original)
        original["a"].append(2)
        original["b"] = 1
        self.assertEqual(dict(config), {"a": (1,)})

    def test_indexConfigsFrozen(self) -> None:
        """
        The configs in a L{PluginIndex} are frozen.
        """
        index = PluginIndex([record("p", {"list": [1], "map": {"k": "v"}})], {"p": make_plugin("p", access=noop)})
        config = index.resolve("p", None, None, None).config
        self.assertRaises(TypeError, operator.setitem, config, "new", 1)
        self.assertRaises(TypeError, operator.setitem, config["map"], "k", "w")
        self.assertEqual(config["list"], (1,))

    def test_scalars(self) -> None:
        """
        Scalars are returned as they are.
        """
        for value in (None, 1, "s", 1.5, True):
            self.assertIs(freeze(value), value)


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
