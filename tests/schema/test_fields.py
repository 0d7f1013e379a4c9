"""
Tests for the field types of L{echogate.schema.fields} and L{echogate.schema.containers},
each checked inside a record.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.schema import Record
from echogate.schema.containers import Array, ElementErrors, Map, Set
from echogate.schema.fields import Boolean, Field, Foreign, Integer, Invalid, Number, String, text_problem
from tests.schema.test_schema import fields_of

UUID = "0f6b0e5c-3d2c-4c1a-9a55-2f7b9f0d8c11"


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


class UnstorableTextTests(SynchronousTestCase):
    """
    Every L{String} refuses text no database can store.
    """

    def test_nul(self) -> None:
        """
        A NUL character is refused, with its 1-based position.
        """
        with self.assertRaises(Invalid) as caught:
            String().coerce("ab\x00")
        self.assertEqual(caught.exception.error, "invalid value: NUL character at position 3")

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate (not UTF-8) is refused with Kong's message.
        """
        with self.assertRaises(Invalid) as caught:
            String().coerce("\ud800")
        self.assertEqual(caught.exception.error, "invalid utf-8 character sequence detected at position 1")

    def test_beforeOtherChecks(self) -> None:
        """
        The refusal comes before checks that repeat the value (one_of, match, check).
        """
        field = String(one_of=("a",), check=lambda value: f"bad {value}")
        with self.assertRaises(Invalid) as caught:
            field.coerce("\x00")
        self.assertEqual(caught.exception.error, "invalid value: NUL character at position 1")

    def test_fine(self) -> None:
        """
        Other control characters and any real character are kept.
        """
        self.assertEqual(String().coerce("a\tb\n\U0001f600"), "a\tb\n\U0001f600")

    def test_textProblem(self) -> None:
        """
        L{text_problem} says why, or C{None}.
        """
        self.assertIsNone(text_problem("fine"))
        self.assertEqual(text_problem("x\udfff"), "invalid utf-8 character sequence detected at position 2")


class ElementErrorsTests(SynchronousTestCase):
    """
    Array element errors read as a dict by index, and convert to Kong's array.
    """

    def test_dict(self) -> None:
        """
        They compare equal to the plain dict by 1-based index.
        """
        with self.assertRaises(Invalid) as caught:
            Array(String()).coerce(["a", 1])
        self.assertIsInstance(caught.exception.error, ElementErrors)
        self.assertEqual(caught.exception.error, {"2": "expected a string"})

    def test_asList(self) -> None:
        """
        L{ElementErrors.as_list} has C{None} for each good element up to the last bad one.
        """
        self.assertEqual(ElementErrors({"2": "x", "4": "y"}).as_list(), [None, "x", None, "y"])

    def test_notIndices(self) -> None:
        """
        Keys that are not indices are left as a dict.
        """
        self.assertEqual(ElementErrors({"a": "x"}).as_list(), {"a": "x"})
