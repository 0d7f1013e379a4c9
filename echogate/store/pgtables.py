"""
How entities are laid out in PostgreSQL, for L{echogate.store.postgres}: each
entity's table (the record fields that are real columns, its foreign keys,
the endpoint keys a look-up accepts), the row written for a record, and the
L{echogate.errors} exception for each constraint a write can violate.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any, Mapping

import attrs
import psycopg2
from psycopg2.extras import Json

from echogate.errors import (
    ForeignKeyViolation,
    PrimaryKeyViolation,
    SchemaViolation,
    UniqueViolation,
)
from echogate.store.pgdriver import FOREIGN_KEY_VIOLATION, NOT_NULL_VIOLATION, RESTRICT_VIOLATION, UNIQUE_VIOLATION

__all__ = ["Table", "CANONICAL_UUID", "GENERIC", "Declared", "key_text", "parses_as_uuid", "table_of", "translate"]


@attrs.frozen
class Table:
    """
    How one entity is stored.

    @ivar columns: the record fields that also have a column of that name.
    @ivar foreign: record field to the table it references (its column is
        C{<field>_id}).
    @ivar keys: the endpoint keys L{echogate.store.postgres.PostgresStore.get}
        accepts besides the id, in order of preference.
    """

    name: str
    columns: tuple[str, ...] = ()
    foreign: Mapping[str, str] = attrs.field(factory=dict)
    keys: tuple[str, ...] = ()

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        The column values for C{record}.
        """
        values: dict[str, Any] = {
            "id": _id_of(record.get("id"), "id"),
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
            "tags": list(record["tags"]) if record.get("tags") is not None else None,
        }
        for column in self.columns:
            values[column] = record.get(column)
        for field in self.foreign:
            ref = record.get(field)
            values[f"{field}_id"] = None if ref is None else _id_of(
                ref.get("id") if isinstance(ref, Mapping) else ref, field)
        values["entity"] = Json(dict(record))
        return values


_TABLES = {
    "services": Table("services", ("name",), {"client_certificate": "certificates"}, keys=("name",)),
    "routes": Table("routes", ("name",), {"service": "services"}, keys=("name",)),
    "consumers": Table("consumers", ("username", "custom_id"),
                       keys=("username", "custom_id")),
    "plugins": Table("plugins", ("name",),
                     {"service": "services", "route": "routes", "consumer": "consumers"}),
    # Consumers' credentials (echogate.entities.credentials), deleted with their consumer.
    "keyauth_credentials": Table("keyauth_credentials", ("key",), {"consumer": "consumers"},
                                 keys=("key",)),
    "basicauth_credentials": Table("basicauth_credentials", ("username",),
                                   {"consumer": "consumers"}, keys=("username",)),
    "jwt_secrets": Table("jwt_secrets", ("key",), {"consumer": "consumers"}, keys=("key",)),
    "acls": Table("acls", (), {"consumer": "consumers"}),
    # Load balancing (echogate.entities.upstreams): targets and health
    # overrides are deleted with their upstream; a target's "target" is
    # unique within its upstream and looked up there by the Admin API.
    "upstreams": Table("upstreams", ("name",), keys=("name",)),
    "targets": Table("targets", ("target",), {"upstream": "upstreams"}),
    "target_health_overrides": Table("target_health_overrides", ("address",),
                                     {"upstream": "upstreams", "target": "targets"}),
    # TLS (echogate.entities.certificates): snis are deleted with their
    # certificate; a certificate a service uses cannot be deleted.
    "certificates": Table("certificates"),
    "snis": Table("snis", ("name",), {"certificate": "certificates"}, keys=("name",)),
    "ca_certificates": Table("ca_certificates", ("cert_digest",)),
}

#: The table of the entities plugins declare (L{Declared}): each row also
#: names its entity (C{entity_name}); a record's C{consumer}, C{service}
#: or C{route} is a foreign key, deleted with its parent.
GENERIC = Table("plugin_entities", (), {"consumer": "consumers", "service": "services", "route": "routes"})


@attrs.frozen
class Declared:
    """
    How the store keeps an entity a plugin declares, in L{GENERIC}.

    @ivar name: the entity.
    @ivar unique: the fields whose values are unique among its records
        (rows of C{plugin_entity_keys}).
    @ivar keys: the fields C{get} accepts besides the id (among C{unique}).
    @ivar foreign: its foreign key fields (among L{GENERIC}'s).
    """

    name: str
    unique: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


_UNIQUE = {
    "services_name_key": ("name",),
    "routes_name_key": ("name",),
    "consumers_username_key": ("username",),
    "consumers_custom_id_key": ("custom_id",),
    "plugins_scope_key": ("name", "service", "route", "consumer"),
    "keyauth_credentials_key_key": ("key",),
    "basicauth_credentials_username_key": ("username",),
    "jwt_secrets_key_key": ("key",),
    "acls_consumer_group_key": ("consumer", "group"),
    "upstreams_name_key": ("name",),
    "targets_upstream_target_key": ("upstream", "target"),
    "target_health_overrides_target_address_key": ("target", "address"),
    "snis_name_key": ("name",),
    "ca_certificates_cert_digest_key": ("cert_digest",),
}

_FOREIGN = {
    f"{table.name}_{field}_id_fkey": (table.name, field, parent)
    for table in (*_TABLES.values(), GENERIC) for field, parent in table.foreign.items()
}


CANONICAL_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parses_as_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _id_of(value: object, field: str) -> str:
    if not parses_as_uuid(value):
        if field == "id":
            raise SchemaViolation({"id": "expected a uuid"})
        raise SchemaViolation({field: {"id": "expected a uuid"}})
    return str(value)


def key_text(value: Any) -> str | None:
    """
    How a unique field's value is kept in C{plugin_entity_keys}: text as
    itself, a foreign key as its id, anything else as its JSON; C{None}
    (nothing kept) for null. The same as L{echogate.pdk.entities.index_value}.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and set(value) == {"id"}:
        return str(value["id"])
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def table_of(entity: str) -> Table:
    try:
        return _TABLES[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; expected one of {sorted(_TABLES)}") from None


def _fk(value: object) -> dict[str, str | None] | None:
    if isinstance(value, Mapping):
        return {"id": value.get("id")}
    return None if value is None else {"id": str(value)}


def translate(e: psycopg2.Error, table: Table, record: Mapping[str, Any]) -> Exception:
    """
    The L{echogate.errors} exception for a constraint C{e} violated while
    writing C{record} into C{table}, or C{e} itself.
    """
    constraint = getattr(e.diag, "constraint_name", None)
    if e.pgcode == UNIQUE_VIOLATION:
        if constraint == f"{table.name}_pkey":
            rid = record.get("id")
            return PrimaryKeyViolation(f"primary key violation on key '{{id=\"{rid}\"}}'",
                                       {"id": rid})
        fields = _UNIQUE.get(constraint or "", ())
        return UniqueViolation({
            f: _fk(record.get(f)) if f in table.foreign else record.get(f) for f in fields})
    if e.pgcode in (FOREIGN_KEY_VIOLATION, RESTRICT_VIOLATION) \
            and constraint in _FOREIGN:
        child, field, parent = _FOREIGN[constraint]
        if child != table.name:
            return ForeignKeyViolation(
                f"an existing '{child}' entity references this '{table.name}' entity",
                {"@referenced_by": child})
        ref = _fk(record.get(field)) or {"id": None}
        return ForeignKeyViolation(
            f"the foreign key '{{id=\"{ref['id']}\"}}' does not reference an existing"
            f" '{parent}' entity.", {field: ref})
    if e.pgcode == NOT_NULL_VIOLATION:
        return SchemaViolation({e.diag.column_name or "?": "required field missing"})
    return e
