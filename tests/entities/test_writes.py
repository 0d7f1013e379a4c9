"""
Tests for L{echogate.entities.writes}: PUT (L{prepare_replace}), PATCH
(L{prepare_update}) and the form schemas of L{form_schema} (see
L{tests.entities.test_entities}).
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.admin.forms import decode_form
from echogate.entities.schemas import ENTITIES
from echogate.entities.writes import form_schema, prepare_replace, prepare_update
from echogate.errors import SchemaViolation
from tests.entities.test_entities import ID, NOW, OTHER_ID, PLUGINS, SERVICE_ID, insert


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
                              record["path"]), fields, f"row url={url!r} fields={fields!r}")

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
