"""
What it takes to make a database hold a declarative configuration: the
L{Plan} of creates, updates and deletes (decK's C{diff}), the store writes
that carry it out in one transaction (L{Plan.operations}, L{apply}).

Entities of the file are matched with the database's by id, or, when the
file did not give the id (it was derived, see
L{echogate.declarative.layout.derived_id}), by what identifies them (a
service's name, a plugin's name and scope: L{natural_key}), so that a file
without ids manages entities the Admin API created. A matched entity keeps
the database's id and C{created_at}; its children's foreign keys follow.

Writes go parents first (creates and updates in
L{ENTITY_ORDER <echogate.declarative.layout.ENTITY_ORDER>}), then deletes,
children first: a child moved away from a parent that goes is moved before
its old parent is deleted.

The entities plugins declare are planned after the core's, for the plugins
the file was loaded with (a L{Records <echogate.declarative.config.Records>}
knows them, or C{plan}'s C{plugins}); records of entities no such plugin
declares are left alone. L{apply} declares their storage on the store
(L{echogate.entities.plugin_entities.declare_storage}) before it writes.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred, succeed

from echogate.declarative.exporting import by_entity
from echogate.declarative.layout import REFERENCE_KEYS, derived_id, entity_order, natural_key, types_of
from echogate.entities.plugin_entities import declare_storage
from echogate.entities.schemas import EntityType
from echogate.store.data import ConfigurationData

__all__ = ["Change", "Plan", "MissingSelectTags", "plan", "apply", "generated_fields"]

#: A foreign key field -> the entity it names.
_REFERS: Mapping[str, str] = {
    "client_certificate": "certificates",
    "service": "services",
    "route": "routes",
    "consumer": "consumers",
    "upstream": "upstreams",
    "certificate": "certificates",
}

_TIMESTAMPS = ("created_at", "updated_at")

#: The entities whose secrets a load makes up when the file has none.
_GENERATING = ("keyauth_credentials", "jwt_secrets")

Records = Mapping[str, Iterable[Mapping[str, Any]]]


class MissingSelectTags(ValueError):
    """
    With select tags, entities of the file that do not carry them all.

    @ivar entities: one C{"<entity> <name or id>"} per such entity.
    """

    def __init__(self, tags: Sequence[str], entities: Sequence[str]):
        super().__init__(
            f"{len(entities)} entit{'y' if len(entities) == 1 else 'ies'} of the file lack"
            f" the select tags {', '.join(tags)}: {', '.join(entities)}")
        self.entities = list(entities)


def _label(entity: str, record: Mapping[str, Any], kind: EntityType | None = None) -> str:
    key = REFERENCE_KEYS.get(entity)
    if key is None and kind is not None and kind.declaration is not None and kind.declaration.table is None:
        # A plugin's entity (in the generic table): by its endpoint key.
        key = kind.declaration.endpoint_key
    value = record.get(key) if key is not None else None
    return value if isinstance(value, str) and value else str(record.get("id"))


@attrs.frozen
class Change:
    """
    One entity to create, update or delete.

    @ivar action: C{"create"}, C{"update"} or C{"delete"}.
    @ivar record: the record to write (for a delete: the record stored).
    @ivar fields: for an update, the fields that change, sorted.
    """

    action: str
    entity: str
    record: Mapping[str, Any]
    fields: tuple[str, ...] = ()
    kind: EntityType | None = attrs.field(default=None, eq=False, repr=False)

    def line(self) -> str:
        """
        The change in one line: C{+ services example},
        C{~ routes example-route (paths, hosts)}, C{- plugins <id>}.
        """
        mark = {"create": "+", "update": "~", "delete": "-"}[self.action]
        text = f"{mark} {self.entity} {_label(self.entity, self.record, self.kind)}"
        return f"{text} ({', '.join(self.fields)})" if self.fields else text


@attrs.frozen
class Plan:
    """
    The changes that make a database equal to a file, in the order they
    are written.

    @ivar plugins: the plugins whose entities it writes (L{apply}
        declares their storage).
    """

    changes: tuple[Change, ...]
    plugins: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def count(self, action: str) -> int:
        """
        How many changes are C{action}s.
        """
        return sum(1 for c in self.changes if c.action == action)

    def lines(self) -> list[str]:
        """
        One line per change (L{Change.line}), in write order.
        """
        return [c.line() for c in self.changes]

    def summary(self) -> str:
        """
        decK's summary: C{Summary: created 1, updated 0, deleted 2}.
        """
        return (f"Summary: created {self.count('create')}, updated {self.count('update')},"
                f" deleted {self.count('delete')}")

    def operations(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        """
        The L{IStore.write <echogate.interfaces.IStore.write>} operations
        that carry the plan out.
        """
        verbs = {"create": "insert", "update": "update", "delete": "delete"}
        return [(verbs[c.action], c.entity, c.record if c.action != "delete" else {"id": c.record["id"]})
                for c in self.changes]


def _tables(records: Records | ConfigurationData, order: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    found: Mapping[str, Iterable[Mapping[str, Any]]] = (
        by_entity(records) if isinstance(records, ConfigurationData) else records)
    return {entity: list(found.get(entity, ())) for entity in order}


def _fk_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else None


def _differing(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[str, ...]:
    keys = (set(ours) | set(theirs)) - set(_TIMESTAMPS)
    return tuple(sorted(k for k in keys if ours.get(k) != theirs.get(k)))


def generated_fields(first: Records, second: Records) -> dict[tuple[str, str], frozenset[str]]:
    """
    The fields a load made up (keys and secrets the file does not give),
    found by loading the same file twice: C{(entity, id)} to the fields of
    the key-auth and jwt credentials that differ between C{first} and
    C{second}. L{plan} keeps the database's values of those.
    """
    out: dict[tuple[str, str], frozenset[str]] = {}
    for entity in _GENERATING:
        again = {r["id"]: r for r in second.get(entity, ())}
        for record in first.get(entity, ()):
            other = again.get(record["id"])
            if other is not None:
                fields = frozenset(_differing(record, other))
                if fields:
                    out[(entity, record["id"])] = fields
    return out


def plan(current: Records | ConfigurationData, target: Records, *,
         select_tags: Sequence[str] = (), delete: bool = True,
         generated: Mapping[tuple[str, str], frozenset[str]] | None = None,
         plugins: Mapping[str, Any] | None = None) -> Plan:
    """
    The changes that make C{current} (the database's records) equal to
    C{target} (a loaded file's, L{Declarative.records
    <echogate.declarative.Declarative.records>}).

    @param select_tags: decK's select tags: every entity of C{target} must
        carry them all, and only the database's entities carrying them all
        are deleted when the file lacks them (the others are left alone).
    @param delete: whether entities the file lacks are deleted (C{sync});
        C{False} only adds and updates (C{db_import}).
    @param generated: see L{generated_fields}.
    @param plugins: the plugins whose entities are planned (default: those
        C{target} was loaded with, when it is a L{Records
        <echogate.declarative.config.Records>}).
    @raise MissingSelectTags: an entity of C{target} lacks a select tag.
    """
    if plugins is None:
        plugins = getattr(target, "plugins", None) or {}
    order = entity_order(plugins)
    kinds = types_of(plugins)
    wanted = set(select_tags)
    generated = generated or {}
    stored = _tables(current, order)
    files = _tables(target, order)
    if wanted:
        lacking = [f"{entity} {_label(entity, r, kinds[entity])}" for entity in order for r in files[entity]
                   if not wanted.issubset(r.get("tags") or ())]
        if lacking:
            raise MissingSelectTags(sorted(wanted), lacking)
    renamed: dict[tuple[str, str], str] = {}
    matched: dict[str, set[str]] = {entity: set() for entity in order}
    writes: list[Change] = []
    for entity in order:
        kind = kinds[entity]
        by_id = {r["id"]: r for r in stored[entity]}
        by_key: dict[str, str] = {}
        for r in stored[entity]:
            by_key.setdefault(natural_key(entity, r, kind), r["id"])
        foreign = kind.foreign
        for given in files[entity]:
            derived = given["id"] == derived_id(entity, natural_key(entity, given, kind))
            record = copy.deepcopy(dict(given))
            for field in foreign:
                parent = _fk_id(record.get(field))
                if parent is not None and (_REFERS[field], parent) in renamed:
                    record[field] = {"id": renamed[(_REFERS[field], parent)]}
            if record["id"] not in by_id and derived:
                found = by_key.get(natural_key(entity, record, kind))
                if found is not None and found not in matched[entity]:
                    renamed[(entity, record["id"])] = found
                    record["id"] = found
            old = by_id.get(record["id"])
            if old is None:
                writes.append(Change("create", entity, record, kind=kind))
                continue
            matched[entity].add(record["id"])
            for field in generated.get((entity, given["id"]), ()):
                if field in old:
                    record[field] = old[field]
            fields = _differing(record, old)
            if fields:
                record["created_at"] = old.get("created_at", record.get("created_at"))
                writes.append(Change("update", entity, record, fields, kind=kind))
    deletes: list[Change] = []
    if delete:
        for entity in reversed(order):
            for r in sorted(stored[entity], key=lambda r: str(r["id"])):
                if r["id"] not in matched[entity] and wanted.issubset(r.get("tags") or ()):
                    deletes.append(Change("delete", entity, r, kind=kinds[entity]))
    return Plan(tuple(writes + deletes), plugins)


def apply(store: Any, changes: Plan) -> Deferred[list[dict[str, Any]]]:
    """
    Carry C{changes} out on C{store} (an L{IStore
    <echogate.interfaces.IStore>}) in one C{write}: all or nothing, one
    configuration version, every node notified. Nothing to do writes
    nothing. The storage of the entities of the plan's plugins is declared
    on C{store} first (L{declare_storage}).
    """
    operations = changes.operations()
    if not operations:
        return succeed([])
    declare_storage(store, changes.plugins)
    result: Deferred[list[dict[str, Any]]] = store.write(operations)
    return result
