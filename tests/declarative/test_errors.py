"""
Tests for the errors of L{echogate.declarative.load}: every error with its
path, in Kong's nested shape and its flattened one.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.declarative import DeclarativeError, load
from echogate.declarative.layout import derived_id
from tests.entities.test_entities import PLUGINS

ID = "0855b320-0dd2-547d-891d-601e9b38647f"


def error(config: Any, version: Any = "3.0") -> DeclarativeError:
    """
    The error loading C{config} raises.
    """
    if isinstance(config, dict) and version is not None:
        config = {"_format_version": version, **config}
    text = config if isinstance(config, str) else json.dumps(config)
    try:
        load(text, PLUGINS, now=1)
    except DeclarativeError as e:
        return e
    raise AssertionError("loaded")


#: (what, file, Kong's nested fields)
NESTED: list[tuple[str, Any, dict[str, Any]]] = [
    ("duplicate id", {"services": [{"id": ID, "host": "a"}, {"id": ID, "host": "b"}]},
     {"services": [None, f"uniqueness violation: 'services' entity with primary key set to '{ID}' already declared"]}),
    ("duplicate name", {"services": [{"name": "foo", "host": "a"}, {"name": "foo", "host": "b"}]},
     {"services": [None, "uniqueness violation: 'services' entity with name set to 'foo' already declared"]}),
    ("duplicate plugin scope", {"services": [{"name": "s", "host": "h", "plugins": [{"name": "header-echo"}]}],
                                "plugins": [{"name": "header-echo", "service": "s"}]},
     {"plugins": ["uniqueness violation: 'plugins' entity with name, service, route, consumer set"
                  f" to 'header-echo, {derived_id('services', 's')}, , ' already declared"]}),
    ("duplicate custom_id", {"consumers": [{"custom_id": "x"}, {"custom_id": "x", "tags": ["t"]}]},
     {"consumers": [None, "uniqueness violation: 'consumers' entity with custom_id set to 'x' already declared"]}),
    ("unknown reference", {"routes": [{"paths": ["/"]}, {"service": "nope", "paths": ["/"]}]},
     {"routes": [None, {"service": "invalid reference 'service: nope' (no such entry in 'services')"}]}),
    ("unknown id reference", {"plugins": [{"name": "header-echo", "consumer": {"id": ID}}]},
     {"plugins": [{"consumer": f"invalid reference 'consumer: {{\"id\":\"{ID}\"}}' (no such entry in 'consumers')"}]}),
    ("nested field", {"services": [{"host": "h", "routes": [{"paths": ["/"]}, {"paths": ["x"]}]}]},
     {"services": [{"routes": [None, {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}]}]}),
    ("nested twice", {"consumers": [{"username": "c", "plugins": [{"name": "header-echo", "config": {"limit": 0}}]}]},
     {"consumers": [{"plugins": [{"config": {"limit": "value should be between 1 and 1000"}}]}]}),
    ("unknown plugin", {"plugins": [{"name": "nope"}]},
     {"plugins": [{"name": "plugin 'nope' not enabled; add it to the 'plugins' configuration property"}]}),
    ("unknown top-level key", {"servces": []}, {"servces": "unknown field"}),
    ("not a list", {"services": {"host": "h"}}, {"services": "expected an array"}),
    ("not a record", {"services": ["h"]}, {"services": ["expected a record"]}),
    ("nested not a list", {"services": [{"host": "h", "routes": "r"}]},
     {"services": [{"routes": "expected an array"}]}),
    ("wrong type", {"services": [{"host": "h", "port": "80"}]}, {"services": [{"port": "expected an integer"}]}),
    ("unknown field in entity", {"consumers": [{"username": "c", "routes": []}]},
     {"consumers": [{"routes": "unknown field"}]}),
    ("bad _transform", {"_transform": "yes"}, {"_transform": "expected a boolean"}),
]


class NestedErrorTests(SynchronousTestCase):
    """
    Kong's nested shape: C{fields} mirrors the file.
    """

    def test_cases(self) -> None:
        """
        Each invalid file reports its errors at their paths.
        """
        for what, config, fields in NESTED:
            with self.subTest(what=what):
                self.assertEqual(error(config).fields, fields)

    def test_body(self) -> None:
        """
        The body is Kong's C{POST /config} 400: code 14, Penlight's table in the message.
        """
        e = error({"services": [{"name": "foo", "host": "a"}, {"name": "foo", "host": "b"}]})
        self.assertEqual((e.status, e.body()), (400, {
            "code": 14, "name": "invalid declarative configuration",
            "message": "declarative config is invalid: {services={[2]=\"uniqueness violation: 'services'"
                       " entity with name set to 'foo' already declared\"}}",
            "fields": {"services": [None, "uniqueness violation: 'services' entity with name set to 'foo'"
                                          " already declared"]}}))

    def test_everyError(self) -> None:
        """
        Every error of the file is reported at once.
        """
        e = error({"servces": [], "services": [{"host": "h", "port": "x"}], "plugins": [{"name": "nope"}]})
        self.assertEqual(set(e.fields or {}), {"servces", "services", "plugins"})


class FormatVersionErrorTests(SynchronousTestCase):
    """
    C{_format_version} must be one Kong 3 reads.
    """

    def test_versions(self) -> None:
        """
        Missing, not a string, or unknown: Kong's messages.
        """
        for version, message in [(None, "required field missing"), (3.0, "expected a string"),
                                 ("4.0", "expected one of: 1.1, 2.1, 3.0"), ("0.1", "expected one of: 1.1, 2.1, 3.0")]:
            with self.subTest(version=version):
                self.assertEqual(error({}, version).fields, {"_format_version": message})

    def test_unparsable(self) -> None:
        """
        Text that is neither YAML nor a JSON object: Kong's C{error} field.
        """
        for text in ("services: [", "[]", "{"):
            with self.subTest(text=text):
                fields = error(text).fields or {}
                self.assertEqual(list(fields), ["error"])
                self.assertTrue(fields["error"].startswith("failed parsing declarative configuration: "))


class FlattenedErrorTests(SynchronousTestCase):
    """
    Kong's C{flatten_errors=1} shape: one entry per entity in error.
    """

    def test_entities(self) -> None:
        """
        Each entity's errors, nested ones hoisted, fields dotted, the
        parent's key added to a nested entity.
        """
        e = error({"services": [{"id": ID, "name": "s", "host": "h", "tags": ["t1"], "routes": [
            {"name": "r", "paths": ["x"], "plugins": [{"name": "header-echo", "config": {"limit": 0}}]}]}]})
        self.assertEqual(e.flattened_body(), {
            "code": 14, "name": "invalid declarative configuration",
            "message": "declarative config is invalid: {}", "fields": {},
            "flattened_errors": [
                {"entity_type": "route", "entity_name": "r",
                 "entity": {"name": "r", "paths": ["x"], "service": {"id": ID}},
                 "errors": [{"type": "field", "field": "paths.1",
                             "message": "should start with: / (fixed path) or ~/ (regex path)"}]},
                {"entity_type": "plugin", "entity_name": "header-echo",
                 "entity": {"name": "header-echo", "config": {"limit": 0}},
                 "errors": [{"type": "field", "field": "config.limit",
                             "message": "value should be between 1 and 1000"}]},
            ]})

    def test_remaining(self) -> None:
        """
        Errors of no entity stay in C{fields}; entity-level messages are C{entity} errors.
        """
        e = error({"foo": 1, "services": [{"id": ID, "name": "a", "host": "h", "tags": ["t"]},
                                          {"id": ID, "host": "h"}]})
        body = e.flattened_body()
        self.assertEqual((body["fields"], body["message"]),
                         ({"foo": "unknown field"}, 'declarative config is invalid: {foo="unknown field"}'))
        self.assertEqual(body["flattened_errors"], [{
            "entity_type": "service", "entity_id": ID, "entity": {"id": ID, "host": "h"},
            "errors": [{"type": "entity", "message": "uniqueness violation: 'services' entity with primary key"
                                                     f" set to '{ID}' already declared"}]}])
