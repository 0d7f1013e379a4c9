"""
Tests for L{echogate.admin.forms}.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.admin.forms import decode_form, parse_name
from echogate.errors import SchemaViolation
from echogate.schema import Record
from echogate.schema.containers import Array, Map, Set
from echogate.schema.fields import Boolean, Foreign, Integer, Number, String

UUID = "0f6b0e5c-3d2c-4c1a-9a55-2f7b9f0d8c11"

SCHEMA = Record({
    "name": String(),
    "port": Integer(),
    "ratio": Number(),
    "strip_path": Boolean(),
    "hosts": Array(String()),
    "methods": Set(String()),
    "headers": Map(String(), Array(String())),
    "service": Foreign("services"),
    "sources": Array(Record({"ip": String(), "port": Integer()})),
    "config": Record({
        "requestHeader": String(),
        "limit": Integer(),
        "methods": Set(String()),
        "redis": Record({"port": Integer()}),
    }),
})

# (form pairs, decoded body)
DECODED: list[tuple[list[tuple[str, str]], dict[str, Any]]] = [
    ([("name", "a")], {"name": "a"}),
    ([("port", "80")], {"port": 80}),
    ([("port", "-1")], {"port": -1}),
    ([("port", "80.0")], {"port": 80.0}),
    ([("port", "abc")], {"port": "abc"}),
    ([("port", "1_000")], {"port": "1_000"}),
    ([("port", "1"), ("port", "2")], {"port": ["1", "2"]}),
    ([("ratio", "1.5")], {"ratio": 1.5}),
    ([("ratio", "2")], {"ratio": 2}),
    ([("ratio", "1e3")], {"ratio": 1000.0}),
    ([("ratio", "nan")], {"ratio": "nan"}),
    ([("strip_path", "true")], {"strip_path": True}),
    ([("strip_path", "false")], {"strip_path": False}),
    ([("strip_path", "1")], {"strip_path": "1"}),
    ([("strip_path", "yes")], {"strip_path": "yes"}),
    ([("name", "")], {"name": None}),
    ([("port", "")], {"port": None}),
    ([("hosts", "")], {"hosts": None}),
    ([("hosts", "a")], {"hosts": ["a"]}),
    ([("hosts", "a"), ("hosts", "b")], {"hosts": ["a", "b"]}),
    ([("hosts[]", "a"), ("hosts[]", "b")], {"hosts": ["a", "b"]}),
    ([("hosts[2]", "b"), ("hosts[1]", "a")], {"hosts": ["a", "b"]}),
    ([("hosts%5B%5D", "a")], {"hosts%5B%5D": "a"}),
    ([("hosts[]", "")], {"hosts": [None]}),
    ([("methods[]", "GET")], {"methods": ["GET"]}),
    ([("headers.x-foo", "bar")], {"headers": {"x-foo": ["bar"]}}),
    ([("headers.x-foo", "a"), ("headers.x-foo", "b"), ("headers.x-bar", "c")],
     {"headers": {"x-foo": ["a", "b"], "x-bar": ["c"]}}),
    ([("headers[x.y]", "a")], {"headers": {"x.y": ["a"]}}),
    ([("headers.x-foo[]", "a")], {"headers": {"x-foo": ["a"]}}),
    ([("service.id", UUID)], {"service": {"id": UUID}}),
    ([("service", UUID)], {"service": {"id": UUID}}),
    ([("service", "")], {"service": None}),
    ([("config.requestHeader", "X-Echo"), ("config.limit", "5")],
     {"config": {"requestHeader": "X-Echo", "limit": 5}}),
    ([("config.methods[]", "GET"), ("config.methods[]", "POST")],
     {"config": {"methods": ["GET", "POST"]}}),
    ([("config.methods", "GET")], {"config": {"methods": ["GET"]}}),
    ([("config.redis.port", "6379")], {"config": {"redis": {"port": 6379}}}),
    ([("config[redis][port]", "1")], {"config": {"redis": {"port": 1}}}),
    ([("sources[1].ip", "1.2.3.4"), ("sources[1].port", "80"), ("sources[2].port", "81")],
     {"sources": [{"ip": "1.2.3.4", "port": 80}, {"port": 81}]}),
    ([("config.x", "1")], {"config": {"x": "1"}}),
    ([("x", "1")], {"x": "1"}),
    ([("x.y", "1"), ("x.z[]", "2")], {"x": {"y": "1", "z": ["2"]}}),
    ([("x", "1"), ("x", "2")], {"x": ["1", "2"]}),
    ([("config", "x")], {"config": "x"}),
    ([("hosts.x", "a")], {"hosts": {"x": "a"}}),
    ([("port.x", "1")], {"port": {"x": "1"}}),
    ([("a..b", "1")], {"a..b": "1"}),
    ([("a[", "1")], {"a[": "1"}),
    ([(".a", "1")], {".a": "1"}),
    ([("a.", "1")], {"a.": "1"}),
    ([("a]b", "1")], {"a]b": "1"}),
    ([], {}),
]

# (form pairs, schema violation fields)
INVALID: list[tuple[list[tuple[str, str]], dict[str, Any]]] = [
    ([("port", "abc")], {"port": "expected an integer"}),
    ([("port", "1"), ("port", "2")], {"port": "expected an integer"}),
    ([("strip_path", "yes")], {"strip_path": "expected a boolean"}),
    ([("config.limit", "x")], {"config": {"limit": "expected an integer"}}),
    ([("config.x", "1")], {"config": {"x": "unknown field"}}),
    ([("x", "1")], {"x": "unknown field"}),
    ([("hosts[]", "")], {"hosts": {"1": "required field missing"}}),
    ([("service.id", "x")], {"service": {"id": "expected a valid UUID"}}),
]


class DecodeFormTests(SynchronousTestCase):
    """
    L{decode_form}.
    """

    def test_table(self) -> None:
        """
        Each form decodes to the body a JSON client would have sent.
        """
        for pairs, expected in DECODED:
            self.assertEqual(decode_form(pairs, SCHEMA), expected, pairs)

    def test_types(self) -> None:
        """
        Integers are C{int}, numbers C{int} or C{float}, booleans C{bool}.
        """
        body = decode_form([("port", "80"), ("ratio", "1.5"), ("strip_path", "true")], SCHEMA)
        self.assertEqual([type(v) for v in body.values()], [int, float, bool])

    def test_invalid(self) -> None:
        """
        What cannot be typed is reported by validation with the usual
        message.
        """
        for pairs, fields in INVALID:
            exc = self.assertRaises(SchemaViolation, SCHEMA.validate,
                                    decode_form(pairs, SCHEMA), partial=True)
            self.assertEqual(exc.fields, fields, pairs)

    def test_valid(self) -> None:
        """
        A typed form validates like the JSON body.
        """
        pairs = [("hosts[]", "a"), ("strip_path", "false"), ("config.limit", "3"),
                 ("headers.x-foo", "bar")]
        body = SCHEMA.validate(decode_form(pairs, SCHEMA))
        self.assertEqual((body["hosts"], body["strip_path"], body["config"]["limit"],
                          body["headers"]), (["a"], False, 3, {"x-foo": ["bar"]}))


class ParseNameTests(SynchronousTestCase):
    """
    L{parse_name}.
    """

    def test_table(self) -> None:
        """
        Names split into fields, indices and appends.
        """
        for name, path in [
            ("port", ["port"]),
            ("config.requestHeader", ["config", "requestHeader"]),
            ("hosts[]", ["hosts", None]),
            ("hosts[2]", ["hosts", 2]),
            ("headers[x.y]", ["headers", "x.y"]),
            ("config.methods[]", ["config", "methods", None]),
            ("sources[1].ip", ["sources", 1, "ip"]),
            ("a[b][c]", ["a", "b", "c"]),
            ("a..b", None),
            ("[1]", None),
            ("a[", None),
            ("a.", None),
            ("a]", None),
        ]:
            self.assertEqual(parse_name(name), path, name)
