"""
Tests for what a plugin receives from its node (L{IPluginNode}): the
running node's L{echogate.service.PluginNode}, the harness's
L{echogate.testing.HarnessNode}, the hook that hands it over, and
L{echogate.plugin.NodeBinding}, where an immutable plugin keeps it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import attrs
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding, NodeNotBound
from echogate.schema import Record
from echogate.schema.fields import Integer
from echogate.service import PluginNode
from echogate.testing import NODE_ID, GatewayHarness, HarnessNode
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin


class _Pool:
    """
    A thread pool that runs what it is given at once, saying so.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None], f: Callable[..., Any],
                                 *args: Any, **kwargs: Any) -> None:
        self.calls.append(f)
        on_result(True, f(*args, **kwargs))


class _PoolReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.pool = _Pool()

    def getThreadPool(self) -> _Pool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class PluginNodeTests(unittest.SynchronousTestCase):
    """
    L{PluginNode}, what a running node gives its plugins.
    """

    def test_provides(self) -> None:
        """
        It provides L{IPluginNode}.
        """
        node = PluginNode(reactor=Clock(), dsn="postgresql://x/y", node_id="n")
        self.assertTrue(verifyObject(IPluginNode, node))

    def test_runInThreadPool(self) -> None:
        """
        C{run_in_thread} runs the call, with its arguments, in the
        reactor's thread pool and fires with its result.
        """
        clock = _PoolReactor()
        node = PluginNode(reactor=clock, dsn=None, node_id="n")

        def add(a: int, b: int = 0) -> int:
            return a + b

        self.assertEqual(self.successResultOf(node.run_in_thread(add, 2, b=3)), 5)
        self.assertEqual(clock.pool.calls, [add])


class HarnessNodeTests(unittest.SynchronousTestCase):
    """
    L{HarnessNode}, what L{GatewayHarness} gives its plugins.
    """

    def test_provides(self) -> None:
        """
        It provides L{IPluginNode}, without a database.
        """
        node = HarnessNode(Clock())
        self.assertTrue(verifyObject(IPluginNode, node))
        self.assertEqual((node.dsn, node.node_id), (None, NODE_ID))

    def test_inline(self) -> None:
        """
        By default C{run_in_thread} runs the call now, on this thread.
        """
        seen = []
        d = HarnessNode(Clock()).run_in_thread(lambda x, y: seen.append(threading.get_ident()) or x * y, 6, y=7)
        self.assertEqual((self.successResultOf(d), seen), (42, [threading.get_ident()]))

    def test_failure(self) -> None:
        """
        What the call raises fails the Deferred.
        """
        self.failureResultOf(HarnessNode(Clock()).run_in_thread(lambda: 1 / 0), ZeroDivisionError)

    def test_runner(self) -> None:
        """
        A test's runner decides when the call runs.
        """
        held: list[Deferred] = []

        def later(f: Callable[..., Any], *args: Any) -> Deferred:
            held.append(Deferred().addCallback(lambda _: f(*args)))
            return held[-1]

        d = HarnessNode(Clock(), runner=later).run_in_thread(lambda x: x + 1, 1)
        self.assertNoResult(d)
        held[0].callback(None)
        self.assertEqual(self.successResultOf(d), 2)


class NodeBindingTests(unittest.SynchronousTestCase):
    """
    L{NodeBinding} holds the node of an immutable plugin.
    """

    def test_unbound(self) -> None:
        """
        Before L{NodeBinding.bind}, asking for the node raises
        L{NodeNotBound}, which names the hook.
        """
        binding = NodeBinding()
        self.assertFalse(binding.bound)
        error = self.assertRaises(NodeNotBound, lambda: binding.node)
        self.assertIn("node_service(node)", str(error))

    def test_bound(self) -> None:
        """
        After L{NodeBinding.bind}, the node given (the last one).
        """
        binding = NodeBinding()
        first, second = HarnessNode(Clock()), HarnessNode(Clock())
        binding.bind(first)
        binding.bind(second)
        self.assertTrue(binding.bound)
        self.assertIs(binding.node, second)


_calls: list[tuple[str, Any]] = []


class _Recording(Service):
    def startService(self) -> None:
        super().startService()
        _calls.append(("start", None))

    def stopService(self) -> None:
        super().stopService()
        _calls.append(("stop", None))


@attrs.frozen
class NodeUser(GatewayPlugin):
    """
    Records its hook's and its phases' calls; its phase reads the time
    from the node.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding)
    with_service: bool = False

    name = "node-user"
    version = "1.0.0"
    priority = 1
    config_schema = Record({"n": Integer(default=1)})

    def node_service(self, node: IPluginNode) -> Service | None:
        _calls.append(("node_service", node))
        self.binding.bind(node)
        return _Recording() if self.with_service else None

    def init(self, configs: Any) -> None:
        _calls.append(("init", [dict(c) for c in configs]))

    def access(self, ctx: Any, config: Any) -> None:
        ctx.exit(200, {"now": self.binding.node.reactor.seconds()})


class HarnessHookTests(unittest.SynchronousTestCase):
    """
    L{GatewayHarness} gives every plugin its node before any request.
    """

    def setUp(self) -> None:
        del _calls[:]

    def test_nodeGiven(self) -> None:
        """
        The hook runs once, at construction, with the harness's node, whose
        reactor is the harness's clock.
        """
        clock = Clock()
        harness = GatewayHarness([NodeUser()], configs=[("node-user", {})], clock=clock)
        self.assertEqual(_calls, [("node_service", harness.node)])
        self.assertIs(harness.node.reactor, clock)
        clock.advance(12.5)
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.json(), {"now": 12.5})

    def test_runInThread(self) -> None:
        """
        The harness's C{run_in_thread} parameter is the node's runner.
        """
        runs: list[Any] = []

        def runner(f: Callable[..., Any], *args: Any) -> Any:
            runs.append(args)
            return f(*args)

        harness = GatewayHarness([NodeUser()], run_in_thread=runner)
        self.assertEqual(self.successResultOf(harness.node.run_in_thread(lambda x: -x, 3)), -3)
        self.assertEqual(runs, [(3,)])

    def test_servicesRunWithTheHarness(self) -> None:
        """
        The service the hook returns is started with the harness and
        stopped by L{GatewayHarness.stop}.
        """
        harness = GatewayHarness([NodeUser(with_service=True)])
        self.assertEqual([name for name, _ in _calls], ["node_service", "start"])
        self.successResultOf(harness.stop())
        self.assertEqual([name for name, _ in _calls], ["node_service", "start", "stop"])


class NodeHookTests(unittest.TestCase, PostgresMixin):
    """
    A running node gives every plugin its L{PluginNode}.
    """

    timeout = 60

    async def test_nodeBeforeInit(self) -> None:
        """
        At start-up the hook gets the node (the reactor, the database, the
        node's id; C{run_in_thread} off the reactor thread) before C{init}
        runs.
        """
        del _calls[:]
        dsn = self.database()
        gateway = await start_gateway(self, database=dsn, plugin_objects={"node-user": NodeUser()})
        self.assertEqual([name for name, _ in _calls], ["node_service", "init"])
        node = _calls[0][1]
        self.assertTrue(verifyObject(IPluginNode, node))
        self.assertEqual((node.reactor, node.dsn, node.node_id), (reactor, dsn, gateway.service.node_id))
        ident = await node.run_in_thread(threading.get_ident)
        self.assertNotEqual(ident, threading.get_ident())
