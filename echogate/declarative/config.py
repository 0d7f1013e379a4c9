"""
A loaded declarative configuration (L{Declarative}): the complete records
of every entity, what a DB-less node's snapshot is built from
(L{Declarative.configuration_data}), and their hash.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Mapping

import attrs

from echogate.declarative.exporting import export
from echogate.declarative.layout import ENTITY_ORDER, entity_order
from echogate.store.data import ConfigurationData

__all__ = ["Declarative", "Records", "content_hash"]

_TIMESTAMPS = ("created_at", "updated_at")


def content_hash(records: Mapping[str, tuple[dict[str, Any], ...]]) -> str:
    """
    The md5 (hex) of the canonical JSON of C{records}: each entity's records
    ordered by id, keys sorted, without C{created_at} and C{updated_at}, so
    that the same configuration loaded at another time hashes the same.
    """
    canonical = {
        entity: sorted(({k: v for k, v in r.items() if k not in _TIMESTAMPS} for r in rows),
                       key=lambda r: str(r.get("id")))
        for entity, rows in sorted(records.items()) if rows
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class Records(Mapping[str, tuple[dict[str, Any], ...]]):
    """
    A loaded configuration's records by entity (read-only), with the
    plugins they were loaded with (C{plugins}): what
    L{echogate.declarative.sync.plan} needs to know of the entities those
    plugins declare, and L{echogate.declarative.sync.apply} to declare
    their storage (L{echogate.entities.plugin_entities.declare_storage})
    before writing them.
    """

    __slots__ = ("_records", "plugins")

    def __init__(self, records: Mapping[str, tuple[dict[str, Any], ...]],
                 plugins: Mapping[str, Any] | None = None):
        self._records = dict(records)
        self.plugins: Mapping[str, Any] = plugins or {}

    def __getitem__(self, entity: str) -> tuple[dict[str, Any], ...]:
        return self._records[entity]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<Records {', '.join(e for e, rows in self._records.items() if rows) or 'empty'}>"


@attrs.frozen
class Declarative:
    """
    A valid declarative configuration, every entity complete.

    @ivar format_version: the C{_format_version} the file declared.
    @ivar transform: its C{_transform} (whether secrets were hashed on load).
    @ivar records: entity name (every one of L{ENTITY_ORDER}, then those
        the loaded plugins declare) to its records, Kong-shaped dicts as
        the store returns them (foreign keys C{{"id": ...}}), in the order
        of the file; a L{Records}, knowing the plugins.
    @ivar config_hash: L{content_hash} of C{records}.
    """

    format_version: str
    transform: bool
    records: Mapping[str, tuple[dict[str, Any], ...]]
    config_hash: str

    @classmethod
    def build(cls, format_version: str, transform: bool,
              records: Mapping[str, tuple[dict[str, Any], ...]],
              plugins: Mapping[str, Any] | None = None) -> "Declarative":
        """
        A L{Declarative} of C{records} (missing entities: none), its hash computed.

        @param plugins: the plugins the records were loaded with (their
            entities are listed after the core's).
        """
        order = entity_order(plugins, also=records)
        full = {entity: tuple(records.get(entity, ())) for entity in order}
        return cls(format_version, transform, Records(full, plugins), content_hash(full))

    @property
    def version(self) -> int:
        """
        A version number made of L{config_hash} (its first 60 bits): the same
        for the same content, 0 <= version < 2**60.
        """
        return int(self.config_hash[:15], 16)

    def configuration_data(self, version: int | None = None) -> ConfigurationData:
        """
        What the data plane builds a snapshot from.

        @param version: the snapshot's version (default: L{version}).
        """
        core = {entity: rows for entity, rows in self.records.items() if entity in ENTITY_ORDER}
        owned = tuple({"entity": entity, "record": record}
                      for entity, rows in self.records.items() if entity not in ENTITY_ORDER
                      for record in rows)
        return ConfigurationData(self.version if version is None else version, **core,
                                 plugin_entities=owned)

    def export(self, format: str = "yaml") -> str:
        """
        This configuration in the declarative format (see
        L{echogate.declarative.exporting.export}).
        """
        return export(self.records, format=format)
