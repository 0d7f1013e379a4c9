"""
The bundled plugins that tell the time, wait or use threads take the node's
reactor and thread pool (L{echogate.interfaces.IPluginNode}) from their
C{node_service} hook: built without a clock of their own and run in
L{GatewayHarness}, they follow the harness's C{Clock} and runner.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.basic_auth import BasicAuth, PasswordCheck
from echogate.bundled.file_log import FileLog
from echogate.bundled.http_log import HttpLog
from echogate.bundled.prometheus import Prometheus
from echogate.bundled.proxy_cache import ProxyCache
from echogate.bundled.rate_limiting import RateLimiting
from echogate.plugin import NodeNotBound
from echogate.testing import GatewayHarness, UpstreamAnswer
from tests.bundled.test_basic_auth import USERS
from tests.bundled.test_prometheus import registry_text, samples
from tests.entities.test_credentials import people

#: Where the harness's clock starts: far from the real time.
START = 1000.0


class _Response:
    code = 200

    def content(self) -> Deferred:
        return succeed(b"")


class _Client:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def request(self, method: str, url: str, data: bytes, headers: dict) -> Deferred:
        self.sent.append(data)
        return succeed(_Response())


class NodeClockTests(SynchronousTestCase):
    """
    Each plugin, given no clock, reads the harness's.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def harness(self, plugin: Any, config: dict[str, Any], **kw: Any) -> GatewayHarness:
        def slow(request: Any) -> Deferred:
            d: Deferred = Deferred()
            self.clock.callLater(0.3, d.callback, UpstreamAnswer(200, {"Content-Type": "application/json"}, b"{}"))
            return d

        return GatewayHarness([plugin], configs=[(plugin.name, config)], clock=self.clock, upstream=slow, **kw)

    def send(self, harness: GatewayHarness, **kw: Any) -> Any:
        d = harness.request("GET", "/", **kw)
        self.clock.advance(0.3)
        return self.successResultOf(d)

    def test_prometheus(self) -> None:
        """
        prometheus's latencies end at the node's clock.
        """
        plugin = Prometheus()
        self.send(self.harness(plugin, {"latency_metrics": True}))
        found = samples(registry_text(plugin))
        labels = (("route", "default"), ("service", "upstream"))
        self.assertEqual(found[("echogate_request_latency_ms_sum", labels)], 300)

    def test_fileLog(self) -> None:
        """
        file-log's latencies end at the node's clock.
        """
        plugin = FileLog()
        self.addCleanup(plugin.writer.stop)
        path = os.path.abspath(self.mktemp())
        self.send(self.harness(plugin, {"path": path}))
        plugin.writer.stop()
        with open(path, "rb") as f:
            (line,) = f.read().splitlines()
        self.assertEqual(json.loads(line)["latencies"]["request"], 300)

    def test_httpLog(self) -> None:
        """
        http-log's latencies end at the node's clock, and its queue waits
        on it for more entries before sending a batch.
        """
        client = _Client()
        plugin = HttpLog(client=client)
        harness = self.harness(plugin, {"http_endpoint": "http://logs.test/",
                                        "queue": {"max_batch_size": 10, "max_coalescing_delay": 5}})
        self.send(harness)
        self.assertEqual(client.sent, [])
        self.clock.advance(5)
        (batch,) = client.sent
        (entry,) = json.loads(batch)
        self.assertEqual(entry["latencies"]["request"], 300)

    def test_proxyCache(self) -> None:
        """
        proxy-cache ages its entries by the node's clock.
        """
        harness = self.harness(ProxyCache(), {"strategy": "memory"})
        self.assertEqual(self.send(harness).header("x-cache-status"), "Miss")
        self.clock.advance(7)
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((response.header("x-cache-status"), response.header("age")), ("Hit", "7"))

    def test_rateLimiting(self) -> None:
        """
        rate-limiting's windows are the node clock's: a new minute on it
        lets requests through again.
        """
        harness = self.harness(RateLimiting(), {"minute": 1, "limit_by": "ip"})
        self.assertEqual(self.send(harness).status, 200)
        self.assertEqual(self.successResultOf(harness.request("GET", "/")).status, 429)
        self.clock.advance(60)
        self.assertEqual(self.send(harness).status, 200)


class NodeThreadPoolTests(SynchronousTestCase):
    """
    basic-auth's default password check runs its hashes through the node's
    C{run_in_thread} and remembers successes by the node's clock.
    """

    def test_hashesThroughTheNode(self) -> None:
        """
        Each hash goes through the node's runner; a remembered success does
        not, until the node's clock passes its time to live.
        """
        runs: list[Callable[..., Any]] = []

        def runner(f: Callable[..., Any], *args: Any) -> Any:
            runs.append(f)
            return f(*args)

        clock = Clock()
        harness = GatewayHarness([BasicAuth(check=PasswordCheck())], [("basic-auth", {})],
                                 entities=people(USERS), clock=clock, run_in_thread=runner)
        login = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
        for _ in range(2):
            self.assertEqual(self.successResultOf(harness.request("GET", "/", headers=login)).status, 200)
        self.assertEqual(len(runs), 1)
        clock.advance(61)
        self.assertEqual(self.successResultOf(harness.request("GET", "/", headers=login)).status, 200)
        self.assertEqual(len(runs), 2)

    def test_unbound(self) -> None:
        """
        A password check with no runner of its own and no node says so.
        """
        check = PasswordCheck()
        self.failureResultOf(check("stored", "password"), NodeNotBound)
