"""
Tests for the C{configure} phase: called with a plugin's enabled configs
at start and after each change of them, in a running node and in
L{GatewayHarness}.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.trial import unittest

from echogate.plugin import GatewayPlugin
from echogate.registry import PluginLoadError, check_plugin
from echogate.schema import Integer, Record
from echogate.testing import GatewayHarness, MemoryStore
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin
from tests.waiting import until


@attrs.frozen
class Counting(GatewayPlugin):
    """
    Records each C{configure} call's configs (their C{n}s).
    """

    calls: list[list[int]] = attrs.field(factory=list)

    name = "counting"
    version = "1.0.0"
    priority = 1
    config_schema = Record({"n": Integer(default=1)})

    def configure(self, configs: Any) -> None:
        self.calls.append(sorted(c["n"] for c in configs))


@attrs.frozen
class Other(GatewayPlugin):
    """
    A second plugin with a configure phase, to see it is left alone.
    """

    calls: list[list[int]] = attrs.field(factory=list)

    name = "other"
    version = "1.0.0"
    priority = 2
    config_schema = Record({"n": Integer(default=1)})

    def configure(self, configs: Any) -> None:
        self.calls.append(sorted(c["n"] for c in configs))


class RegistryTests(unittest.SynchronousTestCase):
    """
    The registry checks C{configure}'s signature.
    """

    def test_badSignature(self) -> None:
        """
        A C{configure} that cannot take C{configs} is refused at load.
        """
        class Bad(GatewayPlugin):
            name = "bad"
            config_schema = Record({})

            def configure(self) -> None:
                pass

        self.assertRaises(PluginLoadError, check_plugin, Bad())


class HarnessConfigureTests(unittest.SynchronousTestCase):
    """
    L{GatewayHarness} runs C{configure} as a node does.
    """

    def test_atStart(self) -> None:
        """
        At construction, with the configs given (an empty list for a
        plugin without any).
        """
        counting, other = Counting(), Other()
        GatewayHarness([counting, other], configs=[("counting", {"n": 3})])
        self.assertEqual((counting.calls, other.calls), ([[3]], [[]]))

    def test_setConfigs(self) -> None:
        """
        L{GatewayHarness.set_configs} calls it for the plugins whose
        configs changed only.
        """
        counting, other = Counting(), Other()
        harness = GatewayHarness([counting, other], configs=[("counting", {"n": 3}), ("other", {"n": 1})])
        harness.set_configs([("counting", {"n": 4}), ("other", {"n": 1})])
        self.assertEqual(counting.calls, [[3], [4]])
        self.assertEqual(other.calls, [[1]])

    def test_storeChange(self) -> None:
        """
        With a store, a config written there reaches C{configure} once
        loaded.
        """
        counting = Counting()
        store = MemoryStore()
        harness = GatewayHarness([counting], configs=[("counting", {"n": 3})], store=store)
        self.successResultOf(harness.loading)
        harness.set_configs([("counting", {"n": 5})])
        self.successResultOf(harness.loading)
        # (the harness deletes its old config, then writes the new one:
        # each write is a change the harness loads)
        self.assertEqual((counting.calls[0], counting.calls[-1]), ([3], [5]))


class NodeConfigureTests(unittest.TestCase, PostgresMixin):
    """
    A running node calls C{configure} at start and after each change.
    """

    timeout = 60

    async def test_startAndChange(self) -> None:
        """
        Once at start (no configs), then after a config is added and
        after it is changed; not after a change of other entities.
        """
        counting = Counting()
        gateway = await start_gateway(self, database=self.database(), plugin_objects={"counting": counting})
        self.assertEqual(counting.calls, [[]])
        plugin = (await gateway.admin("POST", "/plugins", json={"name": "counting", "config": {"n": 2}})).json()
        await until(lambda: counting.calls == [[], [2]], message=repr(counting.calls))
        await gateway.admin("PATCH", f"/plugins/{plugin['id']}", json={"config": {"n": 7}})
        await until(lambda: counting.calls == [[], [2], [7]], message=repr(counting.calls))
        await gateway.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:9"})
        answer = await gateway.admin("GET", "/services/s")
        self.assertEqual(answer.code, 200)
        self.assertEqual(counting.calls, [[], [2], [7]])
