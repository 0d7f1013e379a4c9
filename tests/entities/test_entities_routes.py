"""
Tests for the route entity of L{echogate.entities.schemas}: Kong's defaults, the
matcher a route needs, and each field's checks (see L{tests.entities.test_entities}).
"""
from __future__ import annotations

from tests.entities.test_entities import ID, NOW, SERVICE_ID, EntityCase, insert


class RouteTests(EntityCase):
    """
    Routes.
    """

    entity = "routes"
    minimal = {"paths": ["/"]}

    def test_defaults(self) -> None:
        """
        Every field is present with Kong's defaults.
        """
        self.assertEqual(insert("routes", {"paths": ["/"]}), {
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": None,
            "protocols": ["http", "https"], "https_redirect_status_code": 426,
            "strip_path": True, "preserve_host": False, "request_buffering": True,
            "response_buffering": True, "tags": None, "service": None, "methods": None,
            "hosts": None, "paths": ["/"], "headers": None, "snis": None, "regex_priority": 0,
            "path_handling": "v0",
        })

    def test_needsMatcher(self) -> None:
        """
        An http route needs at least one of methods, hosts, headers, paths.
        """
        self.assertEqual(self.violation({}), {"@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]})
        self.assertEqual(self.violation({"protocols": ["http"], "paths": []}), {"@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]})

    def test_anyMatcher(self) -> None:
        """
        Any one of methods, hosts, headers and paths is enough.
        """
        for body in [{"methods": ["GET"]}, {"hosts": ["h"]}, {"headers": {"x": ["1"]}},
                     {"paths": ["/"]}]:
            self.assertEqual(insert("routes", body)["protocols"], ["http", "https"], f"row body={body!r}")

    def test_fieldErrors(self) -> None:
        """
        Each field's type and constraint errors carry Kong's messages.
        """
        wildcard_count = "invalid wildcard: must have at most one wildcard"
        wildcard_place = "invalid wildcard: must be placed at leftmost or rightmost label"
        self.assertFieldErrors([
            ("name", "a/b", "invalid value 'a/b': the only accepted ascii characters are"
                            " alphanumerics or ., -, _, and ~"),
            ("protocols", ["tcp"], {"1": "expected one of: grpc, grpcs, http, https"}),
            ("protocols", [], "length must be at least 1"),
            ("protocols", None, "required field missing"),
            ("protocols", "http", "expected a set"),
            ("https_redirect_status_code", 200, "expected one of: 426, 301, 302, 307, 308"),
            ("strip_path", "yes", "expected a boolean"),
            ("preserve_host", 1, "expected a boolean"),
            ("request_buffering", None, "required field missing"),
            ("response_buffering", "false", "expected a boolean"),
            ("service", {"id": "x"}, {"id": "expected a valid UUID"}),
            ("service", "x", "expected a record"),
            ("methods", ["get"], {"1": "invalid value: get"}),
            ("methods", ["GET", "PO ST"], {"2": "invalid value: PO ST"}),
            ("hosts", "h", "expected an array"),
            ("hosts", ["*.a.*"], {"1": wildcard_count}),
            ("hosts", ["a.*.b"], {"1": wildcard_place}),
            ("hosts", ["*a.b"], {"1": wildcard_place}),
            ("hosts", ["a b"], {"1": "invalid hostname: a b"}),
            ("hosts", ["*.a b"], {"1": "invalid hostname: *.a b"}),
            ("hosts", ["h:99999"], {"1": "invalid port number"}),
            ("hosts", ["300.1.1.1"], {"1": "invalid ipv4 address: 300.1.1.1"}),
            ("hosts", ["[::1"], {"1": "invalid ipv6 address: [::1"}),
            ("hosts", ["[::1]x"], {"1": "invalid ipv6 address"}),
            ("paths", ["x"], {"1": "should start with: / (fixed path) or ~/ (regex path)"}),
            ("paths", ["~x"], {"1": "should start with: / (fixed path) or ~/ (regex path)"}),
            ("paths", ["/a//b"], {"1": "must not have empty segments"}),
            ("paths", ["/a%zz"], {"1": "invalid url-encoded value: '%zz'"}),
            ("paths", ["/a/../b"], {"1": "non-normalized path, consider use '/b' instead"}),
            ("paths", ["/%61"], {"1": "non-normalized path, consider use '/a' instead"}),
            ("paths", ["/a%2fb"], {"1": "non-normalized path, consider use '/a%2Fb' instead"}),
            ("paths", ["/a b"], {"1": "non-normalized path, consider use '/a%20b' instead"}),
            ("paths", ["/café"], {"1": "non-normalized path, consider use '/caf%C3%A9' instead"}),
            ("paths", ["/a?b"], {"1": "invalid value: /a?b"}),
            ("paths", ["/", "~/a("], {"2": "invalid regex: '/a(' (missing ), unterminated"
                                            " subpattern at position 2)"}),
            ("headers", ["x"], "expected a map"),
            ("headers", {"Host": ["a"]}, "cannot contain 'host' header, which must be specified"
                                         " in the 'hosts' attribute"),
            ("headers", {"x y": ["a"]}, "bad header name 'x y', allowed characters are A-Z,"
                                        " a-z, 0-9, '_', and '-'"),
            ("headers", {"x": []}, "length must be at least 1"),
            ("headers", {"x": "a"}, "expected an array"),
            ("headers", {"x": [""]}, {"x": {"1": "length must be at least 1"}}),
            ("regex_priority", "1", "expected an integer"),
            ("regex_priority", None, "required field missing"),
            ("path_handling", "v1", "expected one of: v0"),
        ])

    def test_fieldsOk(self) -> None:
        """
        Good values are stored as given, sets without duplicates.
        """
        self.assertFieldsOk([
            ("protocols", ["https", "https"], ["https"]),
            ("https_redirect_status_code", 308, 308),
            ("service", {"id": SERVICE_ID.upper()}, {"id": SERVICE_ID}),
            ("methods", ["GET", "POST", "GET"], ["GET", "POST"]),
            ("hosts", ["*.example.com", "example.*", "a.b:8000", "*.b:80", "10.0.0.1"],
             ["*.example.com", "example.*", "a.b:8000", "*.b:80", "10.0.0.1"]),
            ("paths", ["/", "/a/%2F", "~/users/(?<id>\\d+)$"],
             ["/", "/a/%2F", "~/users/(?<id>\\d+)$"]),
            ("headers", {"X-Foo": ["a", "b"]}, {"X-Foo": ["a", "b"]}),
            ("regex_priority", -3, -3),
        ])
