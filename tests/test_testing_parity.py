"""
Parity of L{echogate.testing.GatewayHarness} with a real node: the same
plugin scenario run through the harness and through a gateway node on
127.0.0.1 (the real PostgreSQL, configured through its Admin API, in front
of the real upstream server of L{tests.upstream_server}) must look the same
to the client and to the upstream.

What legitimately differs is left out of the comparison: the Date and
Server headers and the latency headers (clock readings), the Host the
upstream sees and X-Forwarded-Port (the harness's service is
C{upstream.test}, its listener port 8000; the node's are ephemeral ports),
the hop-by-hop headers of the two connections, and a Content-Length that
only counts those differing values.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import attrs
from twisted.trial import unittest

from echogate.registry import load_plugins
from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen, _parse_response, _raw_request
from tests.gateway import start_gateway
from tests.rawclient import connect
from tests.upstream_server import start_upstream

#: Request headers the comparison leaves out: they name the two setups'
#: different addresses, or belong to one connection.
UPSTREAM_IGNORED = frozenset({"host", "x-forwarded-port", "connection", "keep-alive", "content-length"})
#: Response headers the comparison leaves out: clock readings, the
#: connection's own, and a length that counts the differing values.
CLIENT_IGNORED = frozenset({"date", "server", "connection", "keep-alive", "content-length",
                            "x-echogate-upstream-latency", "x-echogate-proxy-latency",
                            "x-echogate-response-latency"})

CONSUMER_ID = "00000000-0000-4000-8000-0000000000c1"
CREDENTIAL_ID = "00000000-0000-4000-8000-0000000000c2"
KEY = "alice-secret-key"


@attrs.frozen
class Scenario:
    """
    A route, plugin configs and consumers, set up the same way on both
    sides.

    @ivar plugins: C{(name, config)} for a global config, or C{(name,
        config, "route")} for one on the route.
    @ivar key_consumer: whether consumer alice with key L{KEY} exists.
    """

    route: Mapping[str, Any] = attrs.field(factory=dict)
    plugins: Sequence[tuple] = ()
    key_consumer: bool = False


@attrs.frozen
class Seen:
    """
    One request's outcome, normalised: what the client got and what the
    upstream got (C{None} when the request never reached it).
    """

    status: int
    headers: Mapping[str, list[str]]
    body: Any
    upstream: Mapping[str, Any] | None


def _headers(pairs: Mapping[str, list[str]], ignored: frozenset) -> dict[str, list[str]]:
    return {name.lower(): list(values) for name, values in pairs.items() if name.lower() not in ignored}


def _upstream_view(method: str, target: str, headers: Mapping[str, list[str]], body: str) -> dict[str, Any]:
    return {"method": method, "target": target, "headers": _headers(headers, UPSTREAM_IGNORED), "body": body}


def _client_body(body: bytes) -> Any:
    """
    The body the client got: the upstream's account of the request (JSON,
    normalised as the upstream's view is), or the bytes as they are.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if isinstance(parsed, dict) and "uri" in parsed:
        return _upstream_view(parsed["method"], parsed["uri"], parsed["headers"], parsed["body"])
    return parsed


def mirror_upstream(request: UpstreamRequestSeen) -> UpstreamAnswer:
    """
    The harness's upstream answering as L{tests.upstream_server} answers
    any other path: 200, JSON, the request it saw.
    """
    body = request.body
    seen = {"method": request.method, "uri": request.path, "path": request.path.split("?", 1)[0],
            "headers": dict(request.headers), "body": body.decode("latin-1"), "body_length": len(body)}
    return UpstreamAnswer(200, {"Content-Type": "application/json"}, json.dumps(seen).encode())


class HarnessParityTests(unittest.TestCase):
    """
    A scenario through L{GatewayHarness} and through a real node gives the
    client and the upstream the same view.
    """

    timeout = 60
    maxDiff = None

    async def setUp(self) -> None:
        self.plugin_objects = load_plugins("bundled")
        self.upstream, self.upstream_port = start_upstream(self)
        self.node = await start_gateway(self, plugin_objects=self.plugin_objects)

    async def admin(self, method: str, path: str, body: Mapping[str, Any]) -> dict:
        answer = await self.node.admin(method, path, json=body)
        self.assertIn(answer.code, (200, 201), answer.body)
        return answer.json()

    def harness(self, scenario: Scenario) -> GatewayHarness:
        names = {item[0] for item in scenario.plugins}
        configs = [(item[0], item[1], {"route": "00000000-0000-4000-8000-000000000002"} if len(item) > 2 else {})
                   for item in scenario.plugins]
        entities = None
        if scenario.key_consumer:
            entities = {"consumers": [{"id": CONSUMER_ID, "username": "alice"}],
                        "keyauth_credentials": [{"id": CREDENTIAL_ID, "consumer": {"id": CONSUMER_ID},
                                                 "key": KEY}]}
        return GatewayHarness([self.plugin_objects[n] for n in sorted(names)], configs=configs,
                              upstream=mirror_upstream, route=dict(scenario.route), entities=entities)

    async def configure_node(self, scenario: Scenario) -> None:
        await self.admin("POST", "/services", {"name": "upstream",
                                               "url": f"http://127.0.0.1:{self.upstream_port}"})
        await self.admin("POST", "/services/upstream/routes", {"name": "default", "paths": ["/"],
                                                               **scenario.route})
        for item in scenario.plugins:
            where = "/routes/default/plugins" if len(item) > 2 else "/plugins"
            await self.admin("POST", where, {"name": item[0], "config": item[1]})
        if scenario.key_consumer:
            await self.admin("POST", "/consumers", {"id": CONSUMER_ID, "username": "alice"})
            await self.admin("POST", "/consumers/alice/key-auth", {"id": CREDENTIAL_ID, "key": KEY})

    async def through_harness(self, harness: GatewayHarness, method: str, path: str,
                              headers: Mapping[str, str], body: bytes) -> Seen:
        before = len(harness.upstream_requests)
        response = await harness.request(method, path, headers=dict(headers), body=body)
        upstream = None
        if len(harness.upstream_requests) > before:
            seen = harness.upstream_requests[-1]
            upstream = _upstream_view(seen.method, seen.path, seen.headers, seen.body.decode("latin-1"))
        return Seen(response.status, _headers(response.headers, CLIENT_IGNORED), _client_body(response.body),
                    upstream)

    async def through_node(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Seen:
        """
        The harness's request, byte for byte (but for asking the node to
        close the connection after it), sent to the node.
        """
        before = len(self.upstream.seen)
        client = await connect(self.node.proxy_port)
        self.addCleanup(client.transport.loseConnection)
        client.send(_raw_request(method, path, {**headers, "Connection": "close"}, body))
        response = _parse_response(await client.closed)
        upstream = None
        if len(self.upstream.seen) > before:
            seen = self.upstream.seen[-1]
            upstream = _upstream_view(seen["method"], seen["uri"], seen["headers"], seen["body"])
        return Seen(response.status, _headers(response.headers, CLIENT_IGNORED), _client_body(response.body),
                    upstream)

    async def assertSame(self, scenario: Scenario,
                         requests: Sequence[tuple[str, str, Mapping[str, str], bytes]]) -> list[Seen]:
        """
        Run C{requests} through both setups of C{scenario}; each must be
        seen alike. The harness's views are returned.
        """
        harness = self.harness(scenario)
        await self.configure_node(scenario)
        views = []
        for method, path, headers, body in requests:
            in_harness = await self.through_harness(harness, method, path, headers, body)
            on_node = await self.through_node(method, path, headers, body)
            self.assertEqual(attrs.asdict(in_harness), attrs.asdict(on_node), f"{method} {path}")
            views.append(in_harness)
        return views

    async def test_noPlugins(self) -> None:
        """
        No plugins: a GET and a POST with a body are forwarded alike.
        """
        (get, post) = await self.assertSame(Scenario(), [
            ("GET", "/a/b?x=1&y=2", {"X-Custom": "one"}, b""),
            ("POST", "/form", {"Content-Type": "text/plain"}, b"some body"),
        ])
        self.assertEqual((get.status, get.upstream["target"]), (200, "/a/b?x=1&y=2"))
        self.assertEqual(post.upstream["body"], "some body")

    async def test_headerEcho(self) -> None:
        """
        header-echo: the request header comes back alike.
        """
        (echoed,) = await self.assertSame(Scenario(plugins=[("header-echo", {})]), [
            ("GET", "/x", {"X-Request-Echo": "hi"}, b""),
        ])
        self.assertEqual(echoed.headers["x-response-echo"], ["hi"])

    async def test_keyAuth(self) -> None:
        """
        key-auth: the consumer's key lets the request through with the
        consumer's headers; no key and a wrong key get the same 401.
        """
        ok, missing, wrong = await self.assertSame(
            Scenario(plugins=[("key-auth", {}, "route")], key_consumer=True), [
                ("GET", "/x", {"apikey": KEY}, b""),
                ("GET", "/x", {}, b""),
                ("GET", "/x", {"apikey": "not-the-key"}, b""),
            ])
        self.assertEqual((ok.status, ok.upstream["headers"]["x-consumer-username"]), (200, ["alice"]))
        self.assertEqual((missing.status, missing.upstream), (401, None))
        self.assertEqual((wrong.status, wrong.upstream), (401, None))

    async def test_requestTransformer(self) -> None:
        """
        request-transformer adding a header: the upstream sees it alike.
        """
        (added,) = await self.assertSame(
            Scenario(plugins=[("request-transformer", {"add": {"headers": ["X-Added:yes"]}})]), [
                ("GET", "/x", {}, b""),
            ])
        self.assertEqual(added.upstream["headers"]["x-added"], ["yes"])

    async def test_stripPath(self) -> None:
        """
        A prefix route with the Admin API's defaults strips the prefix
        alike; a path outside it gets the same 404.
        """
        stripped, outside = await self.assertSame(Scenario(route={"paths": ["/api"]}), [
            ("GET", "/api/users?id=1", {}, b""),
            ("GET", "/other", {}, b""),
        ])
        self.assertEqual(stripped.upstream["target"], "/users?id=1")
        self.assertEqual((outside.status, outside.upstream), (404, None))

    async def test_stripPathOff(self) -> None:
        """
        A prefix route with C{strip_path} off keeps the prefix alike.
        """
        (kept,) = await self.assertSame(Scenario(route={"paths": ["/api"], "strip_path": False}), [
            ("GET", "/api/users", {}, b""),
        ])
        self.assertEqual(kept.upstream["target"], "/api/users")
