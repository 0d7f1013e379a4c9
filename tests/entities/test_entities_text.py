"""
Tests for the text an entity may hold: what PostgreSQL can store and
index (L{echogate.entities.limits}), and whole-value checks that a
trailing newline cannot slip past.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.entities.limits import INDEXED_MAX
from echogate.errors import SchemaViolation
from echogate.schema import Field, Record
from tests.entities.test_entities import ID, NOW, FakePlugin, insert, prepare_insert


class IndexedLengthTests(SynchronousTestCase):
    """
    Every indexed text field is at most L{INDEXED_MAX} characters.
    """

    def violation(self, entity: str, body: dict[str, Any]) -> Any:
        return self.assertRaises(SchemaViolation, insert, entity, body).fields

    def test_fields(self) -> None:
        """
        Names, usernames, custom ids, keys, groups and tags one character too long are refused.
        """
        long = "a" * (INDEXED_MAX + 1)
        consumer = {"id": ID}
        cases = [
            ("services", {"host": "example.com", "name": long}, {"name": "length must be at most 512"}),
            ("routes", {"paths": ["/"], "name": long}, {"name": "length must be at most 512"}),
            ("consumers", {"username": long}, {"username": "length must be at most 512"}),
            ("consumers", {"custom_id": long}, {"custom_id": "length must be at most 512"}),
            ("consumers", {"username": "u", "tags": ["ok", long]}, {"tags": {"2": "length must be at most 512"}}),
            ("keyauth_credentials", {"consumer": consumer, "key": long}, {"key": "length must be at most 512"}),
            ("basicauth_credentials", {"consumer": consumer, "username": long, "password": "p"},
             {"username": "length must be at most 512"}),
            ("jwt_secrets", {"consumer": consumer, "key": long, "secret": "s"}, {"key": "length must be at most 512"}),
            ("acls", {"consumer": consumer, "group": long}, {"group": "length must be at most 512"}),
        ]
        for entity, body, expected in cases:
            self.assertEqual((entity, self.violation(entity, body)), (entity, expected),
                             f"row entity={entity!r} body={body!r} expected={expected!r}")

    def test_longest(self) -> None:
        """
        L{INDEXED_MAX} four-byte characters are accepted (2,048 bytes: within an index entry).
        """
        self.assertEqual(insert("consumers", {"username": "\U0001f600" * INDEXED_MAX})["username"],
                         "\U0001f600" * INDEXED_MAX)


class TrailingNewlineTests(SynchronousTestCase):
    """
    A whole-value check is not passed by a value that ends in a newline.
    """

    def test_tag(self) -> None:
        """
        "a\\n" is not a tag (Kong: printable ASCII).
        """
        fields = self.assertRaises(SchemaViolation, insert, "consumers", {"username": "u", "tags": ["a\n"]}).fields
        self.assertIn("invalid tag", fields["tags"]["1"])

    def test_serviceHost(self) -> None:
        """
        "example.com\\n" is not a host (it would reach the upstream's Host header).
        """
        fields = self.assertRaises(SchemaViolation, insert, "services", {"host": "example.com\n"}).fields
        self.assertEqual(fields, {"host": "invalid value: example.com\n"})

    def test_name(self) -> None:
        """
        "svc\\n" is not a name.
        """
        fields = self.assertRaises(SchemaViolation, insert, "services",
                                   {"host": "example.com", "name": "svc\n"}).fields
        self.assertIn("name", fields)

    def test_method(self) -> None:
        """
        "GET\\n" is not a method.
        """
        fields = self.assertRaises(SchemaViolation, insert, "routes", {"methods": ["GET\n"]}).fields
        self.assertIn("methods", fields)

    def test_id(self) -> None:
        """
        A UUID followed by a newline is not an id.
        """
        fields = self.assertRaises(SchemaViolation, insert, "consumers", {"username": "u", "id": ID + "\n"}).fields
        self.assertEqual(fields, {"id": "expected a valid UUID"})


class AnyFieldTests(SynchronousTestCase):
    """
    A plugin config field of any type cannot carry text PostgreSQL refuses.
    """

    def test_nulInside(self) -> None:
        """
        A NUL in a key or a value under a L{Field} of any type is refused, by path.
        """
        plugins = {"free": FakePlugin("free", Record({"anything": Field()}))}
        for value, expected in [
            ({"k\x00": 1}, {"k\x00": "invalid value: NUL character at position 2"}),
            (["ok", "\ud800"], {"2": "invalid utf-8 character sequence detected at position 1"}),
        ]:
            fields = self.assertRaises(SchemaViolation, prepare_insert, "plugins",
                                       {"name": "free", "config": {"anything": value}},
                                       plugins=plugins, now=NOW, new_id=ID).fields
            self.assertEqual(fields, {"config": {"anything": expected}}, f"row value={value!r} expected={expected!r}")
