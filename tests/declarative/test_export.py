"""
Tests for L{echogate.declarative.export}: Kong's db_export layout, and
export, load, export giving the same text.
"""
from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from echogate.declarative import export, load
from tests.declarative.test_load import EVERY_ENTITY, NOW, loads
from tests.entities.test_entities import PLUGINS


class ExportTests(SynchronousTestCase):
    """
    Export writes every record flat, references by id.
    """

    def test_layout(self) -> None:
        """
        Format 3.0, C{_transform: false}, foreign keys as plain ids.
        """
        loaded = loads(EVERY_ENTITY)
        layout = json.loads(export(loaded.records, format="json"))
        self.assertEqual((layout["_format_version"], layout["_transform"]), ("3.0", False))
        self.assertEqual(layout["routes"][0]["service"], loaded.records["services"][0]["id"])
        self.assertEqual(layout["routes"][0]["methods"], None)

    def test_roundTrip(self) -> None:
        """
        load(export(x)) gives the same records, and exporting them the same
        text, in YAML and JSON, however late it is loaded again.
        """
        loaded = loads(EVERY_ENTITY)
        for format in ("yaml", "json"):
            with self.subTest(format=format):
                text = loaded.export(format)
                again = load(text, PLUGINS, now=NOW + 1000)
                self.assertEqual(dict(again.records), dict(loaded.records))
                self.assertEqual(again.export(format), text)
                self.assertEqual(again.config_hash, loaded.config_hash)

    def test_configurationData(self) -> None:
        """
        A L{ConfigurationData <echogate.store.data.ConfigurationData>} exports like its records.
        """
        loaded = loads(EVERY_ENTITY)
        self.assertEqual(export(loaded.configuration_data()), loaded.export())

    def test_unknownFormat(self) -> None:
        """
        Only yaml and json.
        """
        self.assertRaises(ValueError, export, {}, format="toml")
