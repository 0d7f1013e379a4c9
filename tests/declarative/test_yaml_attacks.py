"""
Declarative files built to take a node down (L{echogate.declarative.loading}):
each is refused with a L{DeclarativeError} at once.
"""
from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from echogate.declarative import DeclarativeError
from echogate.declarative.loading import load, load_file
from tests.admin.test_attacks_session10 import billion_laughs


class YAMLAttackTests(SynchronousTestCase):
    def test_billionLaughsFile(self) -> None:
        """
        A C{declarative_config} file of nested aliases is refused.
        """
        path = Path(self.mktemp())
        path.write_bytes(billion_laughs(12))
        with self.assertRaises(DeclarativeError) as raised:
            load_file(path, {})
        self.assertIn("aliases expand the document", raised.exception.message + str(raised.exception.body()))

    def test_duplicateKeys(self) -> None:
        """
        A key given twice: the last one counts (as PyYAML and JSON
        readers do, and Kong's loader); documented, not refused.
        """
        loaded = load('_format_version: "3.0"\nservices:\n- {name: a, url: "http://x", name: b}\n', {})
        self.assertEqual([s["name"] for s in loaded.records["services"]], ["b"])
