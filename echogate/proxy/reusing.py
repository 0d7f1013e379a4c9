"""
What a snapshot's plugin and credential indexes were built from
(L{Sources}), so that the next snapshot takes them from the one it
replaces when that did not change: a route written on a node with 10,000
plugin configs and 10,000 consumers rebuilt both indexes in one step of
its compile, 110 ms of the reactor thread for the plugin index alone
(docs/performance.md). The comparison runs in steps too (a thousand
records each), since a store may hand over equal records as new objects.
"""
from __future__ import annotations

from typing import Any, Generator, Mapping

import attrs

from echogate.pdk.credentials import ACLS, BASICAUTH, JWT, KEYAUTH
from echogate.store.data import ConfigurationData

__all__ = ["Sources", "same_records", "CHUNK"]

#: Records compared in one step.
CHUNK = 1000

#: The tables the credential index is built from.
_CREDENTIAL_TABLES = ("consumers", KEYAUTH, BASICAUTH, JWT, ACLS, "plugin_entities")


def same_records(new: tuple[Any, ...], old: tuple[Any, ...]) -> Generator[None, None, bool]:
    """
    Whether two tables of records are equal, compared L{CHUNK} records a
    step (a generator that yields between steps and returns the answer).
    Records that are the same object compare at once.
    """
    if new is old:
        return True
    if len(new) != len(old):
        return False
    for start in range(0, len(new), CHUNK):
        if new[start:start + CHUNK] != old[start:start + CHUNK]:
            return False
        yield None
    return True


def _same_plugins(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """
    Whether two mappings of loaded plugins hold the same plugin objects
    under the same names (a plugin reloaded by C{--dev} is a new object).
    """
    return len(new) == len(old) and all(old.get(name, _ABSENT) is plugin for name, plugin in new.items())


_ABSENT = object()


@attrs.frozen(eq=False)
class Sources:
    """
    The inputs of a snapshot's indexes.

    @ivar plugins: the loaded plugins by name, as they were (a copy).
    @ivar missing: the C{missing_plugins} setting.
    @ivar plugin_records: the plugin configs.
    @ivar credential_tables: the consumers, the credential tables and the
        plugin entities' rows, in L{_CREDENTIAL_TABLES}' order.
    """

    plugins: Mapping[str, Any]
    missing: str
    plugin_records: tuple[dict[str, Any], ...]
    credential_tables: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, data: ConfigurationData, plugins: Mapping[str, Any], missing: str) -> "Sources":
        return cls(dict(plugins), missing, tuple(data.plugins),
                   tuple(tuple(getattr(data, table, ())) for table in _CREDENTIAL_TABLES))

    def plugin_index(self, previous: Any) -> Generator[None, None, Any]:
        """
        The plugin index (an L{echogate.proxy.plan.PluginIndex}) of these
        sources: C{previous}'s (a snapshot, or C{None}) with its plans
        forgotten, when built from the same, else a new one, built in steps
        and keeping C{previous}'s entries of the records that did not change.
        """
        from echogate.proxy.plan import PluginIndex

        if previous is not None and (yield from self.same_plugin_index(previous.sources)):
            return previous.plugins.fresh()
        return (yield from PluginIndex.building(
            self.plugin_records, self.plugins, self.missing,
            previous.plugins if previous is not None and isinstance(previous.plugins, PluginIndex) else None))

    def credential_index(self, data: ConfigurationData, previous: Any) -> Generator[None, None, Any]:
        """
        The credential index (an L{echogate.pdk.credentials.CredentialIndex})
        of these sources: C{previous}'s (a snapshot, or C{None}) when built
        from the same, else a new one of C{data}.
        """
        from echogate.pdk.credentials import CredentialIndex

        if previous is not None and (yield from self.same_credentials(previous.sources)):
            return previous.credentials
        return CredentialIndex.build(
            data, [entity for plugin in self.plugins.values() for entity in getattr(plugin, "entities", ())])

    def same_plugin_index(self, old: "Sources | None") -> Generator[None, None, bool]:
        """
        Whether a plugin index built from C{old} is this one's.
        """
        if old is None or old.missing != self.missing or not _same_plugins(self.plugins, old.plugins):
            return False
        return (yield from same_records(self.plugin_records, old.plugin_records))

    def same_credentials(self, old: "Sources | None") -> Generator[None, None, bool]:
        """
        Whether a credential index built from C{old} is this one's (the
        plugins' declared entities included).
        """
        if old is None or not _same_plugins(self.plugins, old.plugins):
            return False
        for new_table, old_table in zip(self.credential_tables, old.credential_tables):
            if not (yield from same_records(new_table, old_table)):
                return False
        return True
