"""
Writing entities in the declarative format, as Kong's C{db_export} writes
them: C{_format_version: "3.0"}, C{_transform: false} (secrets are already
hashed), then one top-level list per entity in dependency order, every
field written (null included), foreign keys as plain ids, records ordered
by id. The entities plugins declare follow the core's, top-level lists
named after them (their parent a plain id too), found in the records
themselves: exporting needs no plugin loaded. Loading the text gives the
same records back.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import attrs
import yaml

from echogate.declarative.layout import ENTITY_ORDER, FORMAT_VERSION, entity_order
from echogate.entities.schemas import ENTITIES
from echogate.store.data import ConfigurationData

__all__ = ["export", "export_layout", "by_entity", "FORMATS"]

#: The formats L{export} writes.
FORMATS = ("yaml", "json")


class _Dumper(yaml.SafeDumper):
    """
    PyYAML's safe dumper, writing text of several lines (PEM) as a literal block.
    """


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


#: What a store holds that no declarative file lists.
_NOT_DECLARATIVE = frozenset(f.name for f in attrs.fields(ConfigurationData)) - set(ENTITY_ORDER)

#: The fields naming the parent of a plugin's entity.
_PARENT_FIELDS = ("consumer", "service", "route")


def _flat(entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
    known = ENTITIES.get(entity)
    foreign = known.foreign if known is not None else _PARENT_FIELDS
    out: dict[str, Any] = {}
    for key, value in record.items():
        if entity == "certificates" and key == "snis":
            continue
        if key in foreign and isinstance(value, Mapping):
            value = value.get("id")
        out[key] = value
    return out


def by_entity(data: ConfigurationData) -> dict[str, list[dict[str, Any]]]:
    """
    The declarative entities of C{data} by name: the core's
    (L{ENTITY_ORDER}), then those of its C{plugin_entities}, by entity
    name.
    """
    found: dict[str, list[dict[str, Any]]] = {
        f.name: list(getattr(data, f.name)) for f in attrs.fields(ConfigurationData) if f.name in ENTITY_ORDER}
    for row in data.plugin_entities:
        found.setdefault(str(row["entity"]), []).append(row["record"])
    return found


def export_layout(records: Mapping[str, Iterable[Mapping[str, Any]]] | ConfigurationData) -> dict[str, Any]:
    """
    The data L{export} writes: the declarative layout of C{records}.

    @param records: entity name to records (Kong-shaped, as the store
        returns them), or a L{ConfigurationData}. Entities that are not
        declarative (health overrides) are left out; those plugins
        declare come after the core's, by name.
    """
    if isinstance(records, ConfigurationData):
        records = by_entity(records)
    layout: dict[str, Any] = {"_format_version": FORMAT_VERSION, "_transform": False}
    for entity in entity_order(also=(e for e in records if e not in _NOT_DECLARATIVE)):
        rows = sorted((_flat(entity, r) for r in records.get(entity, ())), key=lambda r: str(r.get("id")))
        if rows:
            layout[entity] = rows
    return layout


def export(records: Mapping[str, Iterable[Mapping[str, Any]]] | ConfigurationData, *,
           format: str = "yaml") -> str:
    """
    C{records} as a declarative configuration file.

    @param records: see L{export_layout}.
    @param format: C{"yaml"} or C{"json"}.
    @raise ValueError: another format.
    """
    layout = export_layout(records)
    if format == "yaml":
        return yaml.dump(layout, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False)
    if format == "json":
        return json.dumps(layout, indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
