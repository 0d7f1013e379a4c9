"""
Tests for L{echogate.context}: the request context and the plugin
development kit (PDK) that phases use, unit by unit and through
L{echogate.testing.GatewayHarness}.
"""
from __future__ import annotations

import io
import platform
from typing import Any, Callable
from unittest import skipIf

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from echogate.context import (
    ClientRequest,
    HeaderEditor,
    PluginContext,
    RequestContext,
    ResponseState,
    UpstreamRequest,
    encode_exit_body,
)
from echogate.fields import String
from echogate.schema import Record
from echogate.testing import ROUTE_ID, SERVICE_ID, GatewayHarness, UpstreamAnswer, UpstreamRequestSeen
from tests.test_plugin_contract import (
    UNEXPECTED,
    capture_log,
    harness_of,
    make_plugin,
    upstream_answer,
)


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


class HeaderEditorTests(SynchronousTestCase):
    """
    L{HeaderEditor} reads and changes headers by name, case-insensitively.
    """

    def setUp(self) -> None:
        self.headers = Headers({b"X-One": [b"1", b"uno"]})
        self.editor = HeaderEditor(self.headers)

    def test_get(self) -> None:
        """
        C{get_header} gives the first value, whatever the case; C{None} when
        absent.
        """
        self.assertEqual(self.editor.get_header("x-one"), "1")
        self.assertEqual(self.editor.get_header("X-ONE"), "1")
        self.assertIsNone(self.editor.get_header("x-two"))

    def test_getHeaders(self) -> None:
        """
        C{get_headers} gives every header, lower-case name to values.
        """
        self.assertEqual(self.editor.get_headers(), {"x-one": ["1", "uno"]})

    def test_set(self) -> None:
        """
        C{set_header} replaces every value, with one or several.
        """
        self.editor.set_header("X-ONE", "only")
        self.assertEqual(self.headers.getRawHeaders(b"x-one"), [b"only"])
        self.editor.set_header("x-many", ["a", "b"])
        self.assertEqual(self.headers.getRawHeaders(b"x-many"), [b"a", b"b"])

    def test_add(self) -> None:
        """
        C{add_header} keeps the values already there.
        """
        self.editor.add_header("x-one", "2")
        self.assertEqual(self.headers.getRawHeaders(b"x-one"), [b"1", b"uno", b"2"])

    def test_remove(self) -> None:
        """
        C{remove_header} removes every value; removing an absent header is
        fine.
        """
        self.editor.remove_header("X-One")
        self.editor.remove_header("x-absent")
        self.assertFalse(self.headers.hasHeader(b"x-one"))

    def test_latin1(self) -> None:
        """
        Values are latin-1 text.
        """
        self.editor.set_header("x-name", "café")
        self.assertEqual(self.headers.getRawHeaders(b"x-name"), ["café".encode("latin-1")])
        self.assertEqual(self.editor.get_header("x-name"), "café")


class PairsHeaderEditorTests(SynchronousTestCase):
    """
    A L{HeaderEditor} that starts as wire pairs reads and changes them
    without building a L{Headers}, until one is asked for.
    """

    def setUp(self) -> None:
        self.pairs = [(b"X-One", b"1"), (b"Content-Type", b"text/plain"), (b"x-one", b"uno")]
        self.editor = HeaderEditor(None, self.pairs)

    def test_get(self) -> None:
        """
        C{get_header} gives the first value, whatever the case; C{None} when
        absent; the pairs stay pairs.
        """
        self.assertEqual(self.editor.get_header("X-ONE"), "1")
        self.assertIsNone(self.editor.get_header("x-two"))
        self.assertIs(self.editor.as_is(), self.pairs)

    def test_getHeaders(self) -> None:
        """
        C{get_headers} gives every header, lower-case name to values.
        """
        self.assertEqual(self.editor.get_headers(), {"x-one": ["1", "uno"], "content-type": ["text/plain"]})

    def test_set(self) -> None:
        """
        C{set_header} replaces every value of the name, whatever its case,
        with one or several.
        """
        self.editor.set_header("X-ONE", "only")
        self.assertEqual(self.editor.as_is(), [(b"Content-Type", b"text/plain"), (b"X-ONE", b"only")])
        self.editor.set_header("x-many", ["a", "b"])
        self.assertEqual(self.editor.as_is()[-2:], [(b"x-many", b"a"), (b"x-many", b"b")])

    def test_add(self) -> None:
        """
        C{add_header} keeps the values already there.
        """
        self.editor.add_header("x-one", "2")
        self.assertEqual(self.editor.as_is()[-1], (b"x-one", b"2"))
        self.assertEqual(self.editor.get_headers()["x-one"], ["1", "uno", "2"])

    def test_remove(self) -> None:
        """
        C{remove_header} removes every value; removing an absent header is
        fine.
        """
        self.editor.remove_header("X-One")
        self.editor.remove_header("x-absent")
        self.assertEqual(self.editor.as_is(), [(b"Content-Type", b"text/plain")])

    def test_badName(self) -> None:
        """
        A name that is not a token is refused, as L{Headers} refuses it, and
        nothing changes.
        """
        for name in ("bad name", "x:y", "", "x\r\ny"):
            self.assertRaises(InvalidHeaderName, self.editor.set_header, name, "v")
            self.assertRaises(InvalidHeaderName, self.editor.add_header, name, "v")
        self.assertEqual(len(self.editor.as_is()), 3)

    def test_lineBreaks(self) -> None:
        """
        Line breaks in a value become spaces: a value cannot add a header.
        """
        self.editor.set_header("x-a", "one\r\nX-Evil: two")
        self.editor.add_header("x-b", "three\nfour")
        self.assertEqual(self.editor.as_is()[-2:], [(b"x-a", b"one X-Evil: two"), (b"x-b", b"three four")])

    def test_startsEmpty(self) -> None:
        """
        An editor with neither pairs nor headers collects pairs.
        """
        editor = HeaderEditor()
        self.assertIsNone(editor.get_header("x"))
        editor.set_header("X-A", "1")
        self.assertEqual(editor.as_is(), [(b"X-A", b"1")])

    def test_headersObject(self) -> None:
        """
        Asking for C{headers} builds a L{Headers} from the pairs, in order;
        from then on the methods change that object.
        """
        headers = self.editor.headers
        self.assertEqual(headers.getRawHeaders(b"x-one"), [b"1", b"uno"])
        self.editor.set_header("x-two", "2")
        self.assertIs(self.editor.as_is(), headers)
        self.assertEqual(headers.getRawHeaders(b"x-two"), [b"2"])


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


class UpstreamRequestTests(SynchronousTestCase):
    """
    L{UpstreamRequest} (C{ctx.upstream}) is what will be sent to the
    service.
    """

    def setUp(self) -> None:
        self.upstream = UpstreamRequest(Headers(), "/svc/x", "a=1")

    def test_setPath(self) -> None:
        """
        C{set_path} replaces the path.
        """
        self.upstream.set_path("/other")
        self.assertEqual(self.upstream.path, "/other")

    def test_setPathRelative(self) -> None:
        """
        A path not starting with C{/} is refused.
        """
        self.assertRaises(ValueError, self.upstream.set_path, "relative")
        self.assertEqual(self.upstream.path, "/svc/x")

    def test_setQueryString(self) -> None:
        """
        C{set_query} takes a ready query string.
        """
        self.upstream.set_query("b=2")
        self.assertEqual(self.upstream.query, "b=2")

    def test_setQueryMapping(self) -> None:
        """
        C{set_query} encodes a mapping, lists as repeated arguments.
        """
        self.upstream.set_query({"b": ["1", "2"], "c": "x y"})
        self.assertEqual(self.upstream.query, "b=1&b=2&c=x+y")

    def test_headers(self) -> None:
        """
        Headers are edited in place.
        """
        self.upstream.set_header("X-Up", "1")
        self.assertEqual(self.upstream.headers.getRawHeaders(b"x-up"), [b"1"])


class ResponseStateTests(SynchronousTestCase):
    """
    L{ResponseState} (C{ctx.response}) is the response on its way.
    """

    def test_setStatus(self) -> None:
        """
        C{set_status} takes an HTTP status.
        """
        state = ResponseState()
        state.set_status(201)
        self.assertEqual(state.status, 201)

    def test_setStatusInvalid(self) -> None:
        """
        Anything but an integer from 100 to 599 is refused.
        """
        state = ResponseState()
        for status in (99, 600, "200", None, 200.0):
            self.assertRaises(ValueError, state.set_status, status)
        self.assertIsNone(state.status)

    def test_upstreamHeader(self) -> None:
        """
        C{get_upstream_header} reads the upstream's own headers; C{None}
        when there was no upstream response.
        """
        state = ResponseState()
        self.assertIsNone(state.get_upstream_header("x-up"))
        state.upstream_headers = Headers({b"X-Up": [b"1"]})
        self.assertEqual(state.get_upstream_header("x-UP"), "1")
        self.assertIsNone(state.get_upstream_header("x-absent"))

    def test_replaceHeaders(self) -> None:
        """
        After C{replace_headers}, edits go to the new headers.
        """
        state = ResponseState()
        new = Headers()
        state.replace_headers(new)
        state.set_header("x-a", "1")
        self.assertEqual(new.getRawHeaders(b"x-a"), [b"1"])
        self.assertIs(state.headers, new)

    def test_replaceHeadersWithPairs(self) -> None:
        """
        C{replace_headers} takes wire pairs too; edits change them.
        """
        state = ResponseState()
        state.replace_headers([(b"X-Up", b"1")])
        state.set_header("x-a", "2")
        self.assertEqual(state.as_is(), [(b"X-Up", b"1"), (b"x-a", b"2")])

    def test_changedEarly(self) -> None:
        """
        C{changed_early} says whether a header was set before the response
        head existed, as pairs or in a L{Headers}.
        """
        state = ResponseState()
        self.assertFalse(state.changed_early)
        state.set_header("x-a", "1")
        self.assertTrue(state.changed_early)
        state = ResponseState()
        state.headers.setRawHeaders(b"x-b", [b"2"])
        self.assertTrue(state.changed_early)


class EncodeExitBodyTests(SynchronousTestCase):
    """
    L{encode_exit_body} turns what a plugin answers with into bytes.
    """

    def test_none(self) -> None:
        """
        C{None}: empty, no content type.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body(None, headers), b"")
        self.assertEqual(headers, {})

    def test_bytes(self) -> None:
        """
        Bytes as given, no content type added.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body(b"\x00", headers), b"\x00")
        self.assertEqual(headers, {})

    def test_text(self) -> None:
        """
        A string as UTF-8 text.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body("é", headers), "é".encode())
        self.assertEqual(headers, {"Content-Type": "text/plain; charset=utf-8"})

    def test_json(self) -> None:
        """
        Anything else as JSON.
        """
        headers: dict[str, str] = {}
        self.assertEqual(encode_exit_body({"a": [1, None]}, headers), b'{"a": [1, null]}')
        self.assertEqual(headers, {"Content-Type": "application/json; charset=utf-8"})

    def test_pluginsContentType(self) -> None:
        """
        A content type the plugin gave, in any case, is kept.
        """
        headers = {"content-TYPE": "text/html"}
        encode_exit_body("<p>", headers)
        self.assertEqual(headers, {"content-TYPE": "text/html"})


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
        harness = harness_of(make_plugin("p", access=capture(seen, lambda ctx: ctx.request.body())))
        self.successResultOf(harness.request("POST", "/", body=b'{"a": 1}'))
        self.assertEqual(seen, [b'{"a": 1}'])
        self.assertEqual(harness.upstream_requests[0].body, b'{"a": 1}')

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


class ExitBodyTests(SynchronousTestCase):
    """
    How C{ctx.exit} encodes its body.
    """

    def answer(self, *args: Any) -> Any:
        def access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.exit(*args)

        return self.successResultOf(harness_of(make_plugin("p", access=access)).request("GET", "/"))

    def test_text(self) -> None:
        """
        A string is sent as UTF-8 text.
        """
        response = self.answer(200, "héllo")
        self.assertEqual(response.body, "héllo".encode())
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")

    def test_bytes(self) -> None:
        """
        Bytes are sent as given, with the plugin's content type.
        """
        response = self.answer(201, b"\x00raw", {"Content-Type": "application/octet-stream"})
        self.assertEqual((response.status, response.body), (201, b"\x00raw"))
        self.assertEqual(response.header("content-type"), "application/octet-stream")

    def test_noBody(self) -> None:
        """
        No body: an empty one.
        """
        response = self.answer(204)
        self.assertEqual((response.status, response.body), (204, b""))

    def test_jsonKeepsContentType(self) -> None:
        """
        A JSON body keeps a content type the plugin set.
        """
        response = self.answer(200, [1, 2], {"content-type": "application/problem+json"})
        self.assertEqual(response.json(), [1, 2])
        self.assertEqual(response.headers["content-type"], ["application/problem+json"])

    def test_invalidStatus(self) -> None:
        """
        An invalid status is the plugin's error: 500, logged.
        """
        response = self.answer(99)
        self.assertEqual((response.status, response.json()), (500, UNEXPECTED))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ConsumerScopeTests(SynchronousTestCase):
    """
    Consumer-scoped configs apply once a plugin has identified the consumer
    with C{ctx.authenticate}.
    """

    CONSUMER = "00000000-0000-4000-8000-0000000000c1"

    def setUp(self) -> None:
        self.logged: list = []
        consumer_id = self.CONSUMER

        def authenticate(self_: Any, ctx: Any, config: Any) -> None:
            if ctx.request.get_header("apikey") == "secret":
                ctx.authenticate({"id": consumer_id, "username": "alice"}, {"id": "credential-1"})

        def tag(self_: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Tag", config["value"])
            if ctx.consumer is not None:
                ctx.response.set_header("X-Consumer", ctx.consumer["username"])
                ctx.response.set_header("X-Credential", ctx.credential["id"])

        def log(self_: Any, ctx: Any, config: Any) -> None:
            self.logged.append(config["value"])

        self.auth = make_plugin("auth", 1000, access=authenticate)
        self.tagger = make_plugin("tagger", 10, Record({"value": String(required=True)}),
                                  header_filter=tag, log=log)

    def harness(self, *configs: tuple) -> GatewayHarness:
        return GatewayHarness([self.auth, self.tagger], configs=[("auth", {}), *configs])

    def test_consumerConfig(self) -> None:
        """
        An authenticated request gets the consumer's config in every later
        phase.
        """
        harness = self.harness(("tagger", {"value": "global"}),
                               ("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        response = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(response.header("x-tag"), "alice's")
        self.assertEqual(response.header("x-consumer"), "alice")
        self.assertEqual(response.header("x-credential"), "credential-1")
        self.assertEqual(self.logged, ["alice's"])

    def test_anonymous(self) -> None:
        """
        Without a consumer, the consumer's config does not apply.
        """
        harness = self.harness(("tagger", {"value": "global"}),
                               ("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        response = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(response.header("x-tag"), "global")
        self.assertIsNone(response.header("x-consumer"))
        self.assertEqual(self.logged, ["global"])

    def test_consumerOnly(self) -> None:
        """
        A plugin configured only for a consumer runs only for that
        consumer's requests.
        """
        harness = self.harness(("tagger", {"value": "alice's"}, {"consumer": self.CONSUMER}))
        anonymous = self.successResultOf(harness.request("GET", "/"))
        self.assertIsNone(anonymous.header("x-tag"))
        alice = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(alice.header("x-tag"), "alice's")
        self.assertEqual(self.logged, ["alice's"])

    def test_consumerAndRoute(self) -> None:
        """
        A route+consumer config wins over a consumer config.
        """
        harness = self.harness(("tagger", {"value": "consumer"}, {"consumer": self.CONSUMER}),
                               ("tagger", {"value": "route+consumer"},
                                {"consumer": self.CONSUMER, "route": ROUTE_ID}),
                               ("tagger", {"value": "route"}, {"route": ROUTE_ID}))
        response = self.successResultOf(harness.request("GET", "/", headers={"apikey": "secret"}))
        self.assertEqual(response.header("x-tag"), "route+consumer")
        anonymous = self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(anonymous.header("x-tag"), "route")


class RequestStateTests(SynchronousTestCase):
    """
    C{ctx.plugin} belongs to one plugin and one request; C{ctx.shared} to
    one request, for every plugin.
    """

    def test_pluginStatePerPlugin(self) -> None:
        """
        Each plugin sees only its own C{ctx.plugin}.
        """
        seen = []

        def writer(self: Any, ctx: Any, config: Any) -> None:
            ctx.plugin["value"] = "writer's"

        def reader(self: Any, ctx: Any, config: Any) -> None:
            seen.append(dict(ctx.plugin))

        harness = harness_of(make_plugin("writer", 20, access=writer), make_plugin("reader", 10, access=reader))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [{}])

    def test_pluginStateAcrossPhases(self) -> None:
        """
        A plugin's C{ctx.plugin} is the same from C{rewrite} to C{log}.
        """
        seen = []

        def rewrite(self: Any, ctx: Any, config: Any) -> None:
            ctx.plugin["phases"] = ["rewrite"]

        def add(phase: str) -> Callable:
            def run(self: Any, ctx: Any, config: Any, *chunk: bytes) -> None:
                ctx.plugin["phases"].append(phase)

            return run

        def log(self: Any, ctx: Any, config: Any) -> None:
            seen.append(ctx.plugin["phases"])

        harness = harness_of(make_plugin("p", rewrite=rewrite, access=add("access"),
                                         header_filter=add("header_filter"), body_filter=add("body_filter"),
                                         log=log))
        self.successResultOf(harness.request("GET", "/"))
        self.assertEqual(seen, [["rewrite", "access", "header_filter", "body_filter", "body_filter"]])

    def test_pluginStatePerRequest(self) -> None:
        """
        Every request starts with an empty C{ctx.plugin}, also while other
        requests are in flight.
        """
        seen = []
        gates: list[Deferred] = []

        def access(self: Any, ctx: Any, config: Any) -> None:
            seen.append(dict(ctx.plugin))
            ctx.plugin["path"] = ctx.request.path

        def header_filter(self: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Path", ctx.plugin["path"])

        def upstream(request: UpstreamRequestSeen) -> Deferred:
            gates.append(Deferred())
            return gates[-1].addCallback(lambda _: UpstreamAnswer())

        harness = harness_of(make_plugin("p", access=access, header_filter=header_filter), upstream=upstream)
        first = harness.request("GET", "/first")
        second = harness.request("GET", "/second")
        for gate in reversed(gates):
            gate.callback(None)
        self.assertEqual(seen, [{}, {}])
        self.assertEqual(self.successResultOf(first).header("x-path"), "/first")
        self.assertEqual(self.successResultOf(second).header("x-path"), "/second")

    def test_shared(self) -> None:
        """
        C{ctx.shared} is one dict for every plugin of a request, and a new
        one for each request.
        """
        seen = []

        def writer(self: Any, ctx: Any, config: Any) -> None:
            seen.append(("writer", dict(ctx.shared)))
            ctx.shared["user"] = ctx.request.get_header("X-User")

        def reader(self: Any, ctx: Any, config: Any) -> None:
            ctx.response.set_header("X-Seen-User", ctx.shared["user"])

        harness = harness_of(make_plugin("writer", 20, access=writer),
                             make_plugin("reader", 10, header_filter=reader))
        one = self.successResultOf(harness.request("GET", "/", headers={"X-User": "ann"}))
        two = self.successResultOf(harness.request("GET", "/", headers={"X-User": "bob"}))
        self.assertEqual((one.header("x-seen-user"), two.header("x-seen-user")), ("ann", "bob"))
        self.assertEqual(seen, [("writer", {}), ("writer", {})])


def _contexts_left_by(one: Callable[[], object]) -> list:
    """
    The request contexts that the cyclic collector finds after C{one()}
    has run twice (with the collector off meanwhile).
    """
    import gc

    from echogate.context import RequestContext

    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.disable()
        for _ in range(2):
            one()
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, RequestContext)]
    finally:
        gc.set_debug(flags)
        del gc.garbage[:]
        gc.enable()


class ReleaseTests(SynchronousTestCase):
    """
    A finished request's context is freed by reference counting, not left
    in cycles for the garbage collector.
    """

    @skipIf(platform.python_implementation() != "CPython", "reference counting is CPython's")
    def test_noCyclesLeft(self) -> None:
        """
        After a request (with a plugin view, a logger and a streamed body),
        the cyclic collector finds no request context to free.
        """
        from echogate.bundled.header_echo import HeaderEcho
        from echogate.testing import GatewayHarness

        def logging_access(self_: Any, ctx: Any, config: Any) -> None:
            ctx.log.debug("seen")

        harness = GatewayHarness([HeaderEcho(), make_plugin("logs", access=logging_access)],
                                 configs=[("header-echo", {}), ("logs", {})])
        # The harness keeps its latest request; the first one must go.
        self.assertEqual(_contexts_left_by(
            lambda: self.successResultOf(harness.request("GET", "/", headers={"X-Request-Echo": "v"}))), [])

    @skipIf(platform.python_implementation() != "CPython", "reference counting is CPython's")
    def test_noCyclesOnTheLeanClient(self) -> None:
        """
        A request proxied through echogate's own upstream client (its
        callbacks, not a Deferred, carry the response to the gateway)
        leaves no request context for the cyclic collector either.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        from echogate.bundled.header_echo import HeaderEcho
        from echogate.http11 import HTTP11Connection
        from echogate.httpclient import LeanUpstreamClient
        from echogate.proxy import Gateway, GatewayResource
        from echogate.site import GatewaySite
        from echogate.snapshot import ConfigurationData, Snapshot

        service = {"id": "s", "name": "s", "protocol": "http", "host": "127.0.0.1", "port": 9000, "path": None,
                   "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
                   "enabled": True}
        route = {"id": "r", "name": "r", "protocols": ["http"], "methods": None, "hosts": None, "paths": ["/"],
                 "headers": None, "strip_path": False, "preserve_host": False, "regex_priority": 0,
                 "service": {"id": "s"}, "path_handling": "v0"}
        echo = HeaderEcho()
        plugin = {"id": "p", "name": echo.name, "config": echo.config_schema.validate({}), "enabled": True,
                  "route": {"id": "r"}, "service": None, "consumer": None}
        snapshot = Snapshot.build(ConfigurationData(version=1, services=(service,), routes=(route,),
                                                    plugins=(plugin,)), {echo.name: echo})
        clock = Clock()
        client = LeanUpstreamClient(clock)
        client.request = lambda *a: self.fail("the gateway used the Deferred interface")  # type: ignore
        site = GatewaySite(GatewayResource(Gateway(clock=clock, snapshot=lambda: snapshot, upstream=client)),
                           reactor=clock)
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(peer)
        down = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        channel.makeConnection(down)
        conn = HTTP11Connection(client, ("127.0.0.1", 9000))
        conn.makeConnection(StringTransport())
        client._release(conn)

        def one() -> None:
            channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Echo: v\r\n\r\n")
            conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        one()
        self.assertIn(b"X-Response-Echo: v", down.value())
        self.assertEqual(_contexts_left_by(one), [])
        self.assertEqual(down.value().count(b"HTTP/1.1 200 OK"), 3)
