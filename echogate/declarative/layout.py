"""
The shape of a declarative configuration file: its format versions, the
entities it lists (in the order they are loaded and exported), where
entities may nest, how entities refer to each other by name, and the ids
given to entities the file does not give one.
"""
from __future__ import annotations

import json
import re
import types
import uuid
from typing import Any, Iterable, Mapping

from echogate.entities.credentials import ACLS, BASICAUTH, JWT, KEYAUTH
from echogate.entities.plugin_entities import declarations, entity_types
from echogate.entities.schemas import ENTITIES, EntityType

__all__ = [
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "ENTITY_ORDER",
    "NESTED",
    "REFERENCE_KEYS",
    "META_KEYS",
    "IGNORED_KEYS",
    "UNIQUE_TOGETHER",
    "derived_id",
    "natural_key",
    "migrate_path",
    "entity_order",
    "nesting",
    "types_of",
]

#: The format version echogate writes.
FORMAT_VERSION = "3.0"

#: The format versions a file may declare (Kong 3's list: the older two
#: have their regex route paths migrated, see L{migrate_path}).
FORMAT_VERSIONS = ("1.1", "2.1", "3.0")

#: Every entity a file may list, in dependency order: an entity's foreign
#: keys only name entities before it. Loading resolves references and
#: exports list entities in this order.
ENTITY_ORDER: tuple[str, ...] = (
    "certificates", "ca_certificates", "snis", "services", "routes", "consumers", "upstreams",
    "targets", "plugins", KEYAUTH, BASICAUTH, JWT, ACLS,
)

#: parent entity -> {nested list key: the child's foreign key to the parent}.
NESTED: Mapping[str, Mapping[str, str]] = types.MappingProxyType({
    "services": {"routes": "service", "plugins": "service"},
    "routes": {"plugins": "route"},
    "consumers": {"plugins": "consumer", KEYAUTH: "consumer", BASICAUTH: "consumer",
                  JWT: "consumer", ACLS: "consumer"},
    "upstreams": {"targets": "upstream"},
    "certificates": {"snis": "certificate"},
})

#: entity -> the unique field a reference may name it by besides its id
#: (Kong's endpoint keys: C{service: my-service}, C{consumer: alice}).
REFERENCE_KEYS: Mapping[str, str] = types.MappingProxyType({
    "services": "name",
    "routes": "name",
    "consumers": "username",
    "upstreams": "name",
    "snis": "name",
})

#: The top-level keys that are not entities.
META_KEYS = ("_format_version", "_transform", "_comment", "_ignore")

#: Keys any entity may carry that are not its fields (Kong's extra attributes).
IGNORED_KEYS = ("_comment", "_ignore")

#: entity -> fields unique together (a plugin's name within its scope, an
#: acl's group within its consumer, a target within its upstream), as the
#: stores enforce them.
UNIQUE_TOGETHER: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "plugins": ("name", "service", "route", "consumer"),
    ACLS: ("consumer", "group"),
    "targets": ("upstream", "target"),
})

# Kong 3's namespace for the ids of declarative entities: an entity named by a
# unique key gets uuid5(uuid5(namespace, entity), key), as Kong derives it.
_NAMESPACE = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")

#: entity -> the unique field whose value alone derives its id.
_NAMED: Mapping[str, str] = types.MappingProxyType({
    **REFERENCE_KEYS,
    KEYAUTH: "key",
    BASICAUTH: "username",
    JWT: "key",
})


def _fk(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return ""


def entity_order(plugins: Mapping[str, Any] | None = None, also: Iterable[str] = ()) -> tuple[str, ...]:
    """
    L{ENTITY_ORDER}, then the entities the plugins in C{plugins} declare
    (L{echogate.entities.plugin_entities.declarations}, in the plugins'
    order), then the names of C{also} not among them, sorted: plugin
    entities only refer to consumers, services and routes, so they come
    after every core entity.

    @raise echogate.entities.plugin_entities.ConflictingEntity: two
        plugins declare one entity.
    """
    order = list(ENTITY_ORDER)
    for declaration in declarations(plugins or {}):
        order.append(declaration.name)
    order += sorted(set(also) - set(order))
    return tuple(order)


def nesting(plugins: Mapping[str, Any] | None = None) -> Mapping[str, Mapping[str, str]]:
    """
    L{NESTED} with the entities the plugins in C{plugins} declare under
    their parents, by entity name (C{consumers: [{username: alice,
    example_tokens: [...]}]}).
    """
    found = {parent: dict(children) for parent, children in NESTED.items()}
    for declaration in declarations(plugins or {}):
        if declaration.parent is not None and declaration.parent_field is not None:
            found.setdefault(declaration.parent, {})[declaration.name] = declaration.parent_field
    return types.MappingProxyType({parent: types.MappingProxyType(children)
                                   for parent, children in found.items()})


def types_of(plugins: Mapping[str, Any] | None = None) -> Mapping[str, EntityType]:
    """
    Every entity's L{EntityType}: the core's and the plugins' in C{plugins}.
    """
    return entity_types(plugins or {})


def natural_key(entity: str, body: Mapping[str, Any], kind: EntityType | None = None) -> str:
    """
    What identifies an entity of the file besides its id: its unique name
    (for services, routes, consumers, upstreams, snis and credentials), or
    the ids of what it belongs to and the fields that identify it there
    (a plugin's name and scope, a target's upstream and target, an acl's
    consumer and group, a certificate's PEM), or else its foreign keys and
    every field it sets. Foreign keys in C{body} must be resolved
    (C{{"id": ...}}). An entity a plugin declares (C{kind}, its type) is
    named by its endpoint key, when it has one.
    """
    named = _NAMED.get(entity)
    if named is None and entity not in ENTITIES and kind is not None and kind.declaration is not None:
        named = kind.declaration.endpoint_key
    if named is not None and isinstance(body.get(named), str):
        return str(body[named])
    parts: list[Any]
    if entity == "consumers" and isinstance(body.get("custom_id"), str):
        parts = ["custom_id", body["custom_id"]]
    elif entity == "plugins":
        parts = [body.get("name"), _fk(body, "route"), _fk(body, "service"), _fk(body, "consumer")]
    elif entity == "targets":
        parts = [_fk(body, "upstream"), body.get("target")]
    elif entity == ACLS:
        parts = [_fk(body, "consumer"), body.get("group")]
    elif entity in ("certificates", "ca_certificates"):
        parts = [body.get("cert"), body.get("cert_alt")]
    elif entity in (KEYAUTH, JWT):
        # No key given (one is generated): the consumer, and the position
        # among such credentials (counted by the caller), not the secret.
        parts = [_fk(body, "consumer")]
    else:
        known = ENTITIES.get(entity) or kind
        foreign = known.foreign if known is not None else ("consumer", "service", "route")
        parts = [{k: v for k, v in sorted(body.items()) if k not in ("id", "created_at", "updated_at")},
                 [_fk(body, f) for f in foreign]]
    return json.dumps([entity, *parts], sort_keys=True, separators=(",", ":"), default=str)


def derived_id(entity: str, key: str) -> str:
    """
    The id of an entity of C{entity} whose natural key (L{natural_key}) is
    C{key}: a version 5 UUID, the same on every load.
    """
    return str(uuid.uuid5(uuid.uuid5(_NAMESPACE, entity), key))


# ---------------------------------------------------------------------------
# Format versions 1.1 and 2.1: regex paths did not start with "~".

_PLAIN_PATH = re.compile(r"^[A-Za-z0-9.\-_~/%]*\Z")
_TRIPLET = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]\Z")
_RESERVED = frozenset("!#$%&'()*+,/:;=?@[]")
_REGEX_META = frozenset(".^-{}\\|")


def _decode_plain(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if _UNRESERVED.match(char) else match.group(0).upper()


def _decode_regex(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if char in _RESERVED:
        return match.group(0).upper()
    if char in _REGEX_META:
        return "\\" + char
    return char


def migrate_path(path: Any) -> Any:
    """
    A route path of a format 1.1 or 2.1 file as format 3.0 reads it: a path
    of only unreserved characters and C{/} and C{%} stays a prefix (its
    percent-encoded unreserved characters decoded); any other is a regex
    and gets the C{~} that marks one since 3.0 (its percent-encoded
    characters decoded, except reserved ones; regex metacharacters
    decoded escaped). Values that are not strings are left for validation.
    """
    if not isinstance(path, str):
        return path
    if _PLAIN_PATH.match(path):
        return _TRIPLET.sub(_decode_plain, path)
    return "~" + _TRIPLET.sub(_decode_regex, path)
