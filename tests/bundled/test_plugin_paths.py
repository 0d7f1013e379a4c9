"""
Tests for the direct paths of issue 25's realistic stack (second pass):
each gives the header lines, in order and byte for byte, and the answers
its general path gives. key-auth's usual config (identity headers set in
one pass), rate-limiting's direct path (its headers as ready lines),
request-transformer's config that only adds headers, the redaction marks
key-auth leaves for the log plugins, prometheus's flags and series kept
per config and per route and service records, and a request's size.
"""
from __future__ import annotations

import io
from types import MappingProxyType
from typing import Any, Mapping

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from echogate.bundled import log_record, rate_limiting, request_transformer
from echogate.bundled.consumers import AuthPlugin
from echogate.bundled.key_auth import KeyAuth
from echogate.bundled.log_record import _MARKED, redact_in_logs, request_size
from echogate.bundled.log_record import log_record as make_record
from echogate.bundled.prometheus import Prometheus
from echogate.bundled.rate_limiting import RateLimiting
from echogate.bundled.request_transformer import RequestTransformer
from echogate.pdk.context import ClientRequest, RequestContext, UpstreamRequest
from echogate.pdk.credentials import KEYAUTH, CredentialIndex
from echogate.pdk.headers import HeaderLines
from tests.pdk.test_context import FakeRequest

ALICE = {"id": "c-alice", "username": "alice", "custom_id": "a-1"}
BOB = {"id": "c-bob", "username": "bob", "custom_id": None}
KEYS = [{"id": "k-alice", "key": "alice-key", "consumer": {"id": "c-alice"}},
        {"id": "k-bob", "key": "bob-key", "consumer": {"id": "c-bob"}}]

#: What the gateway sends upstream before the plugins: the client's lines
#: (identity headers a client made up among them, in odd case) and its own.
UPSTREAM = [(b"X-Request-Echo", b"bench"), (b"x-consumer-id", b"forged"), (b"Host", b"127.0.0.1:9000"),
            (b"X-Credential-IDENTIFIER", b"forged"), (b"X-Anonymous-Consumer", b"true"), (b"Via", b"1.1 echogate")]

#: The upstream's answer, with rate-limit headers of its own.
RESPONSE = [(b"Server", b"nginx"), (b"x-ratelimit-limit-second", b"7"), (b"Content-Type", b"text/plain"),
            (b"RateLimit-Reset", b"9"), (b"Retry-After", b"30"), (b"Content-Length", b"2")]


def _context(headers: dict[bytes, list[bytes]] | None = None, credentials: Any = None, method: bytes = b"GET",
             query: str = "", body: bytes | None = None) -> RequestContext:
    request = FakeRequest(method, headers=headers, content=io.BytesIO(body) if body is not None else None)
    ctx = RequestContext(request, ClientRequest(request, "/p", "/p", query, "10.0.0.1"), 100.0, credentials)
    ctx.route = {"id": "r", "name": "route"}
    ctx.service = {"id": "s", "name": "service"}
    ctx.upstream = UpstreamRequest(list(UPSTREAM), "/p", query)
    ctx.response.replace_headers(list(RESPONSE))
    return ctx


def _config(plugin: Any, **config: Any) -> Mapping[str, Any]:
    return MappingProxyType(plugin.config_schema.validate(config))


class KeyAuthTests(SynchronousTestCase):
    """
    key-auth's usual config (no C{anonymous}, C{run_on_preflight}) gives
    what L{AuthPlugin.access}'s flow gives.
    """

    def run_both(self, headers: dict[bytes, list[bytes]], **config: Any) -> list[Any]:
        """
        Each way (the direct path, then the general flow), twice (an
        outcome worked out, then kept): the upstream's lines, the
        consumer, the exit.
        """
        seen = []
        for general in (False, True):
            plugin = KeyAuth()
            if general:
                self.patch(KeyAuth, "access", lambda self, ctx, config: (
                    log_record.redact_in_logs(ctx, config["key_names"]), AuthPlugin.access(self, ctx, config))[1])
            index = CredentialIndex([ALICE, BOB], {KEYAUTH: KEYS})
            validated = _config(plugin, **config)
            for _ in range(2):
                ctx = _context(headers, index)
                self.assertIsNone(plugin.access(ctx.view("key-auth"), validated))
                exit = ctx.exit
                seen.append((ctx.upstream.as_is(), ctx.consumer, ctx.credential,  # type: ignore[union-attr]
                             exit and (exit.status, exit.body, dict(exit.headers)), ctx.shared.get(_MARKED)))
        return seen

    def test_authenticated(self) -> None:
        """
        The client's identity headers go (any case), the consumer's come
        last in the same order, with or without a custom id.
        """
        for key, consumer in ((b"alice-key", ALICE), (b"bob-key", BOB)):
            direct, kept, general, general_kept = self.run_both({b"apikey": [key]})
            self.assertEqual(direct, general)
            self.assertEqual(kept, general_kept)
            self.assertEqual(direct, kept)
            self.assertEqual(direct[1]["id"], consumer["id"])
        lines = self.run_both({b"apikey": [b"alice-key"]})[0][0]
        self.assertEqual(lines, [(b"X-Request-Echo", b"bench"), (b"Host", b"127.0.0.1:9000"),
                                 (b"Via", b"1.1 echogate"), (b"X-Consumer-ID", b"c-alice"),
                                 (b"X-Consumer-Custom-ID", b"a-1"), (b"X-Consumer-Username", b"alice"),
                                 (b"X-Credential-Identifier", b"k-alice")])

    def test_refused(self) -> None:
        """
        No key, an unknown key, a key given twice: the same answer.
        """
        for headers in ({}, {b"apikey": [b"nobody"]}, {b"apikey": [b"alice-key", b"bob-key"]}):
            direct, _, general, _ = self.run_both(headers, realm="api")
            self.assertEqual(direct, general)
            self.assertEqual(direct[3][0], 401)
            self.assertEqual(direct[0], UPSTREAM)

    def test_otherConfigs(self) -> None:
        """
        Hidden credentials, another key name, the key in the query: the
        same.
        """
        for config in ({"hide_credentials": True}, {"key_names": ["X-Key", "apikey"]}):
            direct, _, general, _ = self.run_both({b"apikey": [b"alice-key"], b"x-key": [b"bob-key"]}, **config)
            self.assertEqual(direct, general, config)


class RateLimitingLinesTests(SynchronousTestCase):
    """
    rate-limiting's direct path sets the lines the general path sets, in
    its order, replacing the upstream's own.
    """

    def lines(self, config: dict[str, Any], now: float, count: int, direct: bool = True) -> list[Any]:
        """
        The response lines and the exit after each of C{count} requests at
        C{now}, through a new plugin object.
        """
        if not direct:
            self.patch(rate_limiting._Single, "of", classmethod(lambda cls, config, headers: None))
        clock = Clock()
        clock.advance(now)
        plugin = RateLimiting(reactor=clock)
        validated = _config(plugin, **config)
        answers = []
        for _ in range(count):
            ctx = _context()
            view = ctx.view("rate-limiting")
            plugin.access(view, validated)
            plugin.header_filter(view, validated)
            exit = ctx.exit
            answers.append((ctx.response.as_is(), exit and (exit.status, exit.body)))
        return answers

    def test_sameLines(self) -> None:
        """
        Within the limit and past it (Retry-After), whole and fractional
        limits, each fixed period, moments on and off a whole second.
        """
        for config in ({"second": 2}, {"minute": 3}, {"hour": 2.5}, {"day": 4.0}, {"minute": 1e20},
                       {"second": 1, "error_code": 503, "error_message": "slow"}):
            for now in (1_700_000_000.0, 1_700_000_059.25, 1_700_003_599.999):
                direct = self.lines(config, now, 4)
                general = self.lines(config, now, 4, direct=False)
                self.assertEqual(direct, general, (config, now))
                for lines, exit in direct:
                    if exit is not None:
                        self.assertIn(b"Retry-After", [name for name, _ in lines])

    def test_lines(self) -> None:
        """
        The upstream's lines of the plugin's names go (any case), the
        others stay; the plugin's come last, ready lines (L{HeaderLines})
        kept on the request.
        """
        [(lines, exit)] = self.lines({"minute": 10}, 1_700_000_040.5, 1)
        self.assertIsNone(exit)
        self.assertEqual(lines, [(b"Server", b"nginx"), (b"x-ratelimit-limit-second", b"7"),
                                 (b"Content-Type", b"text/plain"), (b"Retry-After", b"30"),
                                 (b"Content-Length", b"2"), (b"X-RateLimit-Limit-Minute", b"10"),
                                 (b"X-RateLimit-Remaining-Minute", b"9"), (b"RateLimit-Limit", b"10"),
                                 (b"RateLimit-Remaining", b"9"), (b"RateLimit-Reset", b"60")])
        clock = Clock()
        plugin = RateLimiting(reactor=clock)
        ctx = _context()
        view = ctx.view("rate-limiting")
        plugin.access(view, _config(plugin, second=5))
        self.assertIsInstance(view.plugin["headers"][1], HeaderLines)

    def test_negativeClock(self) -> None:
        """
        A clock before the epoch (a test's): the general path's reset.
        """
        for now in (-0.5, -59.75):
            self.assertEqual(self.lines({"minute": 2}, now, 3), self.lines({"minute": 2}, now, 3, direct=False))


class RequestTransformerTests(SynchronousTestCase):
    """
    A request-transformer config that only adds headers gives the general
    path's lines.
    """

    def test_addsOnly(self) -> None:
        """
        A header absent (any case) is added, one present is not; a name
        added twice, once; the general path gives the same.
        """
        plugin = RequestTransformer()
        config = _config(plugin, add={"headers": ["X-New:1", "x-request-echo:no", "X-New:2", "X-Other:o"]})
        seen = []
        for adds_only in (True, False):
            plan = request_transformer._plan_of(config)
            self.assertTrue(plan.adds_only)
            if not adds_only:
                self.patch(request_transformer, "_plan_of", lambda config, plan=plan: request_transformer._Plan(
                    **{**{field: getattr(plan, field) for field in request_transformer._Plan.__annotations__},
                       "adds_only": False}))
                self.patch(request_transformer, "_PLANS", {})
            ctx = _context()
            plugin.access(ctx.view("request-transformer"), config)
            seen.append(ctx.upstream.as_is())  # type: ignore[union-attr]
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0], UPSTREAM + [(b"X-New", b"1"), (b"X-Other", b"o")])

    def test_notAddsOnly(self) -> None:
        """
        A config with anything else, or a template, takes the general path.
        """
        plugin = RequestTransformer()
        for config in ({"add": {"headers": ["X-A:$(headers.host)"]}}, {"remove": {"headers": ["X-A"]}},
                       {"add": {"headers": ["X-A:1"], "querystring": ["q:1"]}}, {"http_method": "POST"},
                       {"replace": {"uri": "/other"}}):
            self.assertFalse(request_transformer._plan_of(_config(plugin, **config)).adds_only, config)


class RedactionMarksTests(SynchronousTestCase):
    """
    The names marked for redaction: one plugin's as a tuple, several
    plugins' as a set; the log record redacts them all.
    """

    def test_marks(self) -> None:
        """
        A tuple of names is kept as it is (lower case); marking again with
        the same names keeps it; other names make a set of all.
        """
        ctx = _context({b"apikey": [b"s"], b"X-Token": [b"t"], b"X-Other": [b"o"]}, query="apikey=q&x=1")
        view = ctx.view("key-auth")
        redact_in_logs(view, ("ApiKey",))
        marked = ctx.shared[_MARKED]
        self.assertEqual(marked, ("apikey",))
        redact_in_logs(view, ("ApiKey",))
        self.assertIs(ctx.shared[_MARKED], marked)
        redact_in_logs(view, ["X-Token"])
        self.assertEqual(ctx.shared[_MARKED], {"apikey", "x-token"})
        record = make_record(view, 100.0)
        self.assertEqual((record["request"]["headers"]["apikey"], record["request"]["headers"]["x-token"],
                          record["request"]["headers"]["x-other"], record["request"]["querystring"]),
                         ("REDACTED", "REDACTED", "o", {"apikey": "REDACTED", "x": "1"}))

    def test_tupleRedacts(self) -> None:
        """
        One plugin's tuple alone redacts its names too.
        """
        ctx = _context({b"apikey": [b"s"]})
        view = ctx.view("key-auth")
        redact_in_logs(view, ("apikey",))
        self.assertEqual(make_record(view, 100.0)["request"]["headers"]["apikey"], "REDACTED")


class PrometheusKeptTests(SynchronousTestCase):
    """
    prometheus keeps each config's flags and each route and service's
    series, by the objects themselves.
    """

    def test_newConfig(self) -> None:
        """
        Another config object (a new snapshot's) counts with its own
        flags.
        """
        plugin = Prometheus(clock=Clock())
        ctx = _context()
        ctx.response.status, ctx.response.source = 200, "service"
        view = ctx.view("prometheus")
        plugin.log(view, _config(plugin, status_code_metrics=True))
        plugin.log(view, _config(plugin))
        plugin.log(view, _config(plugin, status_code_metrics=True))
        [series] = plugin.metrics.requests.series.values()
        self.assertEqual(series.value, 2.0)

    def test_newRecords(self) -> None:
        """
        Another route record (a new snapshot's, renamed) is counted under
        its own name.
        """
        plugin = Prometheus(clock=Clock())
        config = _config(plugin, status_code_metrics=True)
        for name in ("one", "two", "two"):
            ctx = _context()
            ctx.route = {"id": "r", "name": name}
            ctx.response.status, ctx.response.source = 200, "service"
            plugin.log(ctx.view("prometheus"), config)
        counted = {key[1]: series.value for key, series in plugin.metrics.requests.series.items()}
        self.assertEqual(counted, {"one": 1.0, "two": 2.0})


def _reference_size(ctx: RequestContext) -> int:
    """
    A request's size as the log record counted it before: the request
    line, each header line, the CRLFs, and the body by its Content-Length
    (when a number) or, chunked, its length.
    """
    request = ctx.request
    uri = request.raw_path + ("?" + request.query if request.query else "")
    size = len(request.method) + len(uri) + len(" HTTP/1.1") + 1 + 2 + 2
    for name, values in request.as_is().getAllRawHeaders():
        for value in values:
            size += len(name) + len(value) + 4
    length = request.get_header("content-length")
    if length is not None:
        try:
            return size + max(0, int(length))
        except ValueError:
            pass
    if request.get_header("transfer-encoding") is None:
        return size
    return size + len(request.body())


class RequestSizeTests(SynchronousTestCase):
    """
    L{request_size} counts what it counted before.
    """

    def test_sizes(self) -> None:
        """
        Without a body, with a Content-Length, a negative or bad one,
        chunked, with a query.
        """
        for headers, query, body in (({b"Host": [b"h"]}, "", None), ({b"Content-Length": [b"12"]}, "a=1", b"x" * 12),
                                     ({b"Content-Length": [b"-3"]}, "", b""),
                                     ({b"Content-Length": [b"nope"], b"Transfer-Encoding": [b"chunked"]}, "", b"abc"),
                                     ({b"Transfer-Encoding": [b"chunked"]}, "", b"abcd"),
                                     ({b"X-A": [b"1", b"22"]}, "q", None)):
            ctx = _context(headers, query=query, body=body, method=b"POST")
            self.assertEqual(request_size(ctx.view("p")), _reference_size(ctx), headers)
            self.assertIsInstance(ctx.request.as_is(), Headers)
