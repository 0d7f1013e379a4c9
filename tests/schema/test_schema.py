"""
Tests for L{echogate.schema}: validating records, merging, describing and
entity checks. The field types of L{echogate.schema.fields} and
L{echogate.schema.containers} are in L{tests.schema.test_fields}.
"""
from __future__ import annotations

import operator
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.errors import SchemaViolation
from echogate.schema import Record, at_least_one_of, only_one_of
from echogate.schema.containers import Array, Map, Set
from echogate.schema.fields import NO_DEFAULT, Boolean, Foreign, Integer, Number, String


def fields_of(test: SynchronousTestCase, schema: Record, value: Any, **kw: Any) -> dict[str, Any]:
    """
    The C{fields} of the L{SchemaViolation} that validating C{value} raises.
    """
    exc = test.assertRaises(SchemaViolation, schema.validate, value, **kw)
    return exc.fields


CONFIG = Record({
    "requestHeader": String(default="X-Request-Echo", required=True),
    "limit": Integer(between=(1, 1000), default=10),
    "methods": Set(String(one_of=("GET", "POST"))),
    "redis": Record({"host": String(), "port": Integer(between=(0, 65535), default=6379)}),
})


class RecordTests(SynchronousTestCase):
    """
    L{Record.validate}.
    """

    def test_defaults(self) -> None:
        """
        Every field is present: defaults filled, nested records filled,
        C{None} where there is no default.
        """
        self.assertEqual(CONFIG.validate({}), {
            "requestHeader": "X-Request-Echo",
            "limit": 10,
            "methods": None,
            "redis": {"host": None, "port": 6379},
        })

    def test_fieldOrder(self) -> None:
        """
        Fields come out in declared order.
        """
        self.assertEqual(list(CONFIG.validate({"redis": {}, "limit": 2})),
                         ["requestHeader", "limit", "methods", "redis"])

    def test_newDict(self) -> None:
        """
        The input is not changed; a new dict is returned.
        """
        value = {"redis": {"host": "h"}}
        result = CONFIG.validate(value)
        self.assertEqual(value, {"redis": {"host": "h"}})
        self.assertIsNot(result["redis"], value["redis"])

    def test_defaultsCopied(self) -> None:
        """
        A mutable default is copied for each record.
        """
        schema = Record({"m": Array(String(), default=["a"])})
        first = schema.validate({})
        first["m"].append("b")
        self.assertEqual(schema.validate({})["m"], ["a"])

    def test_type(self) -> None:
        """
        A non-dict is "expected a record", at the top as an entity error.
        """
        self.assertEqual(fields_of(self, CONFIG, []), {"@entity": ["expected a record"]})
        self.assertEqual(fields_of(self, CONFIG, {"redis": "x"}), {"redis": "expected a record"})

    def test_unknown(self) -> None:
        """
        Keys the schema does not declare are "unknown field", nested too.
        """
        self.assertEqual(fields_of(self, CONFIG, {"x": 1, "redis": {"y": 2}}),
                         {"redis": {"y": "unknown field"}, "x": "unknown field"})

    def test_requiredMissing(self) -> None:
        """
        A required field without default that is absent or null is
        "required field missing".
        """
        schema = Record({"host": String(required=True)})
        self.assertEqual(fields_of(self, schema, {}), {"host": "required field missing"})
        self.assertEqual(fields_of(self, schema, {"host": None}), {"host": "required field missing"})

    def test_requiredNullWithDefault(self) -> None:
        """
        Null for a required field is an error even when it has a default.
        """
        self.assertEqual(fields_of(self, CONFIG, {"requestHeader": None}),
                         {"requestHeader": "required field missing"})

    def test_optionalNull(self) -> None:
        """
        An explicit null for an optional field stays null, default or not.
        """
        self.assertEqual(CONFIG.validate({"limit": None, "redis": None})["limit"], None)
        self.assertEqual(CONFIG.validate({"redis": None})["redis"], None)

    def test_everyError(self) -> None:
        """
        Every bad field is listed at once, with a flattened message.
        """
        exc = self.assertRaises(SchemaViolation, CONFIG.validate, {
            "limit": 0, "methods": ["PUT"], "redis": {"port": True}, "x": 1})
        self.assertEqual(exc.fields, {
            "limit": "value should be between 1 and 1000",
            "methods": {"1": "expected one of: GET, POST"},
            "redis": {"port": "expected an integer"},
            "x": "unknown field",
        })
        self.assertEqual(exc.message, "4 schema violations (limit: value should be between 1"
                         " and 1000; methods.1: expected one of: GET, POST; redis.port:"
                         " expected an integer; x: unknown field)")

    def test_nestedRequired(self) -> None:
        """
        An absent nested record with a required field reports it nested.
        """
        schema = Record({"redis": Record({"host": String(required=True)})})
        self.assertEqual(fields_of(self, schema, {}), {"redis": {"host": "required field missing"}})

    def test_nullableRecord(self) -> None:
        """
        A nested record with C{default=None} is null when absent.
        """
        schema = Record({"redis": Record({"host": String(required=True)}, default=None)})
        self.assertEqual(schema.validate({}), {"redis": None})

    def test_partial(self) -> None:
        """
        C{partial=True} validates only the given fields and fills nothing,
        nested records included.
        """
        self.assertEqual(CONFIG.validate({"redis": {"port": 1}}, partial=True),
                         {"redis": {"port": 1}})
        self.assertEqual(fields_of(self, CONFIG, {"limit": "x", "requestHeader": None},
                                   partial=True),
                         {"limit": "expected an integer",
                          "requestHeader": "required field missing"})

    def test_partialSkipsChecks(self) -> None:
        """
        C{partial=True} does not run entity checks.
        """
        schema = Record({"a": String(), "b": String()}, checks=(at_least_one_of("a", "b"),))
        self.assertEqual(schema.validate({}, partial=True), {})

    def test_checks(self) -> None:
        """
        Entity checks report field messages, and entity messages under
        C{@entity}.
        """
        schema = Record({"a": Integer(), "b": Integer()}, checks=(
            lambda r: {"b": "must exceed a"} if (r["b"] or 0) <= (r["a"] or 0) else None,
            lambda r: "always wrong",
            lambda r: {"@entity": "also wrong"},
        ))
        self.assertEqual(fields_of(self, schema, {"a": 2, "b": 1}), {
            "b": "must exceed a", "@entity": ["always wrong", "also wrong"]})

    def test_checksAfterFields(self) -> None:
        """
        Entity checks run only once every field is valid.
        """
        calls = []
        schema = Record({"a": Integer()}, checks=(calls.append,))
        fields_of(self, schema, {"a": "x"})
        self.assertEqual(calls, [])
        schema.validate({"a": 1})
        self.assertEqual(calls, [{"a": 1}])

    def test_recordCheck(self) -> None:
        """
        A nested record's C{check} message is the record field's message.
        """
        schema = Record({"r": Record({"a": Integer()}, check=lambda r: "bad r")})
        self.assertEqual(fields_of(self, schema, {}), {"r": "bad r"})

    def test_notAField(self) -> None:
        """
        A record of something other than fields is refused at definition.
        """
        self.assertRaises(TypeError, Record, {"a": int})

    def test_badDefault(self) -> None:
        """
        A default that its own field refuses is refused at definition.
        """
        exc = self.assertRaises(ValueError, Integer, between=(1, 10), default=100)
        self.assertIn("value should be between 1 and 10", str(exc))

    def test_immutable(self) -> None:
        """
        Fields are frozen values and a record's fields cannot be changed.
        """
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, CONFIG, "checks", ())
        self.assertRaises(TypeError, operator.setitem, CONFIG.fields, "x", String())

    def test_equality(self) -> None:
        """
        Fields compare by value.
        """
        self.assertEqual(Set(String(one_of=["a"])), Set(String(one_of=("a",))))

    def test_withField(self) -> None:
        """
        L{Record.with_field} and L{Record.without} make changed copies.
        """
        schema = CONFIG.with_field("limit", Integer(default=1)).without("redis")
        self.assertEqual(list(schema.fields), ["requestHeader", "limit", "methods"])
        self.assertEqual(schema.validate({})["limit"], 1)
        self.assertEqual(CONFIG.validate({})["limit"], 10)


class MergeTests(SynchronousTestCase):
    """
    L{Record.merge}: PATCH semantics.
    """

    def test_replace(self) -> None:
        """
        Given fields replace existing ones; others stay.
        """
        existing = CONFIG.validate({"limit": 5, "methods": ["GET"]})
        merged = CONFIG.merge(existing, {"methods": ["POST"], "limit": None})
        self.assertEqual(merged, {**existing, "methods": ["POST"], "limit": None})

    def test_nested(self) -> None:
        """
        Nested records merge field by field.
        """
        existing = CONFIG.validate({"redis": {"host": "h"}})
        merged = CONFIG.merge(existing, {"redis": {"port": 1}})
        self.assertEqual(merged["redis"], {"host": "h", "port": 1})
        self.assertEqual(existing["redis"], {"host": "h", "port": 6379})

    def test_nestedNull(self) -> None:
        """
        Null replaces a nested record, and a record replaces null.
        """
        existing = CONFIG.validate({})
        self.assertIsNone(CONFIG.merge(existing, {"redis": None})["redis"])
        self.assertEqual(CONFIG.merge({**existing, "redis": None}, {"redis": {"port": 2}})["redis"],
                         {"port": 2})

    def test_maps(self) -> None:
        """
        Maps are replaced, not merged.
        """
        schema = Record({"h": Map(String(), String())})
        self.assertEqual(schema.merge({"h": {"a": "1"}}, {"h": {"b": "2"}}), {"h": {"b": "2"}})

    def test_unknown(self) -> None:
        """
        Unknown keys pass through, for validation to report.
        """
        self.assertEqual(CONFIG.merge({}, {"x": 1}), {"x": 1})


class DescribeTests(SynchronousTestCase):
    """
    L{Record.describe}.
    """

    def test_shape(self) -> None:
        """
        Fields are listed in order with their type, requiredness, default
        and constraints; nested records list their fields.
        """
        self.assertEqual(CONFIG.describe(), {"fields": [
            {"requestHeader": {"type": "string", "required": True, "default": "X-Request-Echo"}},
            {"limit": {"type": "integer", "required": False, "default": 10,
                       "between": [1, 1000]}},
            {"methods": {"type": "set", "required": False, "elements": {
                "type": "string", "required": True, "one_of": ["GET", "POST"]}}},
            {"redis": {"type": "record", "required": False, "fields": [
                {"host": {"type": "string", "required": False}},
                {"port": {"type": "integer", "required": False, "default": 6379,
                          "between": [0, 65535]}},
            ]}},
        ]})

    def test_others(self) -> None:
        """
        Maps, foreign keys, descriptions and string constraints are shown.
        """
        schema = Record({
            "h": Map(String(), Array(String(), len_min=1), description="d"),
            "s": Foreign("services"),
            "p": String(starts_with="/", match="^/", len_max=9, default="/"),
            "n": Number(one_of=(1.5,)),
            "b": Boolean(default=None),
        })
        self.assertEqual(schema.describe()["fields"], [
            {"h": {"type": "map", "required": False, "description": "d",
                   "keys": {"type": "string", "required": False},
                   "values": {"type": "array", "required": False, "len_min": 1,
                              "elements": {"type": "string", "required": True}}}},
            {"s": {"type": "foreign", "required": False, "reference": "services"}},
            {"p": {"type": "string", "required": False, "default": "/", "starts_with": "/",
                   "match": "^/", "len_max": 9}},
            {"n": {"type": "number", "required": False, "one_of": [1.5]}},
            {"b": {"type": "boolean", "required": False, "default": None}},
        ])

    def test_noDefault(self) -> None:
        """
        L{NO_DEFAULT} is not shown.
        """
        self.assertNotIn("default", String(default=NO_DEFAULT).to_json())


class EntityCheckTests(SynchronousTestCase):
    """
    L{at_least_one_of} and L{only_one_of}.
    """

    def test_atLeastOneOf(self) -> None:
        """
        Kong's message when none of the fields is non-empty.
        """
        schema = Record({"a": String(), "b": Array(String())}, checks=(at_least_one_of("a", "b"),))
        self.assertEqual(fields_of(self, schema, {"b": []}), {
            "@entity": ["at least one of these fields must be non-empty: 'a', 'b'"]})
        self.assertEqual(schema.validate({"b": ["x"]})["b"], ["x"])

    def test_onlyOneOf(self) -> None:
        """
        Kong's message when not exactly one of the fields is non-empty.
        """
        schema = Record({"a": String(), "b": String()}, checks=(only_one_of("a", "b"),))
        message = {"@entity": ["exactly one of these fields must be non-empty: 'a', 'b'"]}
        self.assertEqual(fields_of(self, schema, {}), message)
        self.assertEqual(fields_of(self, schema, {"a": "x", "b": "y"}), message)
        self.assertEqual(schema.validate({"a": "x"})["a"], "x")
