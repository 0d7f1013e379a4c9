"""
Tests for the Admin API's answer to a plugin entity naming a plugin the
node does not run: no such plugin (with the closest name), or a plugin
installed but not enabled with C{--plugins}.
"""
from __future__ import annotations

from typing import Any

from treq.testing import StubTreq

from echogate.admin import AdminAPI
from echogate.registry import EnabledPlugins
from tests.admin.test_admin import PLUGINS, AdminTestCase


def _enabled(installed: set[str]) -> EnabledPlugins:
    enabled = EnabledPlugins(PLUGINS)
    enabled.installed = frozenset(installed | set(PLUGINS))
    return enabled


class PluginNameTests(AdminTestCase):
    """
    C{POST /plugins} with a name the node does not run: Kong's 400 schema
    violation, its C{name} field saying which case it is.
    """

    def make_api(self, **kw: Any) -> AdminAPI:
        kw.setdefault("plugins", _enabled({"key-auth", "rate-limiting"}))
        return super().make_api(**kw)

    def name_error(self, name: str) -> Any:
        body = self.error("POST", "/plugins", 400, json_body={"name": name})
        self.assertEqual((body["code"], body["name"]), (2, "schema violation"))
        return body["fields"]["name"]

    def test_noSuchPluginWithCloseMatch(self) -> None:
        """
        A name no installed plugin has is no such plugin, with the closest
        installed name.
        """
        self.assertEqual(self.name_error("key-auht"),
                         "no such plugin: 'key-auht' is not installed on this node; did you mean 'key-auth'?")

    def test_noSuchPluginWithoutCloseMatch(self) -> None:
        """
        With nothing close, no such plugin and no suggestion.
        """
        self.assertEqual(self.name_error("zzzzzz"), "no such plugin: 'zzzzzz' is not installed on this node")

    def test_installedButNotEnabled(self) -> None:
        """
        An installed plugin left out of C{--plugins}: Kong's words, which
        say how to enable it.
        """
        self.assertEqual(self.name_error("rate-limiting"),
                         "plugin 'rate-limiting' not enabled; add it to the 'plugins' configuration property")

    def test_enabledAccepted(self) -> None:
        """
        An enabled plugin is created as before.
        """
        self.ok("POST", "/plugins", 201, json_body={"name": "echo"})

    def test_withoutInstalledNamesKongsWords(self) -> None:
        """
        Plugins given as a plain mapping (no installed names known): Kong's
        words for every unknown name.
        """
        self.treq = StubTreq(self.make_api(plugins=dict(PLUGINS)).resource())
        self.assertEqual(self.name_error("key-auht"),
                         "plugin 'key-auht' not enabled; add it to the 'plugins' configuration property")
