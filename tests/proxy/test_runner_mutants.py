"""
Tests for L{echogate.proxy.runner} written to kill mutants that survived
C{tools/mutation.py} (see C{docs/testing.md}): each test names the mutant
it kills.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.proxy.plan import PluginIndex
from echogate.proxy.runner import run_phase
from tests.proxy.test_runner import ROUTE, SERVICE, make_plugin, record
from tests.proxy.test_runner_phases import _Context


class RunPhasePlainResultTests(SynchronousTestCase):
    """
    A phase that returns a value that is neither C{None} nor a Deferred (nor
    a coroutine) returned synchronously: the value is ignored.
    """

    def plan(self, first: Any, seen: list) -> Any:
        """
        A plan of plugin C{a}, whose access phase returns C{first}, then
        plugin C{b}, whose access phase records its config in C{seen}.
        """
        plugins = {
            "a": make_plugin("a", 2, access=lambda self, ctx, config: first),
            "b": make_plugin("b", 1, access=lambda self, ctx, config: seen.append(config["name"])),
        }
        return PluginIndex([record(name, {"name": name}) for name in plugins], plugins).plan(ROUTE, SERVICE)

    def test_plainValueIsSynchronous(self) -> None:
        """
        A phase returning C{True} does not make L{run_phase} return a
        Deferred, and the next step runs at once (mutant: C{result is not None
        and isinstance(...)} to C{or}, line 390).
        """
        seen: list = []
        plan = self.plan(True, seen)
        self.assertIsNone(run_phase(_Context(), plan.access_steps, "access"))
        self.assertEqual(seen, ["b"])

    def test_plainValueWithUntilExit(self) -> None:
        """
        With C{until_exit} and no exit made, a phase returning a plain value
        does not stop the phase.
        """
        seen: list = []
        plan = self.plan({"not": "a Deferred"}, seen)
        self.assertIsNone(run_phase(_Context(), plan.access_steps, "access", until_exit=True))
        self.assertEqual(seen, ["b"])
