"""
Tests for L{echogate.proxy.plan}'s L{PluginIndex}: which plugin config applies
to a request (scope precedence, priority order), the plans it compiles,
and the frozen configs it holds. How phases are run is in
L{tests.proxy.test_runner_steps} and L{tests.proxy.test_runner_phases}; the latter
shares the ids and builders at the top.
"""
from __future__ import annotations

import operator
import uuid
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.plugin import GatewayPlugin
from echogate.proxy.plan import PluginIndex, freeze, phases_of
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
            self.assertEqual(entry.config["scope"], label, f"row start={start!r} label={label!r}")

    def test_orderWithConsumerReversedInput(self) -> None:
        """
        The order in which configs were stored does not matter.
        """
        for start, (label, *_) in enumerate(SCOPES):
            index = self.index(list(reversed(SCOPES[start:])))
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, CONSUMER).config["scope"], label,
                             f"row start={start!r} label={label!r}")

    def test_eachScopeAlone(self) -> None:
        """
        Each scope on its own applies to a request on that route, service
        and consumer.
        """
        for scope in SCOPES:
            index = self.index([scope])
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, CONSUMER).config["scope"], scope[0],
                             f"row scope={scope!r}")

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
            self.assertEqual(index.resolve("p", ROUTE, SERVICE, None).config["scope"], label,
                             f"row start={start!r} label={label!r}")
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
            self.assertIsNone(getattr(step, phase), f"row phase={phase!r}")

    def test_phasesOf(self) -> None:
        """
        L{phases_of} ignores attributes that are not callable.
        """
        p = make_plugin("p", access=noop, log="not a method")
        phases = phases_of(p)
        self.assertIsNotNone(phases["access"])
        self.assertIsNone(phases["log"])
        self.assertEqual(set(phases), {"init", "configure", "rewrite", "access", "header_filter", "body_filter", "log"})


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
            self.assertIs(freeze(value), value, f"row value={value!r}")
