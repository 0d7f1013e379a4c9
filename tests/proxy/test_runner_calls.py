"""
Tests for what a plan works out once so that L{echogate.proxy.runner.run_phase}
does less per step (issue 25): each phase's steps with their calls
(L{PhaseSteps}), the views found without a call, and the phases a plugin
says do nothing for a config (C{idle_phases}), left out of plans.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.correlation_id import CorrelationId
from echogate.bundled.rate_limiting import RateLimiting
from echogate.proxy.plan import PHASES, PhaseSteps, PluginIndex
from echogate.proxy.runner import PluginFailure, run_phase
from tests.proxy.test_runner import CONSUMER, ROUTE, SERVICE, make_plugin, noop, record
from tests.proxy.test_runner_phases import RunPhaseTests, _Context


def _plan(plugins: dict[str, Any], records: list[dict] | None = None) -> Any:
    """
    The plan of C{ROUTE} and C{SERVICE} for C{plugins}, each with a
    route config C{{"name": name}} unless C{records} are given.
    """
    records = records if records is not None else [record(name, {"name": name}, route=ROUTE) for name in plugins]
    return PluginIndex(records, plugins).plan(ROUTE, SERVICE)


class PhaseStepsTests(SynchronousTestCase):
    """
    A plan's steps of each phase are a L{PhaseSteps}: the steps, and the
    call of each worked out once.
    """

    def test_calls(self) -> None:
        """
        Each phase's steps are those that have it, in order, with a
        C{(name, method, config)} call each: the step's phase method and
        its entry's config.
        """
        plan = _plan({"a": make_plugin("a", 2, access=noop, log=noop), "b": make_plugin("b", 1, access=noop)})
        for phase in ("rewrite", "access", "header_filter", "body_filter", "log"):
            steps = getattr(plan, f"{phase}_steps")
            self.assertIsInstance(steps, PhaseSteps)
            self.assertEqual(steps.phase, phase)
            self.assertEqual(steps.calls, tuple((step.name, getattr(step, phase), step.config) for step in steps))
        self.assertEqual([step.name for step in plan.access_steps], ["a", "b"])
        self.assertEqual([name for name, _, _ in plan.log_steps.calls], ["a"])
        self.assertEqual([config["name"] for _, _, config in plan.access_steps.calls], ["a", "b"])

    def test_stillATuple(self) -> None:
        """
        The steps compare, index and iterate as the tuple they were.
        """
        plan = _plan({"a": make_plugin("a", access=noop)})
        self.assertEqual(plan.access_steps, (plan[0],))
        self.assertEqual(plan.rewrite_steps, ())

    def test_otherPhase(self) -> None:
        """
        Steps run for a phase other than theirs call that phase's method
        of each step (the loop over the steps), not their own calls.
        """
        seen = []
        plugin = make_plugin("a", access=lambda self, ctx, config: seen.append("access"),
                             log=lambda self, ctx, config: seen.append("log"))
        plan = _plan({"a": plugin})
        run_phase(_Context(), plan.access_steps, "log")
        self.assertEqual(seen, ["log"])


class PlainStepsRunPhaseTests(RunPhaseTests):
    """
    L{RunPhaseTests} with the steps as a plain tuple: L{run_phase}'s loop
    over the steps does all that its loop over a L{PhaseSteps}' calls does.
    """

    def plan(self, **behaviours: Any) -> Any:
        plan = super().plan(**behaviours)
        return SimpleNamespace(access_steps=tuple(plan.access_steps))


class _Counting(_Context):
    """
    A request context that counts the views it is asked to make.
    """

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def view(self, name: str) -> Any:
        self.asked.append(name)
        return super().view(name)


class ViewsTests(SynchronousTestCase):
    """
    L{run_phase} finds a view made before in the context's C{views}.
    """

    def test_madeOnce(self) -> None:
        """
        The context makes each view once; a later phase finds it.
        """
        seen = []
        plan = _plan({"a": make_plugin("a", 2, access=lambda self, ctx, config: seen.append(ctx),
                                       log=lambda self, ctx, config: seen.append(ctx)),
                      "b": make_plugin("b", 1, access=lambda self, ctx, config: seen.append(ctx))})
        context = _Counting()
        run_phase(context, plan.access_steps, "access")
        run_phase(context, plan.log_steps, "log")
        self.assertEqual(context.asked, ["a", "b"])
        self.assertEqual(seen, [("view", "a"), ("view", "b"), ("view", "a")])

    def test_failureNamesPlugin(self) -> None:
        """
        A phase that raises is a L{PluginFailure} naming the plugin and
        phase, from the calls as from the steps.
        """
        plan = _plan({"a": make_plugin("a", log=lambda self, ctx, config: 1 / 0)})
        error = self.assertRaises(PluginFailure, run_phase, _Context(), plan.log_steps, "log")
        self.assertEqual((error.plugin, error.phase), ("a", "log"))


class _Idle:
    """
    C{idle_phases} of a test plugin (a class attribute, called with the
    config alone): the phases named in its config's C{idle}, or an error.
    """

    def __init__(self, error: bool = False) -> None:
        self.error = error

    def __call__(self, config: Any) -> tuple[str, ...]:
        if self.error:
            raise KeyError("idle")
        return tuple(config.get("idle", ()))


def _idle_plugin(name: str, error: bool = False) -> Any:
    return make_plugin(name, access=noop, header_filter=noop, log=noop, idle_phases=_Idle(error))


class IdlePhasesTests(SynchronousTestCase):
    """
    A plugin's C{idle_phases(config)} leaves those phases out of the steps
    whose config is always that config.
    """

    def test_leftOut(self) -> None:
        """
        The idle phases are not in the step, nor in the plan's steps of
        those phases; the others are.
        """
        plan = _plan({"a": _idle_plugin("a")}, [record("a", {"idle": ["header_filter", "log"]}, route=ROUTE)])
        [step] = plan
        self.assertEqual((step.header_filter, step.log), (None, None))
        self.assertIsNotNone(step.access)
        self.assertEqual((len(plan.access_steps), len(plan.header_filter_steps), len(plan.log_steps)), (1, 0, 0))

    def test_perConfig(self) -> None:
        """
        Each config's own idle phases: another route's config keeps them.
        """
        other = "00000000-0000-4000-8000-0000000000a9"
        index = PluginIndex([record("a", {"idle": ["log"]}, route=ROUTE), record("a", {}, route=other)],
                            {"a": _idle_plugin("a")})
        self.assertEqual(len(index.plan(ROUTE, SERVICE).log_steps), 0)
        self.assertEqual(len(index.plan(other, SERVICE).log_steps), 1)

    def test_byConsumer(self) -> None:
        """
        A step whose config may be a consumer's keeps every phase: the
        config that applies is known only per request.
        """
        records = [record("a", {"idle": ["log"]}, route=ROUTE), record("a", {}, consumer=CONSUMER)]
        plan = PluginIndex(records, {"a": _idle_plugin("a")}).plan(ROUTE, SERVICE)
        [step] = plan
        self.assertTrue(step.by_consumer)
        self.assertIsNotNone(step.log)

    def test_raises(self) -> None:
        """
        An C{idle_phases} that raises leaves every phase in.
        """
        plan = _plan({"a": _idle_plugin("a", error=True)}, [record("a", {"idle": ["log"]}, route=ROUTE)])
        self.assertEqual(len(plan.log_steps), 1)

    def test_global(self) -> None:
        """
        The global steps (rewrite) leave idle phases out too.
        """
        plugin = make_plugin("a", rewrite=noop, access=noop, idle_phases=_Idle())
        index = PluginIndex([record("a", {"idle": ["rewrite"]})], {"a": plugin})
        self.assertEqual(len(index.global_steps.rewrite_steps), 0)
        self.assertEqual(len(index.global_steps.access_steps), 1)

    def test_correlationId(self) -> None:
        """
        correlation-id: C{header_filter} is idle without
        C{echo_downstream}; both phases without a header name.
        """
        plugin = CorrelationId()

        def phases(**config: Any) -> set[str]:
            validated = plugin.config_schema.validate(config)
            [step] = _plan({plugin.name: plugin}, [record(plugin.name, validated, route=ROUTE)])
            return {phase for phase in PHASES if getattr(step, phase, None) is not None}

        self.assertEqual(phases(), {"access"})
        self.assertEqual(phases(echo_downstream=True), {"access", "header_filter"})
        self.assertEqual(phases(header_name=None), set())

    def test_rateLimiting(self) -> None:
        """
        rate-limiting: C{header_filter} is idle with C{hide_client_headers}.
        """
        plugin = RateLimiting()
        for hide, expected in ((False, 1), (True, 0)):
            validated = plugin.config_schema.validate({"second": 5, "hide_client_headers": hide})
            plan = _plan({plugin.name: plugin}, [record(plugin.name, validated, route=ROUTE)])
            self.assertEqual((len(plan.access_steps), len(plan.header_filter_steps)), (1, expected))
