"""
The entities plugins declare (L{echogate.pdk.entities.PluginEntity}) in
the declarative format: loaded top-level and nested under their parent,
exported after the core's, planned and applied by
L{echogate.declarative.sync}, with the plugins that declare them.
"""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from echogate import declarative
from echogate.declarative import DeclarativeError, sync
from echogate.store.data import ConfigurationData
from echogate.testing import MemoryStore
from tests.examples import example_module

_tokens = example_module("entity-plugin", "tokens_plugin")
TOKENS, TokenAuth = _tokens.TOKENS, _tokens.TokenAuth

PLUGINS = {"token-auth": TokenAuth()}

FILE = """\
_format_version: "3.0"
consumers:
- username: alice
  example_tokens:
  - token: nested
    tags: [ci]
- username: bob
example_tokens:
- token: top
  consumer: bob
  label: deploys
"""


class LoadTests(SynchronousTestCase):
    """
    Loading a file with a plugin's entity.
    """

    def test_topAndNested(self) -> None:
        """
        Records listed at the top level and under their parent are loaded,
        their parent resolved by name or set by the nesting.
        """
        loaded = declarative.load(FILE, PLUGINS, now=5)
        alice, bob = loaded.records["consumers"]
        tokens = {t["token"]: t for t in loaded.records[TOKENS.name]}
        self.assertEqual(tokens["nested"]["consumer"], {"id": alice["id"]})
        self.assertEqual((tokens["top"]["consumer"], tokens["top"]["label"]), ({"id": bob["id"]}, "deploys"))
        self.assertEqual(tokens["nested"]["tags"], ["ci"])

    def test_stableIds(self) -> None:
        """
        A record without an id gets one derived from its endpoint key: the
        same on every load.
        """
        first = declarative.load(FILE, PLUGINS, now=5).records[TOKENS.name]
        second = declarative.load(FILE, PLUGINS, now=9).records[TOKENS.name]
        self.assertEqual([t["id"] for t in first], [t["id"] for t in second])

    def test_withoutThePlugin(self) -> None:
        """
        Without the plugin, its entity is an unknown field, top-level and nested.
        """
        with self.assertRaises(DeclarativeError) as caught:
            declarative.load(FILE, {})
        self.assertEqual(caught.exception.fields["example_tokens"], "unknown field")
        self.assertEqual(caught.exception.fields["consumers"][0]["example_tokens"], "unknown field")

    def test_invalid(self) -> None:
        """
        A record the entity's schema refuses, or a duplicate unique value,
        is reported at its place.
        """
        text = FILE + "- token: nested\n  consumer: alice\n- consumer: alice\n"
        with self.assertRaises(DeclarativeError) as caught:
            declarative.load(text, PLUGINS)
        errors = caught.exception.fields["example_tokens"]
        self.assertIn("uniqueness violation", str(errors[1]))
        self.assertEqual(errors[2]["token"], "required field missing")

    def test_snapshot(self) -> None:
        """
        The records reach the configuration data a DB-less node builds its
        snapshot of, each with its entity's name.
        """
        data = declarative.load(FILE, PLUGINS).configuration_data()
        self.assertEqual(sorted((r["entity"], r["record"]["token"]) for r in data.plugin_entities),
                         [(TOKENS.name, "nested"), (TOKENS.name, "top")])


class ExportTests(SynchronousTestCase):
    """
    Exporting a plugin's entity.
    """

    def test_roundTrip(self) -> None:
        """
        Records export after the core's, their parent a plain id, and load
        back the same.
        """
        loaded = declarative.load(FILE, PLUGINS, now=5)
        data = loaded.configuration_data()
        text = declarative.export(data)
        layout = declarative.parse(text)
        self.assertEqual(list(layout)[-1], TOKENS.name)
        self.assertIsInstance(layout[TOKENS.name][0]["consumer"], str)
        self.assertEqual(declarative.load(text, PLUGINS).records[TOKENS.name],
                         tuple(sorted(loaded.records[TOKENS.name], key=lambda t: t["id"])))

    def test_withoutPlugins(self) -> None:
        """
        Exporting configuration data needs no plugin loaded: the records
        name their entity.
        """
        record = {"id": "22222222-2222-4222-8222-222222222222", "created_at": 1, "updated_at": 1,
                  "consumer": {"id": "11111111-1111-4111-8111-111111111111"}, "token": "t", "label": None,
                  "tags": None}
        data = ConfigurationData(version=1, plugin_entities=({"entity": "other_things", "record": record},))
        layout = declarative.export_layout(data)
        self.assertEqual(layout["other_things"], [dict(record, consumer=record["consumer"]["id"])])


class SyncTests(SynchronousTestCase):
    """
    Planning and applying a file with a plugin's entity.
    """

    def test_applyDeclaresStorage(self) -> None:
        """
        L{sync.apply} declares the plugins' entities on the store, then
        writes them; the same file planned again changes nothing.
        """
        store = MemoryStore()
        loaded = declarative.load(FILE, PLUGINS, now=5)
        changes = sync.plan(self.successResultOf(store.load()), loaded.records)
        self.assertIn("+ example_tokens nested", changes.lines())
        self.successResultOf(sync.apply(store, changes))
        self.assertEqual(sorted(t["token"] for t in store.tables[TOKENS.name].values()), ["nested", "top"])
        again = sync.plan(self.successResultOf(store.load()), declarative.load(FILE, PLUGINS, now=9).records)
        self.assertEqual(again.lines(), [])

    def test_updateAndDelete(self) -> None:
        """
        A changed field is an update of the record matched by its key; a
        record the file lacks is deleted.
        """
        store = MemoryStore()
        first = declarative.load(FILE, PLUGINS, now=5)
        self.successResultOf(sync.apply(store, sync.plan(ConfigurationData(version=0), first.records)))
        changed = FILE.replace("label: deploys", "label: releases").replace(
            "  example_tokens:\n  - token: nested\n    tags: [ci]\n", "")
        changes = sync.plan(self.successResultOf(store.load()), declarative.load(changed, PLUGINS).records)
        self.assertEqual(changes.lines(), ["~ example_tokens top (label)", "- example_tokens nested"])

    def test_undeclaredLeftAlone(self) -> None:
        """
        Records of an entity no loaded plugin declares are not deleted.
        """
        record = {"id": "22222222-2222-4222-8222-222222222222", "created_at": 1, "updated_at": 1,
                  "token": "t", "tags": None}
        current = ConfigurationData(version=1, plugin_entities=({"entity": "other_things", "record": record},))
        self.assertEqual(sync.plan(current, declarative.load(FILE, PLUGINS).records, delete=True).count("delete"),
                         0)
