"""
Tests for L{echogate.router} and L{echogate.matching}.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from echogate.matching import Match, split_host
from echogate.router import Router

SERVICE_ID = "5a2b0a3e-0000-4000-8000-000000000001"
_ids = itertools.count(1)


def service(**fields: Any) -> dict[str, Any]:
    """
    A Kong-shaped service record.
    """
    record = {
        "id": SERVICE_ID, "name": "svc", "protocol": "http", "host": "upstream.test",
        "port": 80, "path": None, "retries": 5, "connect_timeout": 60000,
        "write_timeout": 60000, "read_timeout": 60000, "enabled": True,
        "created_at": 1700000000, "updated_at": 1700000000, "tags": None,
    }
    record.update(fields)
    return record


def route(name: str | None = None, **fields: Any) -> dict[str, Any]:
    """
    A Kong-shaped route record; each new one is a second younger than the
    one before, unless C{created_at} says otherwise.
    """
    n = next(_ids)
    record = {
        "id": f"00000000-0000-4000-8000-{n:012d}", "name": name,
        "protocols": ["http", "https"], "methods": None, "hosts": None,
        "paths": None, "headers": None, "snis": None, "sources": None,
        "destinations": None, "strip_path": True, "preserve_host": False,
        "regex_priority": 0, "path_handling": "v0",
        "https_redirect_status_code": 426, "request_buffering": True,
        "response_buffering": True, "created_at": 1700000000 + n,
        "updated_at": 1700000000 + n, "tags": None,
        "service": {"id": SERVICE_ID},
    }
    record.update(fields)
    return record


def build(routes: Iterable[dict[str, Any]], services: Sequence[dict[str, Any]] = (),
          **kwargs: Any) -> Router:
    """
    Build a router over C{routes} and C{services} (by default, the one
    service every route refers to).
    """
    services = list(services) or [service()]
    return Router.build(list(routes), {s["id"]: s for s in services}, **kwargs)


def request(router: Router, method: str = "GET", host: str | None = None,
            path: str = "/", headers: Mapping[str, Sequence[str]] | None = None,
            scheme: str = "http") -> Match | None:
    """
    Match one request.
    """
    return router.match(method, host, path, headers or {}, scheme=scheme)


# (what, route fields, request, matches?)
MATCHING: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("method", {"methods": ["GET"]}, {"method": "GET"}, True),
    ("other method", {"methods": ["GET"]}, {"method": "POST"}, False),
    ("one of methods", {"methods": ["GET", "POST"]}, {"method": "POST"}, True),
    ("route method case", {"methods": ["get"]}, {"method": "GET"}, True),
    ("host", {"hosts": ["example.com"]}, {"host": "example.com"}, True),
    ("other host", {"hosts": ["example.com"]}, {"host": "example.org"}, False),
    ("one of hosts", {"hosts": ["a.com", "b.com"]}, {"host": "b.com"}, True),
    ("host case", {"hosts": ["Example.COM"]}, {"host": "eXample.com"}, True),
    ("no Host header", {"hosts": ["example.com"]}, {"host": None}, False),
    ("empty Host header", {"hosts": ["example.com"]}, {"host": ""}, False),
    ("host, any port", {"hosts": ["example.com"]}, {"host": "example.com:8123"}, True),
    ("host, its port", {"hosts": ["example.com:8123"]}, {"host": "example.com:8123"}, True),
    ("host, other port", {"hosts": ["example.com:8123"]}, {"host": "example.com:8124"}, False),
    ("host, implicit http port", {"hosts": ["example.com:80"]}, {"host": "example.com"}, True),
    ("host, implicit https port", {"hosts": ["example.com:443"]},
     {"host": "example.com", "scheme": "https"}, True),
    ("host, implicit port mismatch", {"hosts": ["example.com:80"]},
     {"host": "example.com", "scheme": "https"}, False),
    ("host is not a prefix", {"hosts": ["example.com"]}, {"host": "example.com.evil"}, False),
    ("ipv6", {"hosts": ["[::1]"]}, {"host": "[::1]:8000"}, True),
    ("ipv6 unbracketed", {"hosts": ["::1"]}, {"host": "[::1]"}, True),
    ("ipv6 with port", {"hosts": ["[::1]:8000"]}, {"host": "[::1]:8000"}, True),
    ("ipv6 other port", {"hosts": ["[::1]:8000"]}, {"host": "[::1]:9000"}, False),
    ("leftmost wildcard", {"hosts": ["*.example.com"]}, {"host": "a.example.com"}, True),
    ("leftmost wildcard, deeper", {"hosts": ["*.example.com"]}, {"host": "a.b.example.com"}, True),
    ("leftmost wildcard, bare", {"hosts": ["*.example.com"]}, {"host": "example.com"}, False),
    ("leftmost wildcard, empty label", {"hosts": ["*.example.com"]},
     {"host": ".example.com"}, False),
    ("leftmost wildcard, glued", {"hosts": ["*.example.com"]}, {"host": "aexample.com"}, False),
    ("leftmost wildcard, any port", {"hosts": ["*.example.com"]},
     {"host": "a.example.com:81"}, True),
    ("leftmost wildcard, its port", {"hosts": ["*.example.com:81"]},
     {"host": "a.example.com:81"}, True),
    ("leftmost wildcard, other port", {"hosts": ["*.example.com:81"]},
     {"host": "a.example.com:82"}, False),
    ("leftmost wildcard, case", {"hosts": ["*.Example.com"]}, {"host": "A.EXAMPLE.COM"}, True),
    ("rightmost wildcard", {"hosts": ["example.*"]}, {"host": "example.com"}, True),
    ("rightmost wildcard, deeper", {"hosts": ["example.*"]}, {"host": "example.co.uk"}, True),
    ("rightmost wildcard, bare", {"hosts": ["example.*"]}, {"host": "example"}, False),
    ("rightmost wildcard, not a suffix", {"hosts": ["example.*"]},
     {"host": "www.example.com"}, False),
    ("rightmost wildcard, port", {"hosts": ["example.*:80"]}, {"host": "example.com"}, True),
    ("rightmost wildcard, other port", {"hosts": ["example.*:80"]},
     {"host": "example.com:81"}, False),
    ("prefix path", {"paths": ["/route"]}, {"path": "/route"}, True),
    ("prefix path, more", {"paths": ["/route"]}, {"path": "/route/x"}, True),
    ("prefix path, plain prefix", {"paths": ["/route"]}, {"path": "/routereq"}, True),
    ("prefix path, shorter", {"paths": ["/route"]}, {"path": "/rout"}, False),
    ("prefix path, not at start", {"paths": ["/route"]}, {"path": "/x/route"}, False),
    ("prefix path, case", {"paths": ["/route"]}, {"path": "/Route"}, False),
    ("one of paths", {"paths": ["/a", "/b"]}, {"path": "/b/c"}, True),
    ("root path", {"paths": ["/"]}, {"path": "/anything"}, True),
    ("encoded slash", {"paths": ["/a%2Fb"]}, {"path": "/a%2Fb/c"}, True),
    ("encoded slash is not a slash", {"paths": ["/a/b"]}, {"path": "/a%2Fb"}, False),
    ("regex path", {"paths": [r"~/users/\d+"]}, {"path": "/users/12/x"}, True),
    ("regex path, no match", {"paths": [r"~/users/\d+"]}, {"path": "/users/x"}, False),
    ("regex path, anchored", {"paths": [r"~/users/\d+"]}, {"path": "/x/users/12"}, False),
    ("regex path, end", {"paths": [r"~/users/\d+$"]}, {"path": "/users/12/x"}, False),
    ("regex path, alternation", {"paths": [r"~/a|/b"]}, {"path": "/b"}, True),
    ("regex path, PCRE group", {"paths": [r"~/u/(?<id>\d+)"]}, {"path": "/u/1"}, True),
    ("header", {"headers": {"x-v": ["1"]}}, {"headers": {"x-v": ["1"]}}, True),
    ("header, other value", {"headers": {"x-v": ["1"]}}, {"headers": {"x-v": ["2"]}}, False),
    ("header, absent", {"headers": {"x-v": ["1"]}}, {"headers": {}}, False),
    ("header, one of values", {"headers": {"x-v": ["1", "2"]}}, {"headers": {"x-v": ["2"]}}, True),
    ("header, one of request values", {"headers": {"x-v": ["1"]}},
     {"headers": {"x-v": ["3", "1"]}}, True),
    ("header value case", {"headers": {"x-v": ["Blue"]}}, {"headers": {"x-v": ["bLUE"]}}, True),
    ("header name case", {"headers": {"X-V": ["1"]}}, {"headers": {"x-v": ["1"]}}, True),
    ("header value is whole", {"headers": {"x-v": ["1"]}}, {"headers": {"x-v": ["1, 2"]}}, False),
    ("all headers", {"headers": {"x-a": ["1"], "x-b": ["2"]}},
     {"headers": {"x-a": ["1"], "x-b": ["2"]}}, True),
    ("all headers, one missing", {"headers": {"x-a": ["1"], "x-b": ["2"]}},
     {"headers": {"x-a": ["1"]}}, False),
    ("header regex", {"headers": {"user-agent": [r"~*linux|os\s+x"]}},
     {"headers": {"user-agent": ["Mozilla (Mac OS X 10)"]}}, True),
    ("header regex, no match", {"headers": {"user-agent": [r"~*linux|os\s+x"]}},
     {"headers": {"user-agent": ["Windows"]}}, False),
    ("header regex, only alone", {"headers": {"x-v": ["~*a.c", "z"]}},
     {"headers": {"x-v": ["abc"]}}, False),
    ("host header condition is ignored", {"headers": {"host": ["a.com"]}, "paths": ["/"]},
     {"host": "b.com"}, True),
    ("host and path", {"hosts": ["a.com"], "paths": ["/p"]}, {"host": "a.com", "path": "/p"}, True),
    ("host and path, path wrong", {"hosts": ["a.com"], "paths": ["/p"]},
     {"host": "a.com", "path": "/q"}, False),
    ("host and path, host wrong", {"hosts": ["a.com"], "paths": ["/p"]},
     {"host": "b.com", "path": "/p"}, False),
    ("everything", {"hosts": ["a.com"], "paths": ["/p"], "methods": ["PUT"],
                    "headers": {"x-v": ["1"]}},
     {"host": "a.com", "path": "/p", "method": "PUT", "headers": {"x-v": ["1"]}}, True),
    ("everything, method wrong", {"hosts": ["a.com"], "paths": ["/p"], "methods": ["PUT"],
                                  "headers": {"x-v": ["1"]}},
     {"host": "a.com", "path": "/p", "method": "GET", "headers": {"x-v": ["1"]}}, False),
    ("empty lists are unset", {"hosts": [], "methods": [], "headers": {}, "paths": ["/"]},
     {"host": "x.com", "method": "DELETE"}, True),
    ("protocols are not matched", {"protocols": ["https"], "paths": ["/"]},
     {"scheme": "http"}, True),
]


class MatchingTests(SynchronousTestCase):
    """
    A route matches when every field it sets matches: AND across fields,
    OR within one.
    """

    def test_table(self) -> None:
        """
        Each request matches the route, or not, as the table says.
        """
        for what, fields, req, expected in MATCHING:
            router = build([route(**fields)])
            for cached in (False, True):
                with self.subTest(what=what, cached=cached):
                    self.assertEqual(request(router, **req) is not None, expected)

    def test_no_routes(self) -> None:
        """
        An empty table matches nothing.
        """
        self.assertIsNone(request(build([]), host="a.com", path="/"))


# (what, routes in creation order, request, expected route name)
ORDERING: list[tuple[str, list[dict[str, Any]], dict[str, Any], str]] = [
    ("more kinds of fields first",
     [route("host", hosts=["a.com"]), route("host+path", hosts=["a.com"], paths=["/"])],
     {"host": "a.com", "path": "/x"}, "host+path"),
    ("more kinds beat a longer prefix",
     [route("path", paths=["/x/y/z"]), route("method+path", methods=["GET"], paths=["/"])],
     {"path": "/x/y/z"}, "method+path"),
    ("host and path beat method (Kong)",
     [route("host", hosts=["d.org"]), route("method", methods=["TRACE"]),
      route("path", paths=["/my-route"])],
     {"method": "TRACE", "host": "d.org"}, "host"),
    ("path beats method (Kong)",
     [route("method", methods=["TRACE"]), route("path", paths=["/my-route"])],
     {"method": "TRACE", "path": "/my-route"}, "path"),
    ("method does not supersede a wildcard host",
     [route("method", methods=["GET"]), route("wild", hosts=["domain.*"])],
     {"host": "domain.com"}, "wild"),
    ("same count: hosts before headers",
     [route("headers", headers={"x-v": ["1"]}), route("hosts", hosts=["a.com"])],
     {"host": "a.com", "headers": {"x-v": ["1"]}}, "hosts"),
    ("same count: headers before paths",
     [route("paths", paths=["/p"]), route("headers", headers={"x-v": ["1"]})],
     {"path": "/p", "headers": {"x-v": ["1"]}}, "headers"),
    ("plain host before wildcard host",
     [route("wild", hosts=["*.a.com"]), route("plain", hosts=["x.a.com"])],
     {"host": "x.a.com"}, "plain"),
    ("plain host before wildcard host, rightmost",
     [route("wild", hosts=["route.*"]), route("plain", hosts=["route.com"])],
     {"host": "route.com"}, "plain"),
    ("wildcard host when the plain host route does not match",
     [route("wild", hosts=["*.route.com"], paths=["/path1"]),
      route("plain", hosts=["plain.route.com"], paths=["/path2"])],
     {"host": "plain.route.com", "path": "/path1"}, "wild"),
    ("plain host counts per request, not per route",
     [route("mixed", hosts=["*.b.com", "x.a.com"]), route("plain", hosts=["x.a.com"])],
     {"host": "x.a.com"}, "mixed"),
    ("host with its port before host with any port",
     [route("any", hosts=["a.com"]), route("port", hosts=["a.com:8000"])],
     {"host": "a.com:8000"}, "port"),
    ("wildcard with its port before wildcard with any port",
     [route("any", hosts=["route.*"]), route("port", hosts=["route.*:80", "route.com.*"])],
     {"host": "route.org:80"}, "port"),
    ("wildcard with its implicit port",
     [route("any", hosts=["route.*"]), route("123", hosts=["route.*:123"]),
      route("80", hosts=["route.*:80"])],
     {"host": "route.org"}, "80"),
    ("plain host before wildcard host with port",
     [route("wild", hosts=["*.a.com:80"]), route("plain", hosts=["x.a.com"])],
     {"host": "x.a.com:80"}, "plain"),
    ("more header conditions first",
     [route("two", headers={"version": ["v1", "v2"], "user-agent": ["foo", "bar"]}),
      route("three", headers={"version": ["v1", "v2"], "user-agent": ["foo", "bar"],
                              "location": ["east", "west"]})],
     {"headers": {"version": ["v1"], "user-agent": ["foo"], "location": ["north", "west"]}},
     "three"),
    ("more headers beat a longer path",
     [route("long", headers={"version": ["v1"]}, paths=["/my-route/hello"]),
      route("headers", headers={"version": ["v1"], "location": ["us-east"]},
            paths=["/my-route"])],
     {"path": "/my-route/hello", "headers": {"version": ["v1"], "location": ["us-east"]}},
     "headers"),
    ("more headers beat a regex",
     [route("regex", headers={"a": ["1"]}, paths=["~/p"]),
      route("prefix", headers={"a": ["1"], "b": ["2"]}, paths=["/p"])],
     {"path": "/p", "headers": {"a": ["1"], "b": ["2"]}}, "prefix"),
    ("plain host beats a regex",
     [route("regex", hosts=["*.a.com"], paths=["~/p"]),
      route("prefix", hosts=["x.a.com"], paths=["/p"])],
     {"host": "x.a.com", "path": "/p"}, "prefix"),
    ("regex before prefix",
     [route("prefix", paths=["/route/persons"]),
      route("regex", paths=[r"~/route/persons/\d+/profile"])],
     {"path": "/route/persons/123/profile"}, "regex"),
    ("regex before an exact prefix",
     [route("prefix", paths=["/route/fixture"]), route("regex", paths=["~/route/(fixture)"])],
     {"path": "/route/fixture"}, "regex"),
    ("regex before prefix, with host",
     [route("pat", hosts=["route.com"], paths=["/pat"]),
      route("path", hosts=["route.com"], paths=["/path"], methods=["POST"]),
      route("regex", hosts=["route.com"], paths=["~/(path)"])],
     {"host": "route.com", "path": "/path"}, "regex"),
    ("the regex that matches",
     [route("one", paths=[r"~/route/persons/\d{3}"]),
      route("two", paths=[r"~/route/persons/\d{3}/following"]),
      route("three", paths=[r"~/route/persons/\d{3}/[a-z]+"])],
     {"path": "/route/persons/456"}, "one"),
    ("higher regex_priority first",
     [route("low", paths=["~/a"], regex_priority=1), route("high", paths=["~/a"], regex_priority=2)],
     {"path": "/a"}, "high"),
    ("regex_priority beats age",
     [route("old", paths=["~/a"]), route("young", paths=["~/a/b"], regex_priority=5)],
     {"path": "/a/b"}, "young"),
    ("negative regex_priority",
     [route("neg", paths=["~/a"], regex_priority=-1), route("zero", paths=["~/a"])],
     {"path": "/a"}, "zero"),
    ("regex_priority is ignored for prefix paths",
     [route("short", paths=["/v"], regex_priority=10), route("long", paths=["/v1"])],
     {"path": "/v1"}, "long"),
    ("longer prefix first",
     [route("short", paths=["/a"]), route("long", paths=["/a/b"])],
     {"path": "/a/b/c"}, "long"),
    ("longer prefix first, whatever the age",
     [route("long", paths=["/a/b"]), route("short", paths=["/a"])],
     {"path": "/a/b/c"}, "long"),
    ("root does not supersede a longer prefix",
     [route("root", paths=["/"]), route("mine", paths=["/my-route"])],
     {"path": "/my-route/hello"}, "mine"),
    ("root is a catch-all",
     [route("root", paths=["/"]), route("mine", paths=["/my-route"])],
     {"path": "/foobar"}, "root"),
    ("best of a route's paths counts",
     [route("multi", paths=["/a", "/bbbbbbb"]), route("ab", paths=["/a/bb"])],
     {"path": "/a/bb/foobar"}, "ab"),
    ("overlapping prefixes, short",
     [route("multi", hosts=["d.org"], paths=["/foo", "/foo/bar/baz"]),
      route("foobar", hosts=["d.org"], paths=["/foo/bar"])],
     {"host": "d.org", "path": "/foo"}, "multi"),
    ("overlapping prefixes, long",
     [route("multi", hosts=["d.org"], paths=["/foo", "/foo/bar/baz"]),
      route("foobar", hosts=["d.org"], paths=["/foo/bar"])],
     {"host": "d.org", "path": "/foo/bar/baz/x"}, "multi"),
    ("regex and prefix in one route, regex",
     [route("mixed", hosts=["d.org"], paths=["~/some/thing/else", "/foo"]),
      route("prefix", hosts=["d.org"], paths=["/foo/bar"])],
     {"host": "d.org", "path": "/some/thing/else"}, "mixed"),
    ("regex and prefix in one route, prefix",
     [route("mixed", hosts=["d.org"], paths=["~/some/thing/else", "/foo"]),
      route("prefix", hosts=["d.org"], paths=["/foo/bar"])],
     {"host": "d.org", "path": "/foo/bar"}, "prefix"),
    ("half a host and path match does not supersede",
     [route("one", hosts=["host1.com"], paths=["/v1/path"]),
      route("two", hosts=["host2.com"], paths=["/"])],
     {"host": "host2.com", "path": "/v1/path"}, "two"),
    ("same conditions: older first",
     [route("old", paths=["/a"]), route("young", paths=["/a"])],
     {"path": "/a"}, "old"),
    ("same conditions: older first, listed later",
     [route("young", paths=["/a"], created_at=20), route("old", paths=["/a"], created_at=10)],
     {"path": "/a"}, "old"),
    ("same age: smaller id first",
     [route("b", paths=["/a"], created_at=10, id="bbbb"),
      route("a", paths=["/a"], created_at=10, id="aaaa")],
     {"path": "/a"}, "a"),
    ("unknown age last",
     [route("unknown", paths=["/a"], created_at=None), route("known", paths=["/a"])],
     {"path": "/a"}, "known"),
    ("many routes of one kind",
     [route(f"n{i}", hosts=["d.org"], paths=["/my-uri"]) for i in range(5)]
     + [route("target", hosts=["d.org"], paths=["/my-target-uri"])],
     {"host": "d.org", "path": "/my-target-uri"}, "target"),
]


class OrderingTests(SynchronousTestCase):
    """
    Among several routes that match, the best one wins.
    """

    def test_table(self) -> None:
        """
        The route named in the table wins, whatever order the routes are
        given in.
        """
        for what, routes, req, expected in ORDERING:
            for order in (routes, routes[::-1]):
                match = request(build(order), **req)
                with self.subTest(what=what, reversed=order is not routes):
                    self.assertIsNotNone(match)
                    assert match is not None
                    self.assertEqual(match.route["name"], expected)


class MatchResultTests(SynchronousTestCase):
    """
    A L{Match} says where the request goes.
    """

    def test_prefix(self) -> None:
        """
        A prefix match strips the prefix and joins the rest to the service
        path.
        """
        router = build([route(paths=["/route"])], [service(path="/service")])
        match = request(router, path="/routereq")
        assert match is not None
        self.assertEqual(match.stripped, "/route")
        self.assertEqual(match.removed_prefix, "/route")
        self.assertEqual(match.upstream_path, "/service/req")
        self.assertEqual(match.matched_path, "/route")
        self.assertEqual(match.service, service(path="/service"))
        self.assertEqual(match.captures, ())
        self.assertEqual(dict(match.named_captures), {})

    def test_no_strip(self) -> None:
        """
        Without strip_path the whole path is appended, and nothing counts
        as removed.
        """
        router = build([route(paths=["/route"], strip_path=False)], [service(path="/service")])
        match = request(router, path="/route")
        assert match is not None
        self.assertEqual(match.stripped, "/route")
        self.assertEqual(match.removed_prefix, "")
        self.assertEqual(match.upstream_path, "/service/route")

    def test_strip_path_unset(self) -> None:
        """
        A null C{strip_path} means the default: strip.
        """
        router = build([route(paths=["/route"], strip_path=None)], [service(path="/s")])
        match = request(router, path="/route/x")
        assert match is not None
        self.assertEqual(match.upstream_path, "/s/x")
        self.assertEqual(match.removed_prefix, "/route")

    def test_regex(self) -> None:
        """
        A regex match strips the whole match and gives its captures.
        """
        router = build([route(paths=[r"~/users/(?<id>\d+)/(p)(x)?"])], [service(path="/s")])
        match = request(router, path="/users/123/profile/hello")
        assert match is not None
        self.assertEqual(match.stripped, "/users/123/p")
        self.assertEqual(match.upstream_path, "/s/rofile/hello")
        self.assertEqual(match.captures, ("123", "p", None))
        self.assertEqual(dict(match.named_captures), {"id": "123"})
        self.assertEqual(match.matched_path, r"~/users/(?<id>\d+)/(p)(x)?")
        with self.assertRaises(TypeError):
            match.named_captures["id"] = "1"  # type: ignore[index]

    def test_regex_strip_to_segment(self) -> None:
        """
        A regex match ending before a slash leaves that slash.
        """
        router = build([route(paths=[r"~/users/\d+/profile"])], [service(path=None)])
        match = request(router, path="/users/123/profile/hello/world")
        assert match is not None
        self.assertEqual(match.upstream_path, "/hello/world")

    def test_without_path(self) -> None:
        """
        A route matched without a path strips nothing.
        """
        router = build([route(hosts=["a.com"])], [service(path="/service")])
        match = request(router, host="A.com:80", path="/x")
        assert match is not None
        self.assertEqual(match.stripped, "")
        self.assertEqual(match.upstream_path, "/service/x")
        self.assertEqual(match.matched_host, "a.com")
        self.assertIsNone(match.matched_path)

    def test_matched_wildcard_host(self) -> None:
        """
        The matched host is the route's host as configured.
        """
        match = request(build([route(hosts=["*.Example.com"])]), host="a.example.com")
        assert match is not None
        self.assertEqual(match.matched_host, "*.Example.com")

    def test_without_service(self) -> None:
        """
        A route without a service matches, with no service.
        """
        match = request(build([route(paths=["/r"], service=None)]), path="/r/x")
        assert match is not None
        self.assertIsNone(match.service)
        self.assertEqual(match.upstream_path, "/x")


class SplitHostTests(SynchronousTestCase):
    """
    Tests for L{split_host}.
    """

    def test_table(self) -> None:
        """
        Host values split into a lower-case name and a port.
        """
        table = [
            ("Example.COM", ("example.com", None)),
            ("example.com:8080", ("example.com", 8080)),
            ("example.com:", ("example.com", None)),
            ("example.com:x1", ("example.com:x1", None)),
            ("example.com:٣", ("example.com:٣", None)),
            (" example.com ", ("example.com", None)),
            ("[::1]", ("::1", None)),
            ("[::1]:80", ("::1", 80)),
            ("[::1]:", ("::1", None)),
            ("::1", ("::1", None)),
            ("[::1", ("[::1", None)),
            ("*.a.com:81", ("*.a.com", 81)),
        ]
        for value, expected in table:
            with self.subTest(value=value):
                self.assertEqual(split_host(value), expected)


def _messages(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") >= LogLevel.info]


class BuildTests(SynchronousTestCase):
    """
    L{Router.build} rejects nothing, but leaves out what cannot or must not
    be routed.
    """

    def test_disabled_service(self) -> None:
        """
        A route whose service is disabled is left out, and that is logged.
        """
        off = service(id="off", enabled=False)
        routes = [route(paths=["/off"], service={"id": "off"}), route(paths=["/"])]
        with capturedLogs() as events:
            router = build(routes, [service(), off])
        self.assertEqual(len(router), 1)
        match = request(router, path="/off")
        assert match is not None
        self.assertEqual(match.route, routes[1])
        self.assertTrue(any(routes[0]["id"] in m and "disabled" in m for m in _messages(events)))

    def test_enabled_unset(self) -> None:
        """
        A service whose C{enabled} is null counts as enabled.
        """
        router = build([route(paths=["/"])], [service(enabled=None)])
        self.assertIsNotNone(request(router, path="/"))

    def test_missing_service(self) -> None:
        """
        A route whose service is not in the mapping matches with no service,
        and that is logged.
        """
        r = route(paths=["/"], service={"id": "gone"})
        with capturedLogs() as events:
            router = build([r])
        match = request(router, path="/")
        assert match is not None
        self.assertIsNone(match.service)
        self.assertTrue(any("gone" in m for m in _messages(events)))

    def test_left_out(self) -> None:
        """
        A route with a bad regex path, a bad header regex, a malformed
        wildcard host or no condition at all is left out and logged; the
        others stay.
        """
        bad = [
            route(paths=["~/(unclosed"]),
            route(paths=["/ok", "~/a)"]),
            route(headers={"x-v": ["~*("]}),
            route(hosts=["a.*.com"]),
            route(hosts=["*"]),
            route(hosts=["*.*.com"]),
            route(),
            route(headers={"host": ["a.com"]}),
        ]
        good = route(paths=["/"])
        with capturedLogs() as events:
            router = build(bad + [good])
        self.assertEqual(len(router), 1)
        messages = _messages(events)
        for r in bad:
            with self.subTest(route=r):
                self.assertTrue(any(r["id"] in m and "left out" in m for m in messages))
        for path in ("/ok", "/a)", "/(unclosed"):
            match = request(router, path=path, host="a.x.com", headers={"x-v": ["("]})
            assert match is not None
            self.assertEqual(match.route, good)

    def test_malformed_fields(self) -> None:
        """
        A route whose fields have the wrong shape is left out with its
        traceback logged, instead of breaking the whole table.
        """
        bad = [route(paths=5), route(hosts=[None]), route(paths=["/x"], regex_priority="high")]
        with capturedLogs():
            router = build(bad + [route(paths=["/"])])
        self.flushLoggedErrors()
        self.assertEqual(len(router), 1)

    def test_input_untouched(self) -> None:
        """
        Building leaves the route and service records as they were.
        """
        r = route(hosts=["A.com"], paths=["/b", "/a"], methods=["get"], headers={"X": ["Y"]})
        copy = {k: (list(v) if isinstance(v, list) else v) for k, v in r.items()}
        build([r])
        self.assertEqual(r, copy)


class _Counter:
    """
    An C{on_candidate} hook that counts the routes a look-up evaluates.
    """

    def __init__(self) -> None:
        self.evaluated: list[dict[str, Any]] = []

    def __call__(self, route: dict[str, Any]) -> None:
        self.evaluated.append(route)

    def take(self) -> int:
        count = len(self.evaluated)
        self.evaluated = []
        return count


class IndexTests(SynchronousTestCase):
    """
    A look-up examines only the routes that could match, not the whole
    table.
    """

    def check(self, routes: list[dict[str, Any]], requests: list[dict[str, Any]],
              expected: list[str | None], most: int) -> None:
        counter = _Counter()
        router = build(routes, cache_size=0, on_candidate=counter)
        for req, name in zip(requests, expected):
            match = request(router, **req)
            with self.subTest(request=req):
                self.assertEqual(match.route["name"] if match else None, name)
                self.assertLessEqual(counter.take(), most)

    def test_distinct_hosts(self) -> None:
        """
        With 10,000 routes on distinct hosts, a look-up evaluates only the
        route for its host.
        """
        routes = [route(f"r{i}", hosts=[f"h{i}.example.com"]) for i in range(10000)]
        self.check(
            routes,
            [{"host": "h7.example.com"}, {"host": "H9999.example.com:8000"},
             {"host": "nowhere.example.com"}, {"host": None}],
            ["r7", "r9999", None, None],
            most=1,
        )

    def test_distinct_prefixes(self) -> None:
        """
        With 10,000 routes on distinct path prefixes, a look-up evaluates
        only the routes whose prefix starts its path.
        """
        routes = [route(f"r{i}", paths=[f"/api/v{i}"]) for i in range(10000)]
        self.check(
            routes,
            [{"path": "/api/v1234/x"}, {"path": "/api/v12"}, {"path": "/other"}],
            ["r1234", "r12", None],
            most=4,
        )

    def test_distinct_hosts_and_prefixes(self) -> None:
        """
        Routes on 100 hosts with 100 prefixes each: a look-up evaluates the
        few routes of its host whose prefix starts its path.
        """
        routes = [route(f"r{h}-{p}", hosts=[f"h{h}.test"], paths=[f"/p{p}"])
                  for h in range(100) for p in range(100)]
        self.check(
            routes,
            [{"host": "h42.test", "path": "/p17/x"}, {"host": "h42.test", "path": "/q"}],
            ["r42-17", None],
            most=2,
        )

    def test_distinct_wildcard_hosts(self) -> None:
        """
        With 10,000 leftmost and rightmost wildcard hosts, a look-up
        evaluates only the wildcards that fit its host.
        """
        routes = [route(f"l{i}", hosts=[f"*.d{i}.com"]) for i in range(5000)]
        routes += [route(f"r{i}", hosts=[f"e{i}.*"]) for i in range(5000)]
        self.check(
            routes,
            [{"host": "a.b.d77.com"}, {"host": "e77.co.uk"}, {"host": "d77.com"}],
            ["l77", "r77", None],
            most=1,
        )

    def test_distinct_regexes(self) -> None:
        """
        Regex paths are filed under their literal start, so 10,000 of them
        cost a look-up no more than the ones that could match.
        """
        routes = [route(f"r{i}", paths=[rf"~/items{i}/\d+$"]) for i in range(10000)]
        routes.append(route("alt", paths=[r"~/x|/y"]))
        self.check(
            routes,
            [{"path": "/items42/7"}, {"path": "/items42/x"}, {"path": "/y"}],
            ["r42", None, "alt"],
            most=3,
        )

    def test_hostless_routes_stay_candidates(self) -> None:
        """
        A request with a host still considers the routes that set no host.
        """
        routes = [route(f"h{i}", hosts=[f"h{i}.test"], paths=["/only"]) for i in range(1000)]
        routes.append(route("any", paths=["/"]))
        self.check(routes, [{"host": "h1.test", "path": "/x"}], ["any"], most=2)

    def test_complete(self) -> None:
        """
        The index never hides a route that matches: every route that
        matches a request on its own is evaluated for that request, and the
        answer is the one an unindexed table gives.
        """
        hosts = [None, ["a.com"], ["A.com:8080"], ["*.a.com"], ["a.*"], ["b.a.com", "*.com"]]
        paths = [None, ["/"], ["/x"], ["/x/y", "/z"], [r"~/x/\d+"], ["~(?i)/X"], ["~/x|/z"],
                 ["~^/x/(?<n>y)"], ["~/xz?"]]
        methods = [None, ["GET"]]
        headers = [None, {"x-v": ["1"]}]
        routes = [route(f"r{n}", hosts=h, paths=p, methods=m, headers=hd)
                  for n, (h, p, m, hd) in enumerate(itertools.product(hosts, paths, methods, headers))]
        routes = [r for r in routes if r["hosts"] or r["paths"] or r["methods"] or r["headers"]]
        counter = _Counter()
        router = build(routes, cache_size=0, on_candidate=counter)
        alone = {r["id"]: build([r], cache_size=0, indexed=False) for r in routes}
        unindexed = build(routes, cache_size=0, indexed=False)
        for host, path, method, hdrs in itertools.product(
            [None, "a.com", "a.com:8080", "b.a.com", "a.org", "c.b.a.com:8080"],
            ["/", "/x", "/x/1", "/x/y/z", "/X", "/z", "/q"],
            ["GET", "POST"],
            [{}, {"x-v": ["1"]}],
        ):
            req = {"host": host, "path": path, "method": method, "headers": hdrs}
            match = request(router, **req)
            evaluated = {r["id"] for r in counter.evaluated}
            counter.take()
            matching = {rid for rid, single in alone.items() if request(single, **req)}
            with self.subTest(request=req):
                self.assertLessEqual(matching, evaluated)
                self.assertEqual(match is not None, bool(matching))
                if match is not None:
                    self.assertIn(match.route["id"], matching)
                self.assertEqual(match, request(unindexed, **req))

    def test_unindexed(self) -> None:
        """
        An unindexed table evaluates every route, and gives the same answer.
        """
        counter = _Counter()
        routes = [route(f"r{i}", hosts=[f"h{i}.test"]) for i in range(50)]
        router = build(routes, cache_size=0, on_candidate=counter, indexed=False)
        match = request(router, host="h7.test")
        assert match is not None
        self.assertEqual(match.route["name"], "r7")
        self.assertEqual(counter.take(), 50)


class CacheTests(SynchronousTestCase):
    """
    Recent look-ups are remembered, keyed on everything that can change the
    answer.
    """

    def test_hit(self) -> None:
        """
        The same request again evaluates no route and gives the same match.
        """
        counter = _Counter()
        router = build([route(paths=["/a"])], on_candidate=counter)
        first = request(router, path="/a/b")
        self.assertEqual(counter.take(), 1)
        self.assertIs(request(router, path="/a/b"), first)
        self.assertEqual(counter.take(), 0)

    def test_miss_is_remembered(self) -> None:
        """
        A request that matched nothing is remembered too.
        """
        counter = _Counter()
        router = build([route(paths=["/a"], methods=["GET"])], on_candidate=counter)
        self.assertIsNone(request(router, method="POST", path="/a"))
        self.assertIsNone(request(router, method="POST", path="/a"))
        self.assertEqual(counter.take(), 1)

    def test_key(self) -> None:
        """
        Method, host, path, scheme and the values of conditioned headers
        each change the answer, so each is part of the key.
        """
        routes = [
            route("get", methods=["GET"]),
            route("host", hosts=["a.com:80"], paths=["/h"]),
            route("v1", headers={"x-v": ["1"]}, paths=["/"]),
            route("v2", headers={"x-v": ["2"]}, paths=["/"]),
            route("deep", paths=["/deep"], headers={"x-v": ["1", "2"]}),
        ]
        router = build(routes)
        cases = [
            ({"method": "GET", "path": "/q"}, "get"),
            ({"method": "PUT", "path": "/q"}, None),
            ({"host": "a.com", "path": "/h", "method": "POST"}, "host"),
            ({"host": "a.com", "path": "/h", "method": "POST", "scheme": "https"}, None),
            ({"host": "a.com:80", "path": "/h", "method": "POST"}, "host"),
            ({"host": "b.com", "path": "/h", "method": "POST"}, None),
            ({"path": "/", "headers": {"x-v": ["1"]}, "method": "POST"}, "v1"),
            ({"path": "/", "headers": {"x-v": ["2"]}, "method": "POST"}, "v2"),
            ({"path": "/", "headers": {"x-v": ["3"]}, "method": "POST"}, None),
            ({"path": "/deep", "headers": {"x-v": ["2"]}, "method": "POST"}, "deep"),
            ({"path": "/", "headers": {"x-v": ["3"]}, "method": "POST"}, None),
        ]
        for _ in range(2):
            for req, expected in cases:
                match = request(router, **req)
                with self.subTest(request=req):
                    self.assertEqual(match.route["name"] if match else None, expected)

    def test_unconditioned_headers_share_entries(self) -> None:
        """
        Headers that no route conditions on do not split the cache.
        """
        counter = _Counter()
        router = build([route(paths=["/"], headers={"x-v": ["1"]})], on_candidate=counter)
        request(router, path="/", headers={"x-v": ["1"], "x-trace": ["a"]})
        request(router, path="/", headers={"x-v": ["1"], "x-trace": ["b"]})
        self.assertEqual(counter.take(), 1)

    def test_bounded(self) -> None:
        """
        The cache keeps at most C{cache_size} look-ups, dropping the least
        recently used.
        """
        counter = _Counter()
        router = build([route(paths=["/"])], cache_size=2, on_candidate=counter)
        for path in ("/a", "/b", "/a", "/c"):
            request(router, path=path)
        self.assertEqual(counter.take(), 3)
        request(router, path="/a")
        self.assertEqual(counter.take(), 0)
        request(router, path="/b")
        self.assertEqual(counter.take(), 1)

    def test_disabled(self) -> None:
        """
        With C{cache_size=0} every look-up evaluates the routes.
        """
        counter = _Counter()
        router = build([route(paths=["/"])], cache_size=0, on_candidate=counter)
        request(router, path="/a")
        request(router, path="/a")
        self.assertEqual(counter.take(), 2)
