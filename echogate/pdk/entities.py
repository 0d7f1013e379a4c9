"""
Entities that plugins own (Kong's custom DAOs): how a plugin declares one
(L{PluginEntity}, public as C{echogate.plugin.PluginEntity}) and how its
phases read the records of the configuration snapshot
(L{EntityIndex}, through C{ctx.credentials.entities(name)}).

A declared entity gets, from the gateway, storage (see
L{echogate.store.migrations}: the generic C{plugin_entities} table, unless
the declaration names a table of its own), Admin API endpoints
(C{/{endpoint}} and C{/{parent}/{id or key}/{nested endpoint}}), its
records in every node's snapshot, and its place in the declarative format.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping

import attrs

from echogate.schema import Record

__all__ = ["PARENTS", "PluginEntity", "EntityIndex", "declare_storage", "index_value"]

#: The collections a plugin entity may belong to, with the field that
#: names the parent in its records (deleted with it: Kong's cascade).
PARENTS: Mapping[str, str] = {"consumers": "consumer", "services": "service", "routes": "route"}

#: Names a plugin entity's own fields cannot take (the gateway adds them).
RESERVED = frozenset({"id", "created_at", "updated_at", "tags", *PARENTS.values()})


def _check_name(instance: Any, attribute: Any, value: Any) -> None:
    if not value or not all(c.isalnum() or c in "_" for c in value) or not value[0].isalpha():
        raise ValueError(f"entity name {value!r}: letters, digits and _, starting with a letter")


def _check_endpoint(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not value or not all(c.isalnum() or c in "-_" for c in value)):
        raise ValueError(f"endpoint {value!r}: letters, digits, - and _ only")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class PluginEntity:
    """
    An entity a plugin owns, declared in the plugin's C{entities}
    attribute::

        class Tokens(GatewayPlugin):
            name = "tokens"
            entities = (PluginEntity(
                name="tokens_tokens",
                schema=Record({"token": String(required=True)}),
                endpoint="tokens",
                parent="consumers",
                unique=("token",),
                endpoint_key="token",
            ),)

    The records have the fields of C{schema} plus those the gateway adds:
    C{id}, C{created_at}, C{updated_at}, C{tags} and, with a C{parent},
    its field (C{consumer}, C{service} or C{route}: required, and the
    record is deleted with its parent).

    @ivar name: the stored entity's name (unique across the gateway; prefix
        it with the plugin's name), letters, digits and C{_}.
    @ivar schema: a L{echogate.schema.Record} of the entity's own fields
        (its C{checks} run on every write).
    @ivar endpoint: the Admin API collection, C{/{endpoint}}.
    @ivar parent: C{"consumers"}, C{"services"}, C{"routes"} or C{None}.
    @ivar nested_endpoint: the path under a parent,
        C{/{parent}/{id}/{nested_endpoint}} (the C{endpoint} by default).
    @ivar unique: fields whose values are unique among the entity's records
        (enforced by the database, 409 on a duplicate).
    @ivar unique_per_parent: fields unique among one parent's records
        (an acl's C{group}); only for bundled entities with their own table.
    @ivar endpoint_key: a field (unique, or unique per parent) that
        addresses a record besides its id; a per-parent key only under
        the parent.
    @ivar generated: fields given a random 32-hex-digit value when a new
        record does not set them (a key-auth C{key}).
    @ivar table: for the bundled entities only: the table of their own
        that stores them; C{None} (plugins): the generic table, which needs
        no migration of the plugin's.
    @ivar description: what the entity is, for the documentation.

    @since: 0.2.0
    """

    name: str = attrs.field(validator=_check_name)
    schema: Record
    endpoint: str = attrs.field(validator=_check_endpoint)
    parent: str | None = attrs.field(default=None, kw_only=True)
    nested_endpoint: str | None = attrs.field(default=None, kw_only=True, validator=_check_endpoint)
    unique: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_strings)
    unique_per_parent: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_strings)
    endpoint_key: str | None = attrs.field(default=None, kw_only=True)
    generated: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_strings)
    table: str | None = attrs.field(default=None, kw_only=True)
    description: str = attrs.field(default="", kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.parent is not None and self.parent not in PARENTS:
            raise ValueError(f"parent {self.parent!r}: one of {', '.join(PARENTS)} or None")
        own = set(self.schema.fields)
        clash = sorted(own & RESERVED)
        if clash:
            raise ValueError(f"entity {self.name!r}: the gateway adds the fields {', '.join(clash)}")
        for field in (*self.unique, *self.unique_per_parent, *self.generated):
            if field not in own:
                raise ValueError(f"entity {self.name!r}: no field {field!r} in its schema")
        if self.unique_per_parent and (self.parent is None or self.table is None):
            raise ValueError(f"entity {self.name!r}: unique_per_parent needs a parent and a table")
        if self.endpoint_key is not None and self.endpoint_key not in (*self.unique, *self.unique_per_parent):
            raise ValueError(f"entity {self.name!r}: the endpoint key {self.endpoint_key!r} must be unique")

    @property
    def parent_field(self) -> str | None:
        """
        The field naming the parent (C{"consumer"} for consumers), or C{None}.
        """
        return PARENTS[self.parent] if self.parent is not None else None

    @property
    def nested(self) -> str:
        """
        The path under the parent.
        """
        return self.nested_endpoint or self.endpoint


def index_value(value: Any) -> str | None:
    """
    How a field's value is indexed and stored as a unique key: text as
    itself, a foreign key as its id, anything else as its JSON; C{None}
    for null.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and set(value) == {"id"}:
        return str(value["id"])
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class EntityIndex:
    """
    The records of one plugin entity in a configuration snapshot
    (C{ctx.credentials.entities(name)}): a lookup by any field is one dict
    lookup (each field's dict is made once per snapshot, the declared
    unique fields and the parent's when the snapshot is built, any other
    on its first lookup). Records are shared by every request: read them,
    never change them.
    """

    __slots__ = ("name", "_records", "_by")

    def __init__(self, name: str, records: Iterable[Mapping[str, Any]] = (),
                 indexed: Iterable[str] = ()):
        self.name = name
        self._records: tuple[dict[str, Any], ...] = tuple(dict(r) for r in records)
        self._by: dict[str, dict[str, tuple[dict[str, Any], ...]]] = {}
        for field in indexed:
            self._index(field)

    def _index(self, field: str) -> dict[str, tuple[dict[str, Any], ...]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for record in self._records:
            value = index_value(record.get(field))
            if value is not None:
                found.setdefault(value, []).append(record)
        table = {value: tuple(records) for value, records in found.items()}
        self._by[field] = table
        return table

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._records)

    def find_all(self, field: str, value: Any) -> tuple[dict[str, Any], ...]:
        """
        Every record whose C{field} is C{value} (a foreign key field, such
        as C{consumer}, is compared by the parent's id), in stored order.
        """
        key = index_value(value)
        if key is None:
            return ()
        table = self._by.get(field)
        if table is None:
            table = self._index(field)
        return table.get(key, ())

    def find(self, field: str, value: Any) -> dict[str, Any] | None:
        """
        The first record whose C{field} is C{value}, or C{None}: for a
        unique field, the one record.
        """
        found = self.find_all(field, value)
        return found[0] if found else None

    def get(self, id: str | None) -> dict[str, Any] | None:
        """
        The record with this id, or C{None}.
        """
        return self.find("id", id.lower()) if isinstance(id, str) else None

    def __repr__(self) -> str:
        return f"<EntityIndex {self.name} ({len(self._records)} records)>"


def declare_storage(store: Any, plugins: Mapping[str, Any]) -> None:
    """
    Tell C{store} (by its C{declare} method, when it has one: the
    PostgreSQL and the in-memory stores) how to keep the entities the
    plugins in C{plugins} declare in its generic table: their unique
    fields, their endpoint key, their parent's field. The node's live
    configuration and the Admin API both call it; declaring twice is
    harmless.
    """
    declare = getattr(store, "declare", None)
    if declare is None:
        return
    for plugin in plugins.values():
        for declaration in getattr(plugin, "entities", ()) or ():
            if not isinstance(declaration, PluginEntity) or declaration.table is not None:
                continue
            parent = declaration.parent_field
            declare(declaration.name, unique=declaration.unique,
                    keys=(declaration.endpoint_key,) if declaration.endpoint_key else (),
                    foreign={parent: declaration.parent} if parent and declaration.parent else {})
