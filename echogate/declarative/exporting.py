"""
Writing entities in the declarative format, as Kong's C{db_export} writes
them: C{_format_version: "3.0"}, C{_transform: false} (secrets are already
hashed), then one top-level list per entity in dependency order, every
field written (null included), foreign keys as plain ids, records ordered
by id. Loading the text gives the same records back.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import attrs
import yaml

from echogate.declarative.layout import ENTITY_ORDER, FORMAT_VERSION
from echogate.entities.schemas import ENTITIES
from echogate.store.data import ConfigurationData

__all__ = ["export", "export_layout", "FORMATS"]

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


def _flat(entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
    foreign = ENTITIES[entity].foreign
    out: dict[str, Any] = {}
    for key, value in record.items():
        if entity == "certificates" and key == "snis":
            continue
        if key in foreign and isinstance(value, Mapping):
            value = value.get("id")
        out[key] = value
    return out


def export_layout(records: Mapping[str, Iterable[Mapping[str, Any]]] | ConfigurationData) -> dict[str, Any]:
    """
    The data L{export} writes: the declarative layout of C{records}.

    @param records: entity name to records (Kong-shaped, as the store
        returns them), or a L{ConfigurationData}. Entities that are not
        declarative (health overrides) are left out.
    """
    if isinstance(records, ConfigurationData):
        records = {f.name: getattr(records, f.name) for f in attrs.fields(ConfigurationData)
                   if f.name in ENTITY_ORDER}
    layout: dict[str, Any] = {"_format_version": FORMAT_VERSION, "_transform": False}
    for entity in ENTITY_ORDER:
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
