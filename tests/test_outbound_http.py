"""
Tests for L{echogate.pdk.http}: a plugin calling another service through
C{node.http}, in a running node (a real service on 127.0.0.1), over the
lean client directly, and in L{GatewayHarness} with its C{outbound}
double.
"""
from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from echogate.interfaces import IPluginNode
from echogate.pdk.http import CallFailed, HTTPClient
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Number, Record, String
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from echogate.upstream.lean import LeanUpstreamClient
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin
from tests.upstream_server import start_upstream


@attrs.frozen
class Caller(GatewayPlugin):
    """
    Calls C{config["url"]} in C{access} and answers with what it got.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding)

    name = "caller"
    version = "1.0.0"
    priority = 10
    config_schema = Record({"url": String(required=True), "timeout": Number(default=5.0)})

    def node_service(self, node: IPluginNode) -> None:
        self.binding.bind(node)

    async def access(self, ctx: Any, config: Any) -> None:
        try:
            response = await self.binding.node.http.post(
                config["url"], headers={"X-From": "caller"}, body=b"ping", timeout=config["timeout"])
        except CallFailed as e:
            ctx.exit(502, {"failed": str(e), "timed_out": e.timed_out})
            return
        ctx.exit(200, {"status": response.code, "answer": response.json()})


def closed_port() -> int:
    """
    A 127.0.0.1 port nothing listens on.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class NodeOutboundTests(unittest.TestCase, PostgresMixin):
    """
    In a running node, C{node.http} reaches a real service through the
    node's own upstream client.
    """

    timeout = 60

    async def test_pluginCallsService(self) -> None:
        """
        A plugin's POST reaches the service with its headers and body,
        its answer comes back, and the connection is kept in the node's
        upstream pool.
        """
        upstream, port = start_upstream(self)
        gateway = await start_gateway(self, database=self.database(), plugin_objects={"caller": Caller()})
        await gateway.admin("POST", "/services", json={"name": "s", "url": f"http://127.0.0.1:{port}"})
        await gateway.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        answer = await gateway.admin("POST", "/plugins", json={
            "name": "caller", "config": {"url": f"http://127.0.0.1:{port}/introspect?x=1"}})
        self.assertEqual(answer.code, 201, answer)
        answer = await gateway.proxy("GET", "/p")
        self.assertEqual(answer.code, 200, answer)
        seen = answer.json()["answer"]
        self.assertEqual((seen["method"], seen["uri"], seen["body"]), ("POST", "/introspect?x=1", "ping"))
        self.assertEqual(seen["headers"]["x-from"], ["caller"])
        self.assertEqual(seen["headers"]["host"], [f"127.0.0.1:{port}"])
        self.assertEqual(gateway.service.upstream.idle_count("127.0.0.1", port), 1)

    async def test_unreachable(self) -> None:
        """
        A service that cannot be reached fails the call with
        L{CallFailed}.
        """
        gateway = await start_gateway(self, database=self.database(), plugin_objects={"caller": Caller()})
        await gateway.admin("POST", "/services", json={"name": "s", "url": "http://127.0.0.1:9"})
        await gateway.admin("POST", "/services/s/routes", json={"paths": ["/p"]})
        await gateway.admin("POST", "/plugins", json={
            "name": "caller", "config": {"url": f"http://127.0.0.1:{closed_port()}/"}})
        answer = await gateway.proxy("GET", "/p")
        self.assertEqual(answer.code, 502, answer)
        self.assertFalse(answer.json()["timed_out"])


class LeanClientTests(unittest.TestCase):
    """
    L{HTTPClient} over a L{LeanUpstreamClient}, to a real service.
    """

    def setUp(self) -> None:
        self.upstream, self.port = start_upstream(self)
        self.lean = LeanUpstreamClient(reactor)
        self.addCleanup(self.lean.close)
        self.http = HTTPClient(self.lean, reactor)

    async def test_get(self) -> None:
        """
        A GET with a query; the response's status, headers and JSON body.
        """
        response = await self.http.get(f"http://127.0.0.1:{self.port}/a?b=c", headers={"X-A": "1"})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(response.json()["uri"], "/a?b=c")
        self.assertEqual(response.json()["headers"]["x-a"], ["1"])

    async def test_statusIsNotFailure(self) -> None:
        """
        A 404 is a response, not a failure.
        """
        response = await self.http.get(f"http://127.0.0.1:{self.port}/status/404")
        self.assertEqual(response.code, 404)

    async def test_json(self) -> None:
        """
        C{json=} sends a JSON body with its content type.
        """
        response = await self.http.request("PUT", f"http://127.0.0.1:{self.port}/j", json={"a": 1})
        seen = response.json()
        self.assertEqual((seen["method"], seen["body"]), ("PUT", '{"a": 1}'))
        self.assertEqual(seen["headers"]["content-type"], ["application/json"])

    async def test_bodyLimit(self) -> None:
        """
        A body longer than C{max_body} fails the call.
        """
        d = self.http.get(f"http://127.0.0.1:{self.port}/big?size=100000", max_body=1000)
        failure = await self.assertFailure(d, CallFailed)
        self.assertIn("longer than 1000", str(failure))

    async def test_streamedBody(self) -> None:
        """
        A body that streams in pieces is read whole.
        """
        response = await self.http.get(f"http://127.0.0.1:{self.port}/big?size=100000")
        self.assertEqual(len(response.body), 100000)

    def test_badURL(self) -> None:
        """
        A URL that is not absolute http(s) fails with C{ValueError}.
        """
        self.failureResultOf(self.http.get("ftp://x/"), ValueError)
        self.failureResultOf(self.http.get("/relative"), ValueError)


@attrs.frozen
class Fetcher(GatewayPlugin):
    """
    Like L{Caller}, for the harness.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding)

    name = "fetcher"
    version = "1.0.0"
    priority = 10
    config_schema = Record({"url": String(required=True), "timeout": Number(default=5.0)})

    def node_service(self, node: IPluginNode) -> None:
        self.binding.bind(node)

    async def access(self, ctx: Any, config: Any) -> None:
        try:
            response = await self.binding.node.http.post(config["url"], body="ping", timeout=config["timeout"])
        except CallFailed as e:
            ctx.exit(502, {"failed": str(e), "timed_out": e.timed_out})
            return
        ctx.exit(200, {"status": response.code, "body": response.text()})


class HarnessOutboundTests(unittest.SynchronousTestCase):
    """
    In L{GatewayHarness}, C{node.http} calls the C{outbound} handler.
    """

    def test_handlerSeesCall(self) -> None:
        """
        The handler sees the call (method, path and query, Host, body);
        its answer is the plugin's response.
        """
        def outbound(request: UpstreamRequestSeen) -> UpstreamAnswer:
            return UpstreamAnswer(201, {"X-A": "b"}, b"pong")

        harness = GatewayHarness([Fetcher()], configs=[("fetcher", {"url": "http://auth.test:8080/i?q=1"})],
                                 outbound=outbound)
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.json(), {"status": 201, "body": "pong"})
        [seen] = harness.outbound_requests
        self.assertEqual((seen.method, seen.path, seen.body), ("POST", "/i?q=1", b"ping"))
        self.assertEqual(seen.header("host"), "auth.test:8080")

    def test_noOutbound(self) -> None:
        """
        Without C{outbound}, a call fails saying so.
        """
        harness = GatewayHarness([Fetcher()], configs=[("fetcher", {"url": "http://auth.test/"})])
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.status, 502)
        self.assertIn("outbound=", response.json()["failed"])

    def test_timeoutOnTheClock(self) -> None:
        """
        A call whose answer does not come within its timeout, on the
        harness's clock, fails with C{timed_out}.
        """
        clock = Clock()
        waiting: list[Deferred[Any]] = []

        def outbound(request: UpstreamRequestSeen) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            waiting.append(d)
            return d

        harness = GatewayHarness([Fetcher()], configs=[("fetcher", {"url": "http://auth.test/", "timeout": 2})],
                                 outbound=outbound, clock=clock)
        d = harness.request("GET", "/")
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        response = self.successResultOf(d)
        self.assertEqual(response.status, 502)
        self.assertTrue(response.json()["timed_out"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling a call fails it with C{CancelledError} and stops its
        timer.
        """
        clock = Clock()
        harness = GatewayHarness([Fetcher()], outbound=lambda request: Deferred(), clock=clock)
        d = harness.node.http.get("http://auth.test/")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])
