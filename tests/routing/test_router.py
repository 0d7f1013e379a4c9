"""
Tests for L{echogate.routing.router} and L{echogate.routing.matching}: which requests a
route matches, the L{Match} that says where a request goes, and
L{split_host}; with the route and service records the other
C{test_router_*} modules use. Ordering, building and the look-up's index
and cache are tested in L{tests.routing.test_router_ordering},
L{tests.routing.test_router_build} and L{tests.routing.test_router_lookup}.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

from twisted.trial.unittest import SynchronousTestCase

from echogate.routing.matching import Match, split_host
from echogate.routing.router import Router

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
                    self.assertEqual(request(router, **req) is not None, expected,
                                     f"row what={what!r} req={req!r} cached={cached!r}")

    def test_no_routes(self) -> None:
        """
        An empty table matches nothing.
        """
        self.assertIsNone(request(build([]), host="a.com", path="/"))


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
                self.assertEqual(split_host(value), expected, f"row value={value!r} expected={expected!r}")
