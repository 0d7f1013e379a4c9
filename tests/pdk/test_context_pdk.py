"""
Tests for the plugin development kit (PDK) through
L{echogate.testing.GatewayHarness}: what C{ctx.request} shows a plugin,
and what a plugin changes on C{ctx.upstream} and C{ctx.response}.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import BodyNotRead
from echogate.testing import ROUTE_ID, SERVICE_ID, UpstreamRequestSeen
from tests.proxy.test_plugin_contract import UNEXPECTED, harness_of, make_plugin, upstream_answer


def capture(seen: list, read: Callable[[Any], Any]) -> Callable:
    """
    A phase that appends C{read(ctx)} to C{seen}.
    """

    def phase(self: Any, ctx: Any, config: Any) -> None:
        seen.append(read(ctx))

    return phase


class PDKRequestTests(SynchronousTestCase):
    """
    What C{ctx.request} shows a plugin in the running gateway.
    """

    def read(self, read: Callable[[Any], Any], method: str = "GET", path: str = "/", **kw: Any) -> Any:
        seen: list = []
        harness = harness_of(make_plugin("p", access=capture(seen, read)))
        self.successResultOf(harness.request(method, path, **kw))
        (value,) = seen
        return value

    def test_methodPathQuery(self) -> None:
        """
        The method, the normalised and raw paths, and the raw query.
        """
        self.assertEqual(
            self.read(lambda ctx: (ctx.request.method, ctx.request.path, ctx.request.raw_path,
                                   ctx.request.query, ctx.request.get_query_arg("b")),
                      "DELETE", "/a/./x/../b%41?b=2&c"),
            ("DELETE", "/a/bA", "/a/./x/../b%41", "b=2&c", "2"),
        )

    def test_headers(self) -> None:
        """
        Request headers, by name in any case.
        """
        self.assertEqual(
            self.read(lambda ctx: (ctx.request.get_header("x-custom"), ctx.request.get_headers()["x-custom"],
                                   ctx.request.host),
                      headers={"X-Custom": "v", "Host": "api.example.com:8000"}),
            ("v", ["v"], "api.example.com"),
        )

    def test_clientIp(self) -> None:
        """
        The client's address.
        """
        self.assertEqual(self.read(lambda ctx: ctx.request.client_ip, client_ip="192.0.2.7"), "192.0.2.7")

    def test_body(self) -> None:
        """
        The request body; reading it does not stop it from going upstream.
        """
        seen: list = []
        harness = harness_of(make_plugin("p", access=capture(seen, lambda ctx: ctx.request.body()),
                                         reads_body=True))
        self.successResultOf(harness.request("POST", "/", body=b'{"a": 1}'))
        self.assertEqual(seen, [b'{"a": 1}'])
        self.assertEqual(harness.upstream_requests[0].body, b'{"a": 1}')

    def test_bodyUndeclared(self) -> None:
        """
        A plugin that reads the body in access without declaring
        C{reads_body} fails (500, naming the rule in the log) instead of
        seeing a body that has not been read yet.
        """
        from echogate.errors import BodyNotRead

        harness = harness_of(make_plugin("p", access=lambda self, ctx, config: ctx.request.body()))
        response = self.successResultOf(harness.request("POST", "/", body=b'{"a": 1}'))
        self.assertEqual(response.status, 500)
        self.assertEqual(harness.upstream_requests, [])
        self.assertEqual(len(self.flushLoggedErrors(BodyNotRead)), 1)

    def test_bodyDeclaredPerConfig(self) -> None:
        """
        C{reads_body} may be a method of the config and the request: the
        body is read first only when it says so.
        """
        seen: list = []
        harness = harness_of(make_plugin("p", access=capture(seen, lambda ctx: ctx.request.body()),
                                         reads_body=lambda self, config, request:
                                         request.get_header("x-read") is not None))
        self.successResultOf(harness.request("POST", "/", body=b"abc", headers={"X-Read": "1"}))
        self.assertEqual(seen, [b"abc"])
        response = self.successResultOf(harness.request("POST", "/", body=b"abc"))
        self.assertEqual(response.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(BodyNotRead)), 1)

    def test_schemeAndPort(self) -> None:
        """
        The scheme and the port the request came in on.
        """
        self.assertEqual(self.read(lambda ctx: (ctx.request.scheme, ctx.request.port)), ("http", 8000))

    def test_routeAndService(self) -> None:
        """
        In C{access}, the matched route and service records.
        """
        self.assertEqual(self.read(lambda ctx: (ctx.route["id"], ctx.service["id"])), (ROUTE_ID, SERVICE_ID))

    def test_requestId(self) -> None:
        """
        One request id for every plugin and phase of a request, another for
        the next request.
        """
        seen: list = []
        read = capture(seen, lambda ctx: ctx.request_id)
        harness = harness_of(make_plugin("a", access=read, log=read), make_plugin("b", header_filter=read))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(len(set(seen)), 1)
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(len(set(seen)), 2)


class PDKUpstreamTests(SynchronousTestCase):
    """
    What a plugin changes on C{ctx.upstream} is what the service receives.
    """

    def send(self, change: Callable[[Any], None], path: str = "/orig?q=1",
             headers: dict[str, str] | None = None) -> UpstreamRequestSeen:
        def access(self_: Any, ctx: Any, config: Any) -> None:
            change(ctx.upstream)

        harness = harness_of(make_plugin("p", access=access))
        response = self.successResultOf(harness.request("GET", path, headers=headers))
        self.assertEqual(response.status, 200)
        (seen,) = harness.upstream_requests
        return seen

    def test_headers(self) -> None:
        """
        Headers set, added and removed.
        """

        def change(upstream: Any) -> None:
            upstream.set_header("X-Set", "s")
            upstream.add_header("X-Multi", "2")
            upstream.remove_header("X-Secret")

        seen = self.send(change, headers={"X-Multi": "1", "X-Secret": "no"})
        self.assertEqual(seen.headers["x-set"], ["s"])
        self.assertEqual(seen.headers["x-multi"], ["1", "2"])
        self.assertNotIn("x-secret", seen.headers)

    def test_path(self) -> None:
        """
        A new path, with the original query.
        """
        seen = self.send(lambda upstream: upstream.set_path("/rewritten"))
        self.assertEqual(seen.path, "/rewritten?q=1")

    def test_query(self) -> None:
        """
        A new query, from a mapping.
        """
        seen = self.send(lambda upstream: upstream.set_query({"a": ["1", "2"]}))
        self.assertEqual(seen.path, "/orig?a=1&a=2")

    def test_noQuery(self) -> None:
        """
        An empty query sends none.
        """
        seen = self.send(lambda upstream: upstream.set_query(""))
        self.assertEqual(seen.path, "/orig")

    def test_default(self) -> None:
        """
        Untouched, the service gets the request's path and query.
        """
        seen = self.send(lambda upstream: None, path="/a/b?x=1&x=2")
        self.assertEqual(seen.path, "/a/b?x=1&x=2")

    def test_badPath(self) -> None:
        """
        A relative path is the plugin's error: 500, the service is not
        called.
        """

        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.upstream.set_path("relative")

        harness = harness_of(make_plugin("p", access=access))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(harness.upstream_requests, [])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class PDKResponseTests(SynchronousTestCase):
    """
    What a plugin reads and changes on C{ctx.response}.
    """

    def respond(self, header_filter: Callable, status: int = 200,
                headers: dict[str, str] | None = None, **phases: Callable) -> Any:
        harness = harness_of(make_plugin("p", header_filter=header_filter, **phases),
                             upstream=upstream_answer(status, headers or {"Content-Type": "text/plain",
                                                                          "X-Up": "up", "X-Drop": "d"}))
        return self.successResultOf(harness.request("GET", "/"))

    def test_headers(self) -> None:
        """
        Headers set, added and removed in C{header_filter} reach the
        client.
        """

        def header_filter(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Up", "replaced")
            ctx.response.add_header("X-Added", "1")
            ctx.response.add_header("X-Added", "2")
            ctx.response.remove_header("X-Drop")

        response = self.respond(header_filter)
        self.assertEqual(response.headers["x-up"], ["replaced"])
        self.assertEqual(response.headers["x-added"], ["1", "2"])
        self.assertNotIn("x-drop", response.headers)

    def test_status(self) -> None:
        """
        C{set_status} in C{header_filter} changes the status sent.
        """

        def header_filter(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_status(203)

        self.assertEqual(self.respond(header_filter).status, 203)

    def test_upstreamStatusAndHeaders(self) -> None:
        """
        In C{header_filter} the upstream's status and headers are readable,
        also after the plugin changed the response.
        """
        seen: list = []

        def header_filter(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_status(200)
            ctx.response.remove_header("X-Up")
            seen.append((ctx.response.upstream_status, ctx.response.get_upstream_header("x-up"),
                         ctx.response.status, ctx.response.get_header("x-up"), ctx.response.source))

        self.respond(header_filter, status=418)
        self.assertEqual(seen, [(418, "up", 200, None, "service")])

    def test_exitSource(self) -> None:
        """
        For a plugin's own answer there is no upstream status, and the
        source says so.
        """
        seen: list = []

        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(401)

        def header_filter(self_: Any, ctx: Any, config: Any) -> None:
            seen.append((ctx.response.upstream_status, ctx.response.status, ctx.response.source))

        self.respond(header_filter, access=access)
        self.assertEqual(seen, [(None, 401, "exit")])

    def test_headerSetInAccess(self) -> None:
        """
        A response header set in C{access} (as Kong allows) reaches the
        client with the upstream's answer.
        """

        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-From-Access", "1")

        response = self.respond(lambda self_, ctx, config: None, access=access)
        self.assertEqual(response.header("x-from-access"), "1")

    def test_headerSetInAccessOnExit(self) -> None:
        """
        A response header set in C{access} also reaches the client when a
        plugin answers.
        """

        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-From-Access", "1")
            ctx.exit(403)

        response = self.respond(lambda self_, ctx, config: None, access=access)
        self.assertEqual((response.status, response.header("x-from-access")), (403, "1"))
