"""
Tests for L{echogate.entities}, L{echogate.hosts} and L{echogate.writes}.
"""
from __future__ import annotations

import operator
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.containers import Set
from echogate.entities import ENTITIES, EntityType, plugin_schema
from echogate.errors import SchemaViolation
from echogate.fields import Integer, String
from echogate.forms import decode_form
from echogate.hosts import parse_host
from echogate.schema import Record
from echogate.writes import form_schema, prepare_insert, prepare_replace, prepare_update

ID = "0f6b0e5c-3d2c-4c1a-9a55-2f7b9f0d8c11"
OTHER_ID = "6d3a3f2e-7c1b-4e5a-8f9d-0a1b2c3d4e5f"
SERVICE_ID = "1c9a4a8e-5d6f-4b7a-9c8d-7e6f5a4b3c2d"
NOW = 1700000000


@attrs.frozen
class FakePlugin:
    """
    The parts of a gateway plugin that entities use.
    """

    name: str
    config_schema: Record
    priority: int = 1
    version: str = "1.0.0"


ECHO = FakePlugin("header-echo", Record({
    "requestHeader": String(default="X-Request-Echo", required=True),
    "limit": Integer(between=(1, 1000), default=10),
    "methods": Set(String(one_of=("GET", "POST"))),
    "redis": Record({"host": String(), "port": Integer(between=(0, 65535), default=6379)}),
}))
PLUGINS = {"header-echo": ECHO}


def insert(entity: str, body: Any, **kw: Any) -> dict[str, Any]:
    return prepare_insert(entity, body, plugins=PLUGINS, now=NOW, new_id=ID, **kw)


class EntityCase(SynchronousTestCase):
    """
    Helpers for checking schema violations.
    """

    entity = ""
    minimal: dict[str, Any] = {}

    def violation(self, body: Any, entity: str | None = None) -> dict[str, Any]:
        exc = self.assertRaises(SchemaViolation, insert, entity or self.entity, body)
        return exc.fields

    def assertFieldErrors(self, table: list[tuple[str, Any, Any]]) -> None:
        """
        Setting each C{field} to C{value} on the minimal body gives
        C{message} for that field, and only that.
        """
        for field, value, message in table:
            body = {**self.minimal, field: value}
            self.assertEqual(self.violation(body), {field: message}, (field, value))

    def assertFieldsOk(self, table: list[tuple[str, Any, Any]]) -> None:
        """
        Setting each C{field} to C{value} is stored as C{stored}.
        """
        for field, value, stored in table:
            self.assertEqual(insert(self.entity, {**self.minimal, field: value})[field], stored,
                             (field, value))


class ServiceTests(EntityCase):
    """
    Services.
    """

    entity = "services"
    minimal = {"host": "example.com"}

    def test_defaults(self) -> None:
        """
        Every field is present with Kong's defaults.
        """
        self.assertEqual(insert("services", {"host": "example.com"}), {
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": None, "retries": 5,
            "protocol": "http", "host": "example.com", "port": 80, "path": None,
            "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
            "tags": None, "enabled": True,
        })

    def test_httpsPort(self) -> None:
        """
        The port defaults to 443 for https, unless given.
        """
        self.assertEqual(insert("services", {"host": "h", "protocol": "https"})["port"], 443)
        self.assertEqual(
            insert("services", {"host": "h", "protocol": "https", "port": 8443})["port"], 8443)

    def test_fieldErrors(self) -> None:
        """
        Each field's type and constraint errors carry Kong's messages.
        """
        self.assertFieldErrors([
            ("id", "x", "expected a valid UUID"),
            ("id", 5, "expected a string"),
            ("created_at", -1, "expected a valid timestamp"),
            ("created_at", "x", "expected an integer"),
            ("name", 5, "expected a string"),
            ("name", "a b", "invalid value 'a b': the only accepted ascii characters are"
                            " alphanumerics or ., -, _, and ~"),
            ("name", "a\ud800", "invalid utf-8 character sequence detected at position 2"),
            ("retries", -1, "value should be between 0 and 32767"),
            ("retries", "5", "expected an integer"),
            ("retries", None, "required field missing"),
            ("protocol", "ftp", "expected one of: http, https"),
            ("protocol", "grpc", "expected one of: http, https"),
            ("host", None, "required field missing"),
            ("host", "", "length must be at least 1"),
            ("host", 5, "expected a string"),
            ("host", "a b", "invalid value: a b"),
            ("host", "a-.b", "invalid value: a-.b"),
            ("host", "a..b", "invalid value: a..b"),
            ("host", "999.1.1.1", "invalid value: 999.1.1.1"),
            ("host", "1::2::3", "invalid value: 1::2::3"),
            ("host", "example.com:80", "must not have a port"),
            ("host", "example.com:99999", "must not have a port"),
            ("host", "1.2.3.4:80", "must not have a port"),
            ("host", "[::1]:80", "must not have a port"),
            ("port", 65536, "value should be between 0 and 65535"),
            ("port", -1, "value should be between 0 and 65535"),
            ("port", "80", "expected an integer"),
            ("port", True, "expected an integer"),
            ("port", None, "required field missing"),
            ("path", "x", "should start with: /"),
            ("path", "/a//b", "must not have empty segments"),
            ("path", "/a b", "invalid path: '/a b' (characters outside of the reserved list"
                             " of RFC 3986 found)"),
            ("path", "/a?b", "invalid path: '/a?b' (characters outside of the reserved list"
                             " of RFC 3986 found)"),
            ("path", "/a%zz", "invalid url-encoded value: '%zz'"),
            ("path", "/a%2", "invalid url-encoded value: '%2'"),
            ("connect_timeout", 0, "value should be between 1 and 2147483646"),
            ("write_timeout", 2**31 - 1, "value should be between 1 and 2147483646"),
            ("read_timeout", 1.5, "expected an integer"),
            ("tags", "a", "expected a set"),
            ("tags", ["a,b"], {"1": "invalid tag 'a,b': expected printable ascii (except `,`"
                                     " and `/`) or valid utf-8 sequences"}),
            ("tags", ["ok", "a/b"], {"2": "invalid tag 'a/b': expected printable ascii (except"
                                          " `,` and `/`) or valid utf-8 sequences"}),
            ("tags", [""], {"1": "length must be at least 1"}),
            ("enabled", "true", "expected a boolean"),
            ("x", 1, "unknown field"),
        ])

    def test_fieldsOk(self) -> None:
        """
        Good values are stored as given (ids lower-cased).
        """
        self.assertFieldsOk([
            ("id", OTHER_ID.upper(), OTHER_ID),
            ("created_at", 5, 5),
            ("name", "my-service_1.~", "my-service_1.~"),
            ("name", "孔", "孔"),
            ("host", "Example.COM", "Example.COM"),
            ("host", "example.com.", "example.com."),
            ("host", "10.0.0.1", "10.0.0.1"),
            ("host", "::1", "::1"),
            ("host", "fe80::1:2", "fe80::1:2"),
            ("port", 0, 0),
            ("path", "/", "/"),
            ("path", "/a/%2F;x=1", "/a/%2F;x=1"),
            ("tags", ["a", "b c", "é", "a"], ["a", "b c", "é"]),
            ("tags", None, None),
            ("enabled", False, False),
        ])

    def test_everyError(self) -> None:
        """
        Every bad field is listed at once.
        """
        exc = self.assertRaises(SchemaViolation, insert, "services",
                                {"protocol": "ftp", "path": "x"})
        self.assertEqual(exc.fields, {"protocol": "expected one of: http, https",
                                      "host": "required field missing",
                                      "path": "should start with: /"})
        self.assertEqual(exc.message, "3 schema violations (protocol: expected one of: http,"
                         " https; host: required field missing; path: should start with: /)")

    def test_timestamps(self) -> None:
        """
        C{updated_at} is always now; a null C{id} or C{created_at} is
        generated.
        """
        record = insert("services", {"host": "h", "id": None, "created_at": None,
                                     "updated_at": 3})
        self.assertEqual((record["id"], record["created_at"], record["updated_at"]),
                         (ID, NOW, NOW))

    def test_notARecord(self) -> None:
        """
        A body that is not a dict is a schema violation.
        """
        self.assertEqual(self.violation(["host"]), {"@entity": ["expected a record"]})


class ServiceURLTests(EntityCase):
    """
    The C{url} shorthand of services.
    """

    entity = "services"

    def fields(self, url: str) -> tuple[Any, ...]:
        record = insert("services", {"url": url})
        self.assertNotIn("url", record)
        return record["protocol"], record["host"], record["port"], record["path"]

    def test_expands(self) -> None:
        """
        C{url} fills protocol, host, port and path.
        """
        for url, fields in [
            ("http://service.test/", ("http", "service.test", 80, "/")),
            ("http://service.test", ("http", "service.test", 80, None)),
            ("https://service.test/", ("https", "service.test", 443, "/")),
            ("https://service.test:80/a/b", ("https", "service.test", 80, "/a/b")),
            ("HTTP://Service.Test:8080", ("http", "Service.Test", 8080, None)),
            ("http://10.0.0.1:81/x", ("http", "10.0.0.1", 81, "/x")),
            ("http://[::1]:81/x", ("http", "::1", 81, "/x")),
        ]:
            self.assertEqual(self.fields(url), fields, url)

    def test_otherFields(self) -> None:
        """
        Fields other than those C{url} stands for may be given with it.
        """
        record = insert("services", {"url": "http://h", "name": "s", "retries": 1})
        self.assertEqual((record["host"], record["name"], record["retries"]), ("h", "s", 1))

    def test_null(self) -> None:
        """
        A null C{url} is ignored.
        """
        self.assertEqual(insert("services", {"url": None, "host": "h"})["host"], "h")

    def test_conflicts(self) -> None:
        """
        C{url} with any of protocol, host, port or path is an error.
        """
        self.assertEqual(self.violation({"url": "http://h", "host": "h", "port": 80}),
                         {"url": "cannot be set together with 'host', 'port'"})
        self.assertEqual(self.violation({"url": "http://h", "protocol": "http", "path": "/"}),
                         {"url": "cannot be set together with 'protocol', 'path'"})

    def test_bad(self) -> None:
        """
        A bad url is an error of C{url} alone.
        """
        for url, message in [
            ("invalid url", "missing scheme in url"),
            ("", "missing scheme in url"),
            ("http://", "missing host in url"),
            ("http:///path", "missing host in url"),
            ("http://h:abc/", "could not parse url"),
            ("http://h:99999/", "could not parse url"),
            ("http://[::1/", "could not parse url"),
            ("http://u:p@h/", "must not have credentials"),
            ("http://h/?q=1", "must not have a query or fragment"),
            ("http://h/#f", "must not have a query or fragment"),
            (5, "expected a string"),
        ]:
            self.assertEqual(self.violation({"url": url}), {"url": message}, url)

    def test_expandedChecked(self) -> None:
        """
        What C{url} expands to is validated as the fields themselves.
        """
        self.assertEqual(self.violation({"url": "ftp://h/"}),
                         {"protocol": "expected one of: http, https"})
        self.assertEqual(self.violation({"url": "http://a b/"}), {"host": "invalid value: a b"})
        self.assertEqual(self.violation({"url": "http://h/a%zz"}),
                         {"path": "invalid url-encoded value: '%zz'"})

    def test_otherErrorsKept(self) -> None:
        """
        A bad url does not hide the other fields' errors.
        """
        self.assertEqual(self.violation({"url": "x", "retries": -1}), {
            "retries": "value should be between 0 and 32767", "url": "missing scheme in url"})


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
            "hosts": None, "paths": ["/"], "headers": None, "regex_priority": 0,
            "path_handling": "v0",
        })

    def test_needsMatcher(self) -> None:
        """
        An http route needs at least one of methods, hosts, headers, paths.
        """
        self.assertEqual(self.violation({}), {"@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'https'"]})
        self.assertEqual(self.violation({"protocols": ["http"], "paths": []}), {"@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]})

    def test_anyMatcher(self) -> None:
        """
        Any one of methods, hosts, headers and paths is enough.
        """
        for body in [{"methods": ["GET"]}, {"hosts": ["h"]}, {"headers": {"x": ["1"]}},
                     {"paths": ["/"]}]:
            self.assertEqual(insert("routes", body)["protocols"], ["http", "https"])

    def test_fieldErrors(self) -> None:
        """
        Each field's type and constraint errors carry Kong's messages.
        """
        wildcard_count = "invalid wildcard: must have at most one wildcard"
        wildcard_place = "invalid wildcard: must be placed at leftmost or rightmost label"
        self.assertFieldErrors([
            ("name", "a/b", "invalid value 'a/b': the only accepted ascii characters are"
                            " alphanumerics or ., -, _, and ~"),
            ("protocols", ["tcp"], {"1": "expected one of: http, https"}),
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


class ConsumerTests(EntityCase):
    """
    Consumers.
    """

    entity = "consumers"
    minimal = {"username": "alice"}

    def test_defaults(self) -> None:
        """
        Every field is present.
        """
        self.assertEqual(insert("consumers", {"custom_id": "7"}), {
            "id": ID, "created_at": NOW, "updated_at": NOW, "username": None,
            "custom_id": "7", "tags": None})

    def test_atLeastOne(self) -> None:
        """
        A consumer needs a username or a custom_id: Kong's message.
        """
        message = {"@entity": [
            "at least one of these fields must be non-empty: 'custom_id', 'username'"]}
        self.assertEqual(self.violation({}), message)
        self.assertEqual(self.violation({"username": None, "tags": ["a"]}), message)

    def test_fieldErrors(self) -> None:
        """
        Type errors carry Kong's messages.
        """
        self.assertFieldErrors([
            ("username", 5, "expected a string"),
            ("username", "", "length must be at least 1"),
            ("custom_id", ["x"], "expected a string"),
            ("tags", [5], {"1": "expected a string"}),
            ("name", "x", "unknown field"),
        ])


class PluginTests(EntityCase):
    """
    Plugins.
    """

    entity = "plugins"
    minimal = {"name": "header-echo"}

    def test_defaults(self) -> None:
        """
        Every field is present; C{config} is filled from the plugin's
        schema.
        """
        self.assertEqual(insert("plugins", {"name": "header-echo"}), {
            "id": ID, "name": "header-echo", "instance_name": None, "created_at": NOW,
            "updated_at": NOW, "route": None, "service": None, "consumer": None,
            "config": {"requestHeader": "X-Request-Echo", "limit": 10, "methods": None,
                       "redis": {"host": None, "port": 6379}},
            "protocols": ["grpc", "grpcs", "http", "https"], "enabled": True, "tags": None,
        })

    def test_config(self) -> None:
        """
        The given config is validated and completed.
        """
        record = insert("plugins", {"name": "header-echo", "config": {
            "limit": 5, "redis": {"host": "r"}}})
        self.assertEqual(record["config"], {"requestHeader": "X-Request-Echo", "limit": 5,
                                            "methods": None, "redis": {"host": "r", "port": 6379}})

    def test_configErrors(self) -> None:
        """
        Config errors nest under C{config}, all at once.
        """
        exc = self.assertRaises(SchemaViolation, insert, "plugins", {
            "name": "header-echo",
            "config": {"limit": 0, "methods": ["PUT"], "redis": {"port": "x"}, "nope": 1},
            "enabled": "x",
        })
        self.assertEqual(exc.fields, {
            "config": {"limit": "value should be between 1 and 1000",
                       "methods": {"1": "expected one of: GET, POST"},
                       "redis": {"port": "expected an integer"},
                       "nope": "unknown field"},
            "enabled": "expected a boolean",
        })
        self.assertIn("config.redis.port: expected an integer", exc.message)

    def test_notEnabled(self) -> None:
        """
        A name that is not an enabled plugin is Kong's error on C{name};
        other fields are still checked.
        """
        self.assertEqual(self.violation({"name": "nope", "config": {"x": 1}, "enabled": 1}), {
            "name": "plugin 'nope' not enabled; add it to the 'plugins' configuration property",
            "enabled": "expected a boolean",
        })

    def test_fieldErrors(self) -> None:
        """
        Each field's type and constraint errors carry Kong's messages.
        """
        self.assertFieldErrors([
            ("name", None, "required field missing"),
            ("name", 5, "expected a string"),
            ("instance_name", "a b", "invalid value 'a b': the only accepted ascii characters"
                                     " are alphanumerics or ., -, _, and ~"),
            ("service", {"id": "x"}, {"id": "expected a valid UUID"}),
            ("route", {}, {"id": "missing primary key"}),
            ("consumer", 5, "expected a record"),
            ("config", None, "required field missing"),
            ("config", "x", "expected a record"),
            ("protocols", ["tcp"], {"1": "expected one of: grpc, grpcs, http, https"}),
            ("protocols", None, "required field missing"),
            ("enabled", None, "required field missing"),
            ("tags", "a", "expected a set"),
        ])

    def test_missingName(self) -> None:
        """
        Without a name, the config cannot be checked; the name is reported.
        """
        self.assertEqual(self.violation({"config": {"x": 1}}), {"name": "required field missing"})

    def test_scopes(self) -> None:
        """
        Foreign keys are stored as C{{"id": ...}}.
        """
        record = insert("plugins", {"name": "header-echo", "service": {"id": SERVICE_ID},
                                    "route": None, "consumer": {"id": OTHER_ID}})
        self.assertEqual((record["service"], record["route"], record["consumer"]),
                         ({"id": SERVICE_ID}, None, {"id": OTHER_ID}))

    def test_pluginSchema(self) -> None:
        """
        L{plugin_schema} is the plugin record with the plugin's config,
        required.
        """
        schema = plugin_schema(ECHO)
        self.assertEqual(schema.fields["config"].fields, ECHO.config_schema.fields)
        self.assertTrue(schema.fields["config"].required)
        self.assertEqual(list(schema.fields), list(ENTITIES["plugins"].schema.fields))

    def test_nullableConfigSchema(self) -> None:
        """
        A plugin config schema with C{default=None} still gets its
        defaults when absent.
        """
        plugin = FakePlugin("p", Record({"a": Integer(default=1)}, default=None))
        record = prepare_insert("plugins", {"name": "p"}, plugins={"p": plugin}, now=NOW,
                                new_id=ID)
        self.assertEqual(record["config"], {"a": 1})


def service(**fields: Any) -> dict[str, Any]:
    return insert("services", {"host": "h", **fields})


class ReplaceTests(SynchronousTestCase):
    """
    L{prepare_replace}: PUT.
    """

    def replace(self, body: Any, existing: Any, entity: str = "services") -> dict[str, Any]:
        return prepare_replace(entity, body, existing=existing, plugins=PLUGINS, now=NOW + 10,
                               new_id=OTHER_ID)

    def test_fullReplacement(self) -> None:
        """
        Absent fields take their defaults, not the existing values; id and
        created_at are kept; updated_at is now.
        """
        existing = service(name="s", retries=1, path="/p")
        record = self.replace({"host": "other"}, existing)
        self.assertEqual(record, {**insert("services", {"host": "other"}),
                                  "updated_at": NOW + 10})

    def test_sameId(self) -> None:
        """
        The body may repeat the id and created_at (in any case).
        """
        existing = service()
        record = self.replace({"host": "h", "id": ID.upper(), "created_at": NOW}, existing)
        self.assertEqual(record["id"], ID)

    def test_changedId(self) -> None:
        """
        Changing id or created_at is refused, along with other errors.
        """
        exc = self.assertRaises(SchemaViolation, self.replace,
                                {"id": OTHER_ID, "created_at": 1}, service())
        self.assertEqual(exc.fields, {"host": "required field missing",
                                      "id": "immutable field cannot be updated",
                                      "created_at": "immutable field cannot be updated"})

    def test_noExisting(self) -> None:
        """
        Without an existing record, PUT inserts with C{new_id}.
        """
        record = self.replace({"host": "h"}, None)
        self.assertEqual((record["id"], record["created_at"]), (OTHER_ID, NOW + 10))

    def test_noExistingWithId(self) -> None:
        """
        Without an existing record, an id in the body is used.
        """
        self.assertEqual(self.replace({"host": "h", "id": SERVICE_ID}, None)["id"], SERVICE_ID)

    def test_url(self) -> None:
        """
        The url shorthand works on PUT, and the https port default.
        """
        record = self.replace({"url": "https://x/y"}, service())
        self.assertEqual((record["protocol"], record["host"], record["port"], record["path"]),
                         ("https", "x", 443, "/y"))

    def test_plugin(self) -> None:
        """
        A replaced plugin's config is completed from defaults.
        """
        existing = insert("plugins", {"name": "header-echo", "config": {"limit": 3}})
        record = self.replace({"name": "header-echo", "config": {"redis": {"port": 1}}},
                              existing, "plugins")
        self.assertEqual(record["config"]["limit"], 10)
        self.assertEqual(record["config"]["redis"], {"host": None, "port": 1})


class UpdateTests(SynchronousTestCase):
    """
    L{prepare_update}: PATCH.
    """

    def update(self, existing: Any, patch: Any, entity: str = "services") -> dict[str, Any]:
        return prepare_update(entity, existing, patch, plugins=PLUGINS, now=NOW + 10)

    def test_patch(self) -> None:
        """
        Given fields replace existing ones; the rest stays; updated_at is
        now.
        """
        existing = service(name="s", retries=1)
        record = self.update(existing, {"retries": 2, "path": "/p"})
        self.assertEqual(record, {**existing, "retries": 2, "path": "/p", "updated_at": NOW + 10})

    def test_null(self) -> None:
        """
        Null clears an optional field.
        """
        self.assertIsNone(self.update(service(name="s"), {"name": None})["name"])

    def test_errors(self) -> None:
        """
        Bad fields in the patch are reported, all at once.
        """
        exc = self.assertRaises(SchemaViolation, self.update, service(),
                                {"port": "x", "host": None, "x": 1})
        self.assertEqual(exc.fields, {"host": "required field missing",
                                      "port": "expected an integer", "x": "unknown field"})

    def test_immutable(self) -> None:
        """
        id and created_at cannot be changed; repeating them is fine.
        """
        existing = service()
        self.assertEqual(self.update(existing, {"id": ID, "created_at": NOW})["id"], ID)
        exc = self.assertRaises(SchemaViolation, self.update, existing, {"id": OTHER_ID})
        self.assertEqual(exc.fields, {"id": "immutable field cannot be updated"})

    def test_url(self) -> None:
        """
        C{url} replaces protocol, host, port and path, as in Kong.
        """
        existing = service(protocol="https", path="/old")
        for url, fields in [
            ("http://example.test:443", ("http", "example.test", 443, None)),
            ("https://example2.test:80/", ("https", "example2.test", 80, "/")),
            ("http://example2.test", ("http", "example2.test", 80, None)),
        ]:
            record = self.update(existing, {"url": url})
            self.assertEqual((record["protocol"], record["host"], record["port"],
                              record["path"]), fields)

    def test_urlConflict(self) -> None:
        """
        C{url} with a field it stands for is refused on PATCH too.
        """
        exc = self.assertRaises(SchemaViolation, self.update, service(),
                                {"url": "http://x", "path": "/"})
        self.assertEqual(exc.fields, {"url": "cannot be set together with 'path'"})

    def test_entityChecks(self) -> None:
        """
        Entity checks apply to the patched record.
        """
        route = insert("routes", {"paths": ["/"]})
        exc = self.assertRaises(SchemaViolation, self.update, route, {"paths": None}, "routes")
        self.assertEqual(list(exc.fields), ["@entity"])
        record = self.update(route, {"paths": None, "hosts": ["h"]}, "routes")
        self.assertEqual((record["paths"], record["hosts"]), (None, ["h"]))

    def test_arraysReplaced(self) -> None:
        """
        Arrays and maps are replaced whole.
        """
        route = insert("routes", {"paths": ["/a"], "headers": {"x": ["1"]}})
        record = self.update(route, {"paths": ["/b"], "headers": {"y": ["2"]}}, "routes")
        self.assertEqual((record["paths"], record["headers"]), (["/b"], {"y": ["2"]}))

    def test_pluginConfigMerges(self) -> None:
        """
        A plugin's config merges field by field, nested records too.
        """
        existing = insert("plugins", {"name": "header-echo", "config": {
            "limit": 3, "redis": {"host": "r"}}})
        record = self.update(existing, {"config": {"redis": {"port": 1}}}, "plugins")
        self.assertEqual(record["config"], {"requestHeader": "X-Request-Echo", "limit": 3,
                                            "methods": None, "redis": {"host": "r", "port": 1}})

    def test_pluginConfigErrors(self) -> None:
        """
        A bad config patch is reported under C{config}.
        """
        existing = insert("plugins", {"name": "header-echo"})
        exc = self.assertRaises(SchemaViolation, self.update, existing,
                                {"config": {"limit": 0}}, "plugins")
        self.assertEqual(exc.fields, {"config": {"limit": "value should be between 1 and 1000"}})

    def test_pluginRenamed(self) -> None:
        """
        A plugin renamed to one that is not enabled is refused.
        """
        existing = insert("plugins", {"name": "header-echo"})
        exc = self.assertRaises(SchemaViolation, self.update, existing, {"name": "x"}, "plugins")
        self.assertEqual(exc.fields, {"name": "plugin 'x' not enabled; add it to the 'plugins'"
                                              " configuration property"})

    def test_notARecord(self) -> None:
        """
        A patch that is not a dict is a schema violation.
        """
        exc = self.assertRaises(SchemaViolation, self.update, service(), "x")
        self.assertEqual(exc.fields, {"@entity": ["expected a record"]})


class FormSchemaTests(SynchronousTestCase):
    """
    L{form_schema}, with L{decode_form}.
    """

    def test_service(self) -> None:
        """
        A service form may use C{url}; numbers and booleans are typed.
        """
        pairs = [("url", "http://h:81/p"), ("retries", "2"), ("enabled", "false")]
        body = decode_form(pairs, form_schema("services", pairs, PLUGINS))
        record = insert("services", body)
        self.assertEqual((record["port"], record["retries"], record["enabled"]), (81, 2, False))

    def test_route(self) -> None:
        """
        A route form types arrays, maps and foreign keys.
        """
        pairs = [("paths[]", "/a"), ("methods", "GET"), ("headers.x-foo", "bar"),
                 ("service.id", SERVICE_ID), ("strip_path", "false")]
        record = insert("routes", decode_form(pairs, form_schema("routes", pairs, PLUGINS)))
        self.assertEqual((record["paths"], record["methods"], record["headers"],
                          record["service"], record["strip_path"]),
                         (["/a"], ["GET"], {"x-foo": ["bar"]}, {"id": SERVICE_ID}, False))

    def test_pluginConfig(self) -> None:
        """
        A plugin form's config is typed by the named plugin's schema.
        """
        pairs = [("name", "header-echo"), ("config.limit", "5"), ("config.methods[]", "GET"),
                 ("config.redis.port", "1")]
        schema = form_schema("plugins", pairs, PLUGINS)
        self.assertEqual(decode_form(pairs, schema)["config"],
                         {"limit": 5, "methods": ["GET"], "redis": {"port": 1}})
        self.assertEqual(form_schema("plugins", {"name": "header-echo"}, PLUGINS), schema)

    def test_pluginPatch(self) -> None:
        """
        For a PATCH without a name, the existing plugin's name is used.
        """
        pairs = [("config.limit", "5")]
        schema = form_schema("plugins", pairs, PLUGINS, existing={"name": "header-echo"})
        self.assertEqual(decode_form(pairs, schema), {"config": {"limit": 5}})

    def test_unknownPlugin(self) -> None:
        """
        An unknown plugin's config stays untyped.
        """
        pairs = [("name", "nope"), ("config.limit", "5")]
        self.assertEqual(decode_form(pairs, form_schema("plugins", pairs, PLUGINS)),
                         {"name": "nope", "config": {"limit": "5"}})

    def test_others(self) -> None:
        """
        Routes and consumers use their entity schema.
        """
        self.assertIs(form_schema("consumers", [], PLUGINS), ENTITIES["consumers"].schema)

    def test_unknownEntity(self) -> None:
        """
        An unknown entity name is a programming error.
        """
        self.assertRaises(ValueError, form_schema, "nope", [], PLUGINS)
        self.assertRaises(ValueError, insert, "nope", {})
        self.assertRaises(ValueError, prepare_update, "nope", {}, {}, plugins={}, now=NOW)


class EntitiesTests(SynchronousTestCase):
    """
    L{ENTITIES}.
    """

    def test_types(self) -> None:
        """
        Each entity type names its keys, unique and foreign fields.
        """
        self.assertEqual(
            {name: (t.name, t.endpoint_keys, t.unique, t.foreign) for name, t in ENTITIES.items()},
            {"services": ("services", ("name",), ("name",), ()),
             "routes": ("routes", ("name",), ("name",), ("service",)),
             "consumers": ("consumers", ("username", "custom_id"), ("username", "custom_id"), ()),
             "plugins": ("plugins", (), ("instance_name",), ("service", "route", "consumer")),
             "keyauth_credentials": ("keyauth_credentials", ("key",), ("key",), ("consumer",)),
             "basicauth_credentials": ("basicauth_credentials", ("username",), ("username",), ("consumer",)),
             "jwt_secrets": ("jwt_secrets", ("key",), ("key",), ("consumer",)),
             "acls": ("acls", (), (), ("consumer",))})
        for t in ENTITIES.values():
            self.assertIsInstance(t, EntityType)
            for name in t.unique + t.foreign + t.endpoint_keys:
                self.assertIn(name, t.schema.fields)

    def test_readOnly(self) -> None:
        """
        The mapping cannot be changed.
        """
        self.assertRaises(TypeError, operator.setitem, ENTITIES, "x", None)

    def test_describe(self) -> None:
        """
        Entity schemas describe themselves for C{/schemas}.
        """
        described = ENTITIES["services"].schema.describe()["fields"]
        self.assertEqual(described[7], {"port": {
            "type": "integer", "required": True, "default": 80, "between": [0, 65535],
            "description": "The upstream server port (443 by default for https)."}})


class ParseHostTests(SynchronousTestCase):
    """
    L{parse_host}.
    """

    def test_valid(self) -> None:
        """
        Names, IPv4 and IPv6 addresses, with or without ports.
        """
        for address, parsed in [
            ("example.com", ("name", "example.com", None)),
            ("example.com:8000", ("name", "example.com", 8000)),
            ("a_b-c.d.", ("name", "a_b-c.d.", None)),
            ("10.0.0.1", ("ipv4", "10.0.0.1", None)),
            ("10.0.0.1:80", ("ipv4", "10.0.0.1", 80)),
            ("::1", ("ipv6", "::1", None)),
            ("[::1]:80", ("ipv6", "::1", 80)),
            ("[::1]", ("ipv6", "::1", None)),
            ("1:2:3:4:5:6:7:8", ("ipv6", "1:2:3:4:5:6:7:8", None)),
        ]:
            self.assertEqual(parse_host(address), parsed, address)

    def test_invalid(self) -> None:
        """
        Kong's messages for what is not a host.
        """
        for address, message in [
            ("a b", "invalid hostname: a b"),
            ("a-.b", "invalid hostname: a-.b"),
            ("a..b", "invalid hostname: a..b"),
            ("a:b", "invalid hostname: a:b"),
            ("h:65536", "invalid port number"),
            ("1.2.3.256", "invalid ipv4 address: 1.2.3.256"),
            ("1.2.3", "invalid ipv4 address: 1.2.3"),
            ("1.2.3.4:", "invalid ipv4 address: 1.2.3.4:"),
            ("1.2.3.4:65536", "invalid port number"),
            ("1::2::3", "invalid ipv6 address: 1::2::3"),
            ("1:2:3:4:5:6:7:8:9", "invalid ipv6 address: 1:2:3:4:5:6:7:8:9"),
            ("g::1", "invalid ipv6 address: g::1"),
            ("[::1]:x", "invalid ipv6 address"),
            ("[::1]:65536", "invalid port number"),
        ]:
            exc = self.assertRaises(ValueError, parse_host, address)
            self.assertEqual(str(exc), message, address)
