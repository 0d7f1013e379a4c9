"""
Tests for the time budget of regex routes (L{echogate.routing.router}'s
C{regex_timeout}, L{echogate.routing.router.SlowRegexLog} and
L{echogate.routing.paths.compile_regex}): a regex that backtracks
catastrophically on a crafted path cannot hold the node, a match that runs
out counts as no match, and ordinary regexes match as they did with C{re}.

The attacks here would take hours (or years) without the budget; the
budget is what keeps these tests fast, and no test asserts on wall time.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from echogate.routing.paths import compile_regex, compile_regex_path
from echogate.routing.router import Router
from echogate.testing import GatewayHarness
from tests.routing.test_router import build, request, route
from tests.tables import raises_for

#: The issue's regex, and the attacker's path: 40 C{a}s and a C{b}. C{re}
#: takes about 3 s at 27 C{a}s, doubling with each one more.
NESTED = "~/(a+)+$"
NESTED_PATH = "/" + "a" * 40 + "b"

#: A regex that even the C{regex} package's optimisations cannot save from
#: backtracking: every C{a} can be either branch. With 40 C{a}s, 2**40
#: attempts, so a match on this path always runs out of any budget here.
EITHER = "~/(a|a)+$"
EITHER_PATH = "/" + "a" * 40 + "!"


def _timeouts(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """
    The events that report a regex match that ran out of time.
    """
    return [e for e in events
            if e.get("log_namespace") == "echogate.routing" and "path_length" in e]


class BudgetTests(SynchronousTestCase):
    """
    A regex route whose match runs out of its time budget counts as not
    matching, and the look-up goes on to the other routes.
    """

    def test_nestedQuantifierFallsBack(self) -> None:
        """
        C{~/(a+)+$} against 40 C{a}s and a C{b} (the issue's attack) does
        not hold the look-up: the C{/} route gets the request.
        """
        routes = [route("nested", paths=[NESTED]), route("fallback", paths=["/"])]
        match = request(build(routes), path=NESTED_PATH)
        assert match is not None
        self.assertEqual(match.route["name"], "fallback")

    def test_timeoutCountsAsNoMatch(self) -> None:
        """
        With the default budget, a regex that runs out of time on the
        attacker's path counts as no match: the C{/} route wins, and the
        time-out is logged.
        """
        routes = [route("evil", paths=[EITHER]), route("fallback", paths=["/"])]
        with capturedLogs() as events:
            match = request(build(routes), path=EITHER_PATH)
        assert match is not None
        self.assertEqual(match.route["name"], "fallback")
        self.assertEqual([e["route_id"] for e in _timeouts(events)], [routes[0]["id"]])

    def test_tinyBudgetNextCandidateWins(self) -> None:
        """
        A regex route that would win, given the time, loses to the next
        candidate when its match runs out of a tiny budget.
        """
        slow = r"~/(?:(a|a)+c|a+b)"
        path = "/" + "a" * 14 + "b"
        routes = [route("slow", paths=[slow]), route("fallback", paths=["/"])]
        match = request(build(routes, regex_timeout=1e-6), path=path)
        assert match is not None
        self.assertEqual(match.route["name"], "fallback")

    def test_givenTimeTheRegexWins(self) -> None:
        """
        Without a limit, the same regex route matches and outranks the
        prefix route (what the tiny budget took away).
        """
        slow = r"~/(?:(a|a)+c|a+b)"
        path = "/" + "a" * 14 + "b"
        routes = [route("slow", paths=[slow]), route("fallback", paths=["/"])]
        match = request(build(routes, regex_timeout=None), path=path)
        assert match is not None
        self.assertEqual(match.route["name"], "slow")

    def test_otherPathsOfTheRouteSkipped(self) -> None:
        """
        A time-out ends the route: its other paths are not tried, so one
        route spends at most one budget on a request.
        """
        routes = [route("evil", paths=[EITHER, "/aaa"]), route("fallback", paths=["/"])]
        match = request(build(routes, regex_timeout=0.001), path=EITHER_PATH)
        assert match is not None
        self.assertEqual(match.route["name"], "fallback")

    def test_headerRegex(self) -> None:
        """
        A C{~*} header regex has the same budget: a crafted header value
        does not hold the look-up, and the route counts as not matching.
        """
        routes = [route("evil", paths=["/"], headers={"x-v": ["~*(a|a)+$"]}),
                  route("fallback", paths=["/"])]
        with capturedLogs() as events:
            match = request(build(routes), path="/", headers={"x-v": ["a" * 40 + "!"]})
        assert match is not None
        self.assertEqual(match.route["name"], "fallback")
        self.assertEqual([e["route_id"] for e in _timeouts(events)], [routes[0]["id"]])

    def test_noRouteLeft(self) -> None:
        """
        When the route that ran out was the only candidate, no route
        matches (the proxy answers 404).
        """
        router = build([route("evil", paths=[EITHER])], regex_timeout=0.001)
        self.assertIsNone(request(router, path=EITHER_PATH))

    def test_timedOutLookupNotCached(self) -> None:
        """
        A look-up in which a regex ran out of time is not remembered: the
        same request evaluates the routes again.
        """
        evaluated: list[dict[str, Any]] = []
        routes = [route("evil", paths=[EITHER]), route("fallback", paths=["/"])]
        router = build(routes, regex_timeout=0.001, on_candidate=evaluated.append)
        request(router, path=EITHER_PATH)
        request(router, path=EITHER_PATH)
        self.assertEqual([r["name"] for r in evaluated].count("evil"), 2)

    def test_buildDefault(self) -> None:
        """
        L{Router.build}'s budget defaults to 5 ms, the default of the
        C{regex_match_timeout} setting.
        """
        routes = [route("evil", paths=[EITHER])]
        with capturedLogs() as events:
            Router.build(routes, {}).match("GET", None, EITHER_PATH, {})
        self.assertEqual([e["timeout"] for e in _timeouts(events)], [0.005])


class ProxyTests(SynchronousTestCase):
    """
    The attacker's raw request, through a gateway whose only route is a
    regex that backtracks catastrophically.
    """

    def test_rawRequest(self) -> None:
        """
        C{GET /aaa...a!} against the route C{~/(a|a)+$} is answered 404
        (no route matched) instead of holding the node for years.
        """
        harness = GatewayHarness([], route={"paths": [EITHER]})
        raw = b"GET /" + b"a" * 40 + b"! HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = harness.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address,
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionError("test over")))
        with capturedLogs() as events:
            protocol.dataReceived(raw)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value()[:40])
        self.assertIn(b"no Route matched with those values", transport.value())
        self.assertEqual(len(_timeouts(events)), 1)


class LogTests(SynchronousTestCase):
    """
    A time-out is logged with the route and the path's length, at most
    once per route per second.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.routes = [route("evil", paths=[EITHER]), route("other", paths=["~/(b|b)+$"]),
                       route("fallback", paths=["/"])]
        self.router = build(self.routes, regex_timeout=0.001, clock=self.clock)

    def test_event(self) -> None:
        """
        The event names the route and the path's length, not the path, at
        warning level.
        """
        with capturedLogs() as events:
            request(self.router, path=EITHER_PATH)
        [event] = _timeouts(events)
        self.assertEqual((event["route_id"], event["path_length"], event["log_level"]),
                         (self.routes[0]["id"], len(EITHER_PATH), LogLevel.warn))
        message = formatEvent(event)
        self.assertIn(self.routes[0]["id"], message)
        self.assertIn(str(len(EITHER_PATH)), message)
        self.assertNotIn("aaaa", message)

    def test_rateLimited(self) -> None:
        """
        Time-outs of one route within a second of its last event are only
        counted; the next event, a second later, says how many.
        """
        with capturedLogs() as events:
            for _ in range(3):
                request(self.router, path=EITHER_PATH)
            self.clock.advance(0.5)
            request(self.router, path=EITHER_PATH)
        self.assertEqual([e["unlogged"] for e in _timeouts(events)], [0])
        with capturedLogs() as events:
            self.clock.advance(0.5)
            request(self.router, path=EITHER_PATH)
        self.assertEqual([e["unlogged"] for e in _timeouts(events)], [3])

    def test_perRoute(self) -> None:
        """
        The limit is per route: another route's time-out is logged even
        within the second.
        """
        with capturedLogs() as events:
            request(self.router, path=EITHER_PATH)
            request(self.router, path="/" + "b" * 40 + "!")
            request(self.router, path="/" + "b" * 41 + "!")
        self.assertEqual([e["route_id"] for e in _timeouts(events)],
                         [self.routes[0]["id"], self.routes[1]["id"]])


# Ordinary patterns, as routes write them, and paths to try them on.
ORDINARY = [
    r"/users/\d+", r"/users/\d+$", r"/users/(?<id>\d+)/(?<part>[a-z]+)?", r"/u/(?P<id>\w+)",
    r"(?i)/Users/[A-Z]+", r"/a|/b", r"/v[12]/(x|y)*", r"/files/.+\.(jpg|png)$", r"/(?:a{2,3})/z",
    r"/x(?=/y)", r"/(?<!x)y", r"/a\.b", r"/p/[^/]+/q", r"/[\]x]+", r"/%2F\d", r"/\w+-\w+",
    r"^/anchored", r"/opt(ional)?/?$", r"/(a)(b)?(c)",
]
PATHS = [
    "/", "/users/42", "/users/42/orders", "/users/x", "/USERS/ABC", "/users/abc", "/a", "/b",
    "/v1/xyx", "/v3/x", "/files/a/b.jpg", "/files/x.gif", "/aa/z", "/aaaa/z", "/x/y", "/y",
    "/a.b", "/aXb", "/p/seg/q", "/p//q", "/]]x", "/%2F1", "/u/abc_1", "/long-name",
    "/anchored/x", "/optional/", "/opt", "/ac", "/abc", "/:", "/x",
]


class CompatibilityTests(SynchronousTestCase):
    """
    Regex paths match as they did with C{re}, and the Admin API accepts and
    refuses the same regexes, with the same messages.
    """

    def test_sameMatches(self) -> None:
        """
        Ordinary patterns give the same match, groups and named groups as
        C{re} did, case-sensitive unless the pattern says C{(?i)}.
        """
        for source in ORDINARY:
            pattern = compile_regex_path("~" + source)
            before = re.compile(re.sub(r"\(\?<([A-Za-z_])", r"(?P<\1", source))
            for path in PATHS:
                with self.subTest(source=source, path=path):
                    now, then = pattern.match(path, timeout=1.0), before.match(path)
                    self.assertEqual(now is None, then is None, f"row source={source!r} path={path!r}")
                    if now is not None and then is not None:
                        self.assertEqual((now.group(0), now.groups(), now.groupdict()),
                                         (then.group(0), then.groups(), then.groupdict()),
                                         f"row source={source!r} path={path!r}")

    def test_headerIgnoresCase(self) -> None:
        """
        A header regex is compiled to search ignoring case, as before.
        """
        pattern = compile_regex(r"linux|os\s+x", ignore_case=True)
        self.assertIsNotNone(pattern.search("Mozilla (Mac OS X)", timeout=1.0))
        self.assertIsNone(compile_regex(r"linux").search("LINUX", timeout=1.0))

    def test_sameErrors(self) -> None:
        """
        A regex C{re} refuses is refused with C{re}'s message, even where
        the C{regex} package would accept it.
        """
        for source in ("/a(", "/a)", r"/\p{L}", "/a(?i)b", "/(?<=a+)b"):
            with self.subTest(source=source):
                error = raises_for(self, source, ValueError, compile_regex_path, "~" + source)
                self.assertIsInstance(error.__cause__, re.error, f"row source={source!r}")
                self.assertEqual(str(error), f"invalid regex {source!r}: {error.__cause__}", f"row source={source!r}")

    def test_posixClass(self) -> None:
        """
        PCRE's POSIX classes, as Kong users write them, mean what they mean
        for Kong: C{[[:digit:]]} is a digit.
        """
        pattern = compile_regex_path("~/v[[:digit:]]+$")
        self.assertIsNotNone(pattern.match("/v12", timeout=1.0))
        self.assertIsNone(pattern.match("/v:", timeout=1.0))

    def test_badHeaderRegexLeftOut(self) -> None:
        """
        A route whose header regex does not compile is left out of the
        table with a warning, as before.
        """
        with capturedLogs() as events:
            router = build([route(headers={"x-v": ["~*("]}), route(paths=["/"])])
        self.assertEqual(len(router), 1)
        self.assertTrue(any("invalid regex" in formatEvent(e) for e in events
                            if e.get("log_level") == LogLevel.warn))
