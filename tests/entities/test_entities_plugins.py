"""
Tests for the plugin entity of L{echogate.entities.schemas}: Kong's defaults, the
config checked and completed by the named plugin's schema, and
L{echogate.entities.schemas.plugin_schema} (see L{tests.entities.test_entities}).
"""
from __future__ import annotations

from echogate.entities.schemas import ENTITIES, plugin_schema
from echogate.entities.writes import prepare_insert
from echogate.errors import SchemaViolation
from echogate.schema import Record
from echogate.schema.fields import Integer
from tests.entities.test_entities import ECHO, ID, NOW, OTHER_ID, SERVICE_ID, EntityCase, FakePlugin, insert


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

    def test_noConfigSchema(self) -> None:
        """
        A plugin without a C{config_schema} (L{echogate.plugin.GatewayPlugin}'s
        default) takes no settings: its config is C{{}}, and a setting is
        refused as an unknown field (not a 500).
        """
        plugin = FakePlugin("bare", None)  # type: ignore[arg-type]
        record = prepare_insert("plugins", {"name": "bare"}, plugins={"bare": plugin}, now=NOW, new_id=ID)
        self.assertEqual(record["config"], {})
        with self.assertRaises(SchemaViolation):
            prepare_insert("plugins", {"name": "bare", "config": {"x": 1}}, plugins={"bare": plugin}, now=NOW,
                           new_id=ID)

    def test_nullableConfigSchema(self) -> None:
        """
        A plugin config schema with C{default=None} still gets its
        defaults when absent.
        """
        plugin = FakePlugin("p", Record({"a": Integer(default=1)}, default=None))
        record = prepare_insert("plugins", {"name": "p"}, plugins={"p": plugin}, now=NOW,
                                new_id=ID)
        self.assertEqual(record["config"], {"a": 1})
