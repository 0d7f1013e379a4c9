"""
Tests for L{echogate.schema}, L{echogate.fields} and L{echogate.containers}.
"""
from __future__ import annotations

import operator
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.containers import Array, Map, Set
from echogate.errors import SchemaViolation
from echogate.fields import NO_DEFAULT, Boolean, Field, Foreign, Integer, Number, String
from echogate.schema import Record, at_least_one_of, only_one_of

UUID = "0f6b0e5c-3d2c-4c1a-9a55-2f7b9f0d8c11"


def fields_of(test: SynchronousTestCase, schema: Record, value: Any, **kw: Any) -> dict[str, Any]:
    """
    The C{fields} of the L{SchemaViolation} that validating C{value} raises.
    """
    exc = test.assertRaises(SchemaViolation, schema.validate, value, **kw)
    return exc.fields


class FieldCase(SynchronousTestCase):
    """
    Helpers for checking one field inside a record.
    """

    def ok(self, field: Field, value: Any) -> Any:
        return Record({"f": field}).validate({"f": value})["f"]

    def error(self, field: Field, value: Any) -> Any:
        return fields_of(self, Record({"f": field}), {"f": value})["f"]

    def assertErrors(self, field: Field, table: list[tuple[Any, Any]]) -> None:
        for value, message in table:
            self.assertEqual(self.error(field, value), message, value)


class StringTests(FieldCase):
    """
    L{String}.
    """

    def test_accepts(self) -> None:
        """
        A string is returned as is.
        """
        self.assertEqual(self.ok(String(), "x"), "x")

    def test_type(self) -> None:
        """
        Anything else is "expected a string".
        """
        self.assertErrors(String(), [(1, "expected a string"), (True, "expected a string"),
                                     (["x"], "expected a string"), ({}, "expected a string")])

    def test_empty(self) -> None:
        """
        Empty strings are refused by default, as in Kong.
        """
        self.assertEqual(self.error(String(), ""), "length must be at least 1")

    def test_emptyAllowed(self) -> None:
        """
        C{len_min=0} allows empty strings.
        """
        self.assertEqual(self.ok(String(len_min=0), ""), "")

    def test_lengths(self) -> None:
        """
        C{len_min} and C{len_max} bound the length.
        """
        field = String(len_min=2, len_max=3)
        self.assertErrors(field, [("a", "length must be at least 2"),
                                  ("abcd", "length must be at most 3")])
        self.assertEqual(self.ok(field, "abc"), "abc")

    def test_oneOf(self) -> None:
        """
        C{one_of} lists the allowed values in its message.
        """
        field = String(one_of=("http", "https"))
        self.assertEqual(self.error(field, "ftp"), "expected one of: http, https")
        self.assertEqual(self.ok(field, "https"), "https")

    def test_startsWith(self) -> None:
        """
        C{starts_with} requires a prefix.
        """
        self.assertEqual(self.error(String(starts_with="/"), "x"), "should start with: /")
        self.assertEqual(self.ok(String(starts_with="/"), "/x"), "/x")

    def test_match(self) -> None:
        """
        C{match} is a regex the value must contain a match for.
        """
        field = String(match=r"^[A-Z]+$")
        self.assertEqual(self.error(field, "get"), "invalid value: get")
        self.assertEqual(self.ok(field, "GET"), "GET")

    def test_check(self) -> None:
        """
        C{check} returns a message for a bad value, C{None} for a good one.
        """
        field = String(check=lambda v: None if v.islower() else "must be lower-case")
        self.assertEqual(self.error(field, "X"), "must be lower-case")
        self.assertEqual(self.ok(field, "x"), "x")

    def test_checkAfterBuiltins(self) -> None:
        """
        C{check} only sees values of the right type.
        """
        seen = []
        field = String(check=seen.append)
        self.assertEqual(self.error(field, 5), "expected a string")
        self.assertEqual(seen, [])


class IntegerTests(FieldCase):
    """
    L{Integer}.
    """

    def test_accepts(self) -> None:
        """
        Integers are accepted; an integral float becomes an integer.
        """
        self.assertEqual(self.ok(Integer(), 5), 5)
        value = self.ok(Integer(), 80.0)
        self.assertEqual((value, type(value)), (80, int))

    def test_type(self) -> None:
        """
        Booleans, fractions, strings are "expected an integer".
        """
        self.assertErrors(Integer(), [(True, "expected an integer"), (1.5, "expected an integer"),
                                      ("1", "expected an integer"), ([1], "expected an integer"),
                                      (float("inf"), "expected an integer")])

    def test_between(self) -> None:
        """
        C{between} is inclusive.
        """
        field = Integer(between=(0, 65535))
        self.assertErrors(field, [(-1, "value should be between 0 and 65535"),
                                  (65536, "value should be between 0 and 65535")])
        self.assertEqual(self.ok(field, 0), 0)
        self.assertEqual(self.ok(field, 65535), 65535)

    def test_oneOf(self) -> None:
        """
        C{one_of} lists the allowed values.
        """
        field = Integer(one_of=(426, 301))
        self.assertEqual(self.error(field, 200), "expected one of: 426, 301")
        self.assertEqual(self.ok(field, 301), 301)

    def test_check(self) -> None:
        """
        C{check} runs on integers too.
        """
        field = Integer(check=lambda v: "must be even" if v % 2 else None)
        self.assertEqual(self.error(field, 3), "must be even")


class NumberTests(FieldCase):
    """
    L{Number}.
    """

    def test_accepts(self) -> None:
        """
        Integers and floats are numbers.
        """
        self.assertEqual(self.ok(Number(), 1.5), 1.5)
        self.assertEqual(self.ok(Number(), 2), 2)

    def test_type(self) -> None:
        """
        Booleans, strings and non-finite floats are "expected a number".
        """
        self.assertErrors(Number(), [(False, "expected a number"), ("1.5", "expected a number"),
                                     (float("nan"), "expected a number"),
                                     (float("-inf"), "expected a number")])

    def test_between(self) -> None:
        """
        C{between} shows fractional bounds as they are.
        """
        self.assertEqual(self.error(Number(between=(0.5, 2)), 3),
                         "value should be between 0.5 and 2")


class BooleanTests(FieldCase):
    """
    L{Boolean}.
    """

    def test_accepts(self) -> None:
        """
        C{True} and C{False}.
        """
        self.assertIs(self.ok(Boolean(), False), False)

    def test_type(self) -> None:
        """
        Anything else is "expected a boolean", 0 and "true" included.
        """
        self.assertErrors(Boolean(), [(0, "expected a boolean"), ("true", "expected a boolean")])


class ArrayTests(FieldCase):
    """
    L{Array}.
    """

    def test_accepts(self) -> None:
        """
        A list (or tuple) of good elements is returned as a new list.
        """
        value = ["a", "b"]
        result = self.ok(Array(String()), value)
        self.assertEqual(result, ["a", "b"])
        self.assertIsNot(result, value)
        self.assertEqual(self.ok(Array(String()), ("a",)), ["a"])

    def test_type(self) -> None:
        """
        Anything else is "expected an array".
        """
        self.assertErrors(Array(String()), [("a", "expected an array"), ({}, "expected an array")])

    def test_elementErrors(self) -> None:
        """
        Bad elements are reported by 1-based index, all of them.
        """
        self.assertEqual(self.error(Array(Integer(between=(1, 5))), [1, "x", 9]),
                         {"2": "expected an integer", "3": "value should be between 1 and 5"})

    def test_nullElement(self) -> None:
        """
        A null element is "required field missing".
        """
        self.assertEqual(self.error(Array(String()), ["a", None]), {"2": "required field missing"})

    def test_lengths(self) -> None:
        """
        C{len_min} and C{len_max} count elements.
        """
        field = Array(String(), len_min=1, len_max=2)
        self.assertErrors(field, [([], "length must be at least 1"),
                                  (["a", "b", "c"], "length must be at most 2")])

    def test_duplicatesKept(self) -> None:
        """
        An array keeps duplicates.
        """
        self.assertEqual(self.ok(Array(String()), ["a", "a"]), ["a", "a"])

    def test_nestedRecords(self) -> None:
        """
        Errors in records inside an array nest under the index.
        """
        field = Array(Record({"ip": String()}))
        self.assertEqual(self.error(field, [{"ip": 1}]), {"1": {"ip": "expected a string"}})


class SetTests(FieldCase):
    """
    L{Set}.
    """

    def test_type(self) -> None:
        """
        Anything but a list is "expected a set".
        """
        self.assertEqual(self.error(Set(String()), "GET"), "expected a set")

    def test_duplicates(self) -> None:
        """
        Duplicates are removed, the first of each kept in order.
        """
        self.assertEqual(self.ok(Set(String()), ["b", "a", "b"]), ["b", "a"])

    def test_elementErrors(self) -> None:
        """
        Element errors are per index, as for arrays.
        """
        self.assertEqual(self.error(Set(String(one_of=("GET",))), ["GET", "PUT"]),
                         {"2": "expected one of: GET"})


class MapTests(FieldCase):
    """
    L{Map}.
    """

    def test_accepts(self) -> None:
        """
        A dict with good keys and values.
        """
        field = Map(String(), Array(String()))
        self.assertEqual(self.ok(field, {"x-a": ["1"]}), {"x-a": ["1"]})

    def test_type(self) -> None:
        """
        Anything else is "expected a map".
        """
        self.assertEqual(self.error(Map(String(), String()), ["a"]), "expected a map")

    def test_badKey(self) -> None:
        """
        The first bad key's message is the field's.
        """
        field = Map(String(match="^x"), String())
        self.assertEqual(self.error(field, {"y": "1"}), "invalid value: y")

    def test_badValue(self) -> None:
        """
        The first bad value's message is the field's.
        """
        self.assertEqual(self.error(Map(String(), Integer()), {"a": "1"}), "expected an integer")

    def test_nullValue(self) -> None:
        """
        A null value is "required field missing".
        """
        self.assertEqual(self.error(Map(String(), String()), {"a": None}), "required field missing")

    def test_lengths(self) -> None:
        """
        C{len_min} counts entries.
        """
        self.assertEqual(self.error(Map(String(), String(), len_min=1), {}),
                         "length must be at least 1")


class ForeignTests(FieldCase):
    """
    L{Foreign}.
    """

    def test_accepts(self) -> None:
        """
        C{{"id": uuid}} is returned with the id lower-cased; other keys are
        dropped.
        """
        self.assertEqual(self.ok(Foreign("services"), {"id": UUID.upper(), "name": "x"}),
                         {"id": UUID})

    def test_null(self) -> None:
        """
        A foreign key may be null.
        """
        self.assertIsNone(self.ok(Foreign("services"), None))

    def test_errors(self) -> None:
        """
        Non-dicts, missing ids and bad ids are reported, nested under C{id}.
        """
        self.assertErrors(Foreign("services"), [
            (UUID, "expected a record"),
            ({}, {"id": "missing primary key"}),
            ({"id": None}, {"id": "required field missing"}),
            ({"id": 5}, {"id": "expected a string"}),
            ({"id": "abc"}, {"id": "expected a valid UUID"}),
        ])


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
