"""
Tests for L{echogate.pdk.context}: the request context and what it shows of
the client's request, unit by unit. The header editor, the plugin
development kit (PDK) through L{echogate.testing.GatewayHarness}, a
plugin's answer, per-request state and the context's release are tested
in L{tests.pdk.test_context_headers}, L{tests.pdk.test_context_pdk},
L{tests.pdk.test_context_exit}, L{tests.pdk.test_context_state} and
L{tests.pdk.test_context_release}.
"""
from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from echogate.pdk.context import ClientRequest, PluginContext, RequestContext, UpstreamRequest
from tests.proxy.test_plugin_contract import capture_log


class FakeRequest:
    """
    The parts of a C{twisted.web} request that L{ClientRequest} reads.
    """

    def __init__(self, method: bytes = b"GET", headers: dict[bytes, list[bytes]] | None = None,
                 content: io.BytesIO | None = None, secure: bool = False):
        self.method = method
        self.requestHeaders = Headers(headers or {})
        self.content = content
        self._secure = secure

    def isSecure(self) -> bool:
        return self._secure

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8443 if self._secure else 8000)


def client(headers: dict[bytes, list[bytes]] | None = None, query: str = "", **kw: Any) -> ClientRequest:
    return ClientRequest(FakeRequest(headers=headers, **kw), "/p", "/p", query, "10.0.0.1")


def context(**kw: Any) -> RequestContext:
    return RequestContext(FakeRequest(), client(**kw), 1.0)


class ClientRequestTests(SynchronousTestCase):
    """
    L{ClientRequest} (C{ctx.request}) reads what the client sent.
    """

    def test_attributes(self) -> None:
        """
        Method, paths, query, scheme and client address.
        """
        request = ClientRequest(FakeRequest(b"PATCH", secure=True), "/a/c", "/a/./b/../c", "x=1", "10.1.1.1")
        self.assertEqual((request.method, request.path, request.raw_path, request.query, request.scheme,
                          request.client_ip, request.port),
                         ("PATCH", "/a/c", "/a/./b/../c", "x=1", "https", "10.1.1.1", 8443))

    def test_host(self) -> None:
        """
        C{host} is the Host header without its port, IPv6 brackets kept.
        """
        for header, host in [(b"example.com", "example.com"), (b"example.com:8000", "example.com"),
                             (b"[::1]:8000", "[::1]"), (b"[::1]", "[::1]")]:
            self.assertEqual(client({b"host": [header]}).host, host)
        self.assertIsNone(client().host)

    def test_queryArgs(self) -> None:
        """
        The query string parsed, blank values kept, repeated names listed.
        """
        request = client(query="a=1&a=2&blank=&sp=%20x")
        self.assertEqual(request.query_args, {"a": ["1", "2"], "blank": [""], "sp": [" x"]})
        self.assertEqual(request.get_query_arg("a"), "1")
        self.assertEqual(request.get_query_arg("blank"), "")
        self.assertIsNone(request.get_query_arg("absent"))

    def test_headers(self) -> None:
        """
        Request headers, case-insensitively.
        """
        request = client({b"X-Thing": [b"1", b"2"]})
        self.assertEqual(request.get_header("x-THING"), "1")
        self.assertEqual(request.get_headers(), {"x-thing": ["1", "2"]})
        self.assertIsNone(request.get_header("absent"))

    def test_body(self) -> None:
        """
        C{body()} reads the whole body and leaves the file rewound, so it
        can be read again and still be sent upstream.
        """
        content = io.BytesIO(b"payload")
        request = client(content=content)
        self.assertEqual(request.body(), b"payload")
        self.assertEqual(request.body(), b"payload")
        self.assertEqual(content.tell(), 0)

    def test_noBody(self) -> None:
        """
        No content at all reads as C{b""}.
        """
        self.assertEqual(client().body(), b"")


class RequestContextTests(SynchronousTestCase):
    """
    L{RequestContext} holds one request's state.
    """

    def test_requestId(self) -> None:
        """
        The request id is made once and differs between requests.
        """
        one, two = context(), context()
        self.assertEqual(one.request_id, one.request_id)
        self.assertNotEqual(one.request_id, two.request_id)
        self.assertEqual(len(one.request_id), 32)

    def test_viewPerPlugin(self) -> None:
        """
        One L{PluginContext} per plugin, each with its own state, all
        sharing C{shared}.
        """
        ctx = context()
        a, b = ctx.view("a"), ctx.view("b")
        self.assertIs(ctx.view("a"), a)
        self.assertIsInstance(a, PluginContext)
        a.plugin["k"] = 1
        self.assertEqual(b.plugin, {})
        self.assertIs(ctx.view("a").plugin, a.plugin)
        a.shared["k"] = 2
        self.assertEqual(b.shared, {"k": 2})

    def test_answer(self) -> None:
        """
        C{exit} records the answer, its body encoded.
        """
        ctx = context()
        ctx.view("p").exit(418, {"a": 1}, {"X-A": "1"})
        self.assertEqual((ctx.exit.status, ctx.exit.body), (418, b'{"a": 1}'))
        self.assertEqual(ctx.exit.headers, {"X-A": "1", "Content-Type": "application/json; charset=utf-8"})

    def test_answerInvalidStatus(self) -> None:
        """
        An invalid status is refused and nothing is recorded.
        """
        ctx = context()
        for status in (0, 600, "200"):
            self.assertRaises(ValueError, ctx.view("p").exit, status)
        self.assertIsNone(ctx.exit)

    def test_answerLeavesHeadersAlone(self) -> None:
        """
        The plugin's header mapping is not changed.
        """
        headers = {"X-A": "1"}
        context().view("p").exit(200, "text", headers)
        self.assertEqual(headers, {"X-A": "1"})

    def test_authenticate(self) -> None:
        """
        C{authenticate} records the consumer and credential for every
        plugin; C{None} forgets them.
        """
        ctx = context()
        ctx.view("auth").authenticate({"id": "c"}, {"id": "k"})
        self.assertEqual((ctx.view("other").consumer, ctx.view("other").credential), ({"id": "c"}, {"id": "k"}))
        ctx.view("auth").authenticate(None)
        self.assertEqual((ctx.consumer, ctx.credential), (None, None))

    def test_viewReadsContext(self) -> None:
        """
        A view shows the context's request, route, service, upstream,
        response and request id.
        """
        ctx = context()
        ctx.route, ctx.service = {"id": "r"}, {"id": "s"}
        ctx.upstream = UpstreamRequest(Headers(), "/", "")
        view = ctx.view("p")
        self.assertIs(view.request, ctx.request)
        self.assertIs(view.route, ctx.route)
        self.assertIs(view.service, ctx.service)
        self.assertIs(view.upstream, ctx.upstream)
        self.assertIs(view.response, ctx.response)
        self.assertEqual(view.request_id, ctx.request_id)
        self.assertEqual(view.name, "p")

    def test_log(self) -> None:
        """
        C{ctx.log} tags events with the plugin's name and the request id,
        in the plugin's namespace.
        """
        events = capture_log(self)
        ctx = context()
        ctx.view("my-plugin").log.info("saw {thing}", thing="x")
        (event,) = [e for e in events if e.get("log_namespace") == "echogate.plugins.my-plugin"]
        self.assertEqual(formatEvent(event), f"[my-plugin {ctx.request_id}] saw x")
        self.assertEqual(event["log_level"].name, "info")

    def test_logLevels(self) -> None:
        """
        C{debug}, C{info}, C{warn} and C{error} log at their levels.
        """
        events = capture_log(self)
        log = context().view("p").log
        for level in ("debug", "info", "warn", "error"):
            getattr(log, level)("at {which}", which=level)
        levels = [e["log_level"].name for e in events if e.get("log_namespace") == "echogate.plugins.p"]
        self.assertEqual(levels, ["debug", "info", "warn", "error"])
