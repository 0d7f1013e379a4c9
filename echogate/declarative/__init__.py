"""
Declarative configuration in Kong's format (C{kong.yml}): every entity of
a node in one YAML or JSON file, loaded whole or not at all. Used by
DB-less mode and the console commands; the format is described in
C{docs/declarative.md}.

  - L{load}, L{load_file}, L{load_data}: a file's text (or parsed data) to
    a L{Declarative}, or a L{DeclarativeError} listing every error with its
    path (Kong's nested and flattened shapes).
  - L{Declarative}: the records per entity, their L{config_hash
    <Declarative.config_hash>}, and the
    L{ConfigurationData <echogate.store.data.ConfigurationData>} a snapshot
    is built from.
  - L{export}: records (or a L{ConfigurationData
    <echogate.store.data.ConfigurationData>}) back to the format.
"""
from echogate.declarative.config import Declarative, content_hash
from echogate.declarative.exporting import FORMATS, export, export_layout
from echogate.declarative.layout import ENTITY_ORDER, FORMAT_VERSION, FORMAT_VERSIONS, NESTED
from echogate.declarative.loading import load, load_data, load_file, parse
from echogate.declarative.problems import DeclarativeError

__all__ = [
    "Declarative",
    "DeclarativeError",
    "ENTITY_ORDER",
    "FORMATS",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "NESTED",
    "content_hash",
    "export",
    "export_layout",
    "load",
    "load_data",
    "load_file",
    "parse",
]
