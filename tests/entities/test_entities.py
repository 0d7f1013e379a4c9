"""
Tests for L{echogate.entities.schemas}, through L{echogate.entities.writes.prepare_insert}:
the entity types, services (with their C{url} shorthand) and consumers.

The ids, the fake plugin, C{insert} and L{EntityCase} at the top are
shared with L{tests.entities.test_entities_routes}, L{tests.entities.test_entities_plugins}
and L{tests.entities.test_writes}.
"""
from __future__ import annotations

import operator
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.entities.schemas import ENTITIES, EntityType
from echogate.entities.writes import prepare_insert
from echogate.errors import SchemaViolation
from echogate.schema import Record
from echogate.schema.containers import Set
from echogate.schema.fields import Integer, String

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
            "tags": None, "client_certificate": None, "tls_verify": None,
            "tls_verify_depth": None, "ca_certificates": None, "enabled": True,
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
            ("protocol", "ftp", "expected one of: grpc, grpcs, http, https"),
            ("protocol", "tcp", "expected one of: grpc, grpcs, http, https"),
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
        self.assertEqual(exc.fields, {"protocol": "expected one of: grpc, grpcs, http, https",
                                      "host": "required field missing",
                                      "path": "should start with: /"})
        self.assertEqual(exc.message, "3 schema violations (protocol: expected one of: grpc, grpcs, http,"
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
                         {"protocol": "expected one of: grpc, grpcs, http, https"})
        self.assertEqual(self.violation({"url": "http://a b/"}), {"host": "invalid value: a b"})
        self.assertEqual(self.violation({"url": "http://h/a%zz"}),
                         {"path": "invalid url-encoded value: '%zz'"})

    def test_otherErrorsKept(self) -> None:
        """
        A bad url does not hide the other fields' errors.
        """
        self.assertEqual(self.violation({"url": "x", "retries": -1}), {
            "retries": "value should be between 0 and 32767", "url": "missing scheme in url"})


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
            {"services": ("services", ("name",), ("name",), ("client_certificate",)),
             "routes": ("routes", ("name",), ("name",), ("service",)),
             "consumers": ("consumers", ("username", "custom_id"), ("username", "custom_id"), ()),
             "plugins": ("plugins", (), ("instance_name",), ("service", "route", "consumer")),
             "keyauth_credentials": ("keyauth_credentials", ("key",), ("key",), ("consumer",)),
             "basicauth_credentials": ("basicauth_credentials", ("username",), ("username",), ("consumer",)),
             "jwt_secrets": ("jwt_secrets", ("key",), ("key",), ("consumer",)),
             "acls": ("acls", (), (), ("consumer",)),
             "upstreams": ("upstreams", ("name",), ("name",), ()),
             "targets": ("targets", (), (), ("upstream",)),
             "certificates": ("certificates", (), (), ()),
             "snis": ("snis", ("name",), ("name",), ("certificate",)),
             "ca_certificates": ("ca_certificates", (), ("cert_digest",), ())})
        for t in ENTITIES.values():
            self.assertIsInstance(t, EntityType, f"row t={t!r}")
            for name in t.unique + t.foreign + t.endpoint_keys:
                self.assertIn(name, t.schema.fields, f"row t={t!r} name={name!r}")

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
            "description": "The upstream server port (443 by default for https and grpcs)."}})
