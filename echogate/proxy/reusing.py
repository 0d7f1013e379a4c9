"""
What a snapshot's plugin and credential indexes were built from
(L{Sources}), so that the next snapshot takes them from the one it
replaces when that did not change: a route written on a node with 10,000
plugin configs and 10,000 consumers rebuilt both indexes in one step of
its compile, 110 ms of the reactor thread for the plugin index alone
(docs/performance.md). The comparison runs in steps too (a thousand
records each), since a store may hand over equal records as new objects.
When some of the credential tables did change, the new credential index
still takes the parts of the previous one whose tables did not
(L{echogate.pdk.credentials.CredentialIndex.building}).
"""
from __future__ import annotations

from typing import Any, Generator, Mapping

import attrs

from echogate.pdk.credentials import TABLES
from echogate.store.data import ConfigurationData

__all__ = ["Sources", "same_records", "kept_records", "CHUNK"]

#: Records compared in one step.
CHUNK = 1000

#: The tables the credential index is built from.
_CREDENTIAL_TABLES = TABLES


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


def kept_records(new: tuple[Any, ...], old: tuple[Any, ...]) -> Generator[None, None, int | None]:
    """
    C{len(old)} when C{new} begins with C{old}'s records (equal records: the
    same table, or one that records were added to at its end), else
    C{None}. Compared L{CHUNK} records a step, as L{same_records}.
    """
    if new is old:
        return len(new)
    if len(new) < len(old):
        return None
    for start in range(0, len(old), CHUNK):
        end = min(start + CHUNK, len(old))
        if new[start:end] != old[start:end]:
            return None
        yield None
    return len(old)


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
        from the same, else a new one of C{data}, built in steps and taking
        the parts of C{previous}'s whose tables did not change.
        """
        from echogate.pdk.credentials import CredentialIndex

        declared = [entity for plugin in self.plugins.values() for entity in getattr(plugin, "entities", ())]
        if previous is None or previous.sources is None:
            return (yield from CredentialIndex.building(data, declared))
        kept = yield from self.kept_credentials(previous.sources)
        if all(kept.get(name) == len(table) for name, table in zip(_CREDENTIAL_TABLES, self.credential_tables)):
            return previous.credentials
        earlier = previous.credentials if isinstance(previous.credentials, CredentialIndex) else None
        return (yield from CredentialIndex.building(data, declared, earlier, kept))

    def same_plugin_index(self, old: "Sources | None") -> Generator[None, None, bool]:
        """
        Whether a plugin index built from C{old} is this one's.
        """
        if old is None or old.missing != self.missing or not _same_plugins(self.plugins, old.plugins):
            return False
        return (yield from same_records(self.plugin_records, old.plugin_records))

    def kept_credentials(self, old: Sources) -> Generator[None, None, dict[str, int]]:
        """
        For each credential table (of L{_CREDENTIAL_TABLES}) that begins
        with all of C{old}'s records, how many those are (see
        L{kept_records}): what a credential index built from C{old} has of
        this one's. The plugin entities' rows count only with the same
        plugins (their declarations may differ).
        """
        kept = {}
        plugins = _same_plugins(self.plugins, old.plugins)
        for name, new_table, old_table in zip(_CREDENTIAL_TABLES, self.credential_tables, old.credential_tables):
            if name != "plugin_entities" or plugins:
                count = yield from kept_records(new_table, old_table)
                if count is not None:
                    kept[name] = count
        return kept
