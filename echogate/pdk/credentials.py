"""
The consumers and credentials of a configuration snapshot, indexed for the
data path (C{ctx.consumers}, C{ctx.credentials}): one dict lookup per
key, username or id however many there are. The credential entities
themselves (schemas, generated keys, password hashing) are
L{echogate.entities.credentials}.

A node builds the index of its next snapshot in steps
(L{CredentialIndex.building}, L{STEP} records a step), taking from the
index it replaces the parts whose tables did not change: with 10,000
consumers with a key-auth key, building it at once held the reactor
thread 3.7 to 5 ms whenever a consumer or a credential changed
(docs/performance.md).
"""
from __future__ import annotations

from typing import Any, Generator, Iterable, Mapping, TypeVar

from echogate.pdk.entities import EntityIndex
from echogate.schema.fields import is_uuid

__all__ = ["KEYAUTH", "BASICAUTH", "JWT", "ACLS", "ConsumerIndex", "CredentialIndex", "EMPTY",
           "UnknownEntity"]

#: The credential entities, by their stored (Kong DAO) names.
KEYAUTH = "keyauth_credentials"
BASICAUTH = "basicauth_credentials"
JWT = "jwt_secrets"
ACLS = "acls"

#: The tables a credential index is built from, as L{CredentialIndex.building}
#: names them: the consumers, the credential entities, the rows of the
#: entities plugins declare.
TABLES = ("consumers", KEYAUTH, BASICAUTH, JWT, ACLS, "plugin_entities")

#: Records indexed in one step of L{CredentialIndex.building}.
STEP = 500

_T = TypeVar("_T")


def _through(steps: Generator[None, None, _T]) -> _T:
    """
    What C{steps} return, run to their end at once.
    """
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _fk(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    return value.get("id") if isinstance(value, Mapping) else None


class ConsumerIndex:
    """
    Every consumer of a configuration snapshot, by id, username and
    custom_id (C{ctx.consumers}). Records are shared by every request:
    read them, never change them.
    """

    __slots__ = ("_by_id", "_by_username", "_by_custom_id")

    _by_id: dict[str, dict[str, Any]]
    _by_username: dict[str, dict[str, Any]]
    _by_custom_id: dict[str, dict[str, Any]]

    def __init__(self, consumers: Iterable[Mapping[str, Any]] = ()):
        _through(self._fill(consumers))

    @classmethod
    def building(cls, consumers: Iterable[Mapping[str, Any]],
                 previous: "ConsumerIndex | None" = None) -> Generator[None, None, "ConsumerIndex"]:
        """
        The index, in steps: a generator that yields (C{None}) after every
        L{STEP} consumers and returns the index.

        @param previous: an index of the consumers that come before
            C{consumers}: the new index has its entries, and C{consumers}'.
        """
        index = cls.__new__(cls)
        yield from index._fill(consumers, previous)
        return index

    def _fill(self, consumers: Iterable[Mapping[str, Any]],
              previous: "ConsumerIndex | None" = None) -> Generator[None, None, None]:
        by_id: dict[str, dict[str, Any]] = {}
        by_username: dict[str, dict[str, Any]] = {}
        by_custom_id: dict[str, dict[str, Any]] = {}
        if previous is not None:
            # A step each: with 10,000 consumers, a copy took 0.2 to 0.3 ms.
            by_id = dict(previous._by_id)
            yield None
            by_username = dict(previous._by_username)
            yield None
            by_custom_id = dict(previous._by_custom_id)
            yield None
        self._by_id, self._by_username, self._by_custom_id = by_id, by_username, by_custom_id
        for done, consumer in enumerate(consumers, 1):
            if not done % STEP:
                yield None
            record = dict(consumer)
            by_id[record["id"].lower()] = record
            if record.get("username") is not None:
                by_username[record["username"]] = record
            if record.get("custom_id") is not None:
                by_custom_id[record["custom_id"]] = record

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, key: str | None) -> dict[str, Any] | None:
        """
        The consumer whose id (any case) or, failing that, username is
        C{key}, or C{None} (how Kong finds an C{anonymous} consumer).
        """
        if not isinstance(key, str):
            return None
        if is_uuid(key):
            found = self._by_id.get(key.lower())
            if found is not None:
                return found
        return self._by_username.get(key)

    def by_id(self, id: str | None) -> dict[str, Any] | None:
        """
        The consumer with this id, or C{None}.
        """
        return self._by_id.get(id.lower()) if isinstance(id, str) else None

    def by_custom_id(self, custom_id: str) -> dict[str, Any] | None:
        """
        The consumer with this custom_id, or C{None}.
        """
        return self._by_custom_id.get(custom_id)


#: C{find}'s kinds: credential entity to the field it is found by.
_LOOKUP = {KEYAUTH: "key", BASICAUTH: "username", JWT: "key"}
_KINDS = {"key-auth": KEYAUTH, "basic-auth": BASICAUTH, "jwt": JWT,
          KEYAUTH: KEYAUTH, BASICAUTH: BASICAUTH, JWT: JWT}


class UnknownEntity(KeyError):
    """
    C{ctx.credentials.entities(name)} named an entity that no loaded plugin
    declares.

    @since: 0.2.0
    """


class CredentialIndex:
    """
    Every credential of a configuration snapshot (C{ctx.credentials}),
    indexed for the auth plugins: key-auth keys, basic-auth usernames, jwt
    keys, and each consumer's acl groups; and the records of every entity
    plugins declare (L{entities}). Records are shared by every request:
    read them, never change them.

    @ivar consumers: the snapshot's L{ConsumerIndex}.
    """

    __slots__ = ("consumers", "_found", "_groups", "_credentials", "_entities", "_made")

    consumers: ConsumerIndex
    _found: dict[str, dict[str, dict[str, Any]]]
    _groups: dict[str, tuple[str, ...]]
    _credentials: dict[str, tuple[Mapping[str, Any], ...]]
    #: The declared entities' indexes, and those made on a first lookup of
    #: a credential entity's records (L{entities}).
    _entities: dict[str, EntityIndex]
    _made: dict[str, EntityIndex]

    def __init__(self, consumers: Iterable[Mapping[str, Any]] = (),
                 credentials: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                 entities: Mapping[str, EntityIndex] | None = None):
        _through(self._fill(consumers, credentials or {}, dict(entities or {}), None, {}))

    @classmethod
    def build(cls, data: Any, declared: Iterable[Any] = ()) -> "CredentialIndex":
        """
        The index of a L{echogate.store.data.ConfigurationData}'s consumers,
        credentials and plugin entities.

        @param declared: the loaded plugins' entity declarations
            (L{echogate.pdk.entities.PluginEntity}): each declared entity
            has an L{EntityIndex}, empty when it has no records, its unique
            fields and its parent's field indexed up front.
        """
        return _through(cls.building(data, declared))

    @classmethod
    def building(cls, data: Any, declared: Iterable[Any] = (), previous: "CredentialIndex | None" = None,
                 kept: Mapping[str, int] | None = None) -> Generator[None, None, "CredentialIndex"]:
        """
        L{build}, in steps: a generator that yields (C{None}) after every
        L{STEP} records (and after each table) and returns the index, so
        that a node serves requests between them.

        @param previous: the index of the snapshot this one replaces.
        @param kept: for tables of L{TABLES} that begin with all the
            records C{previous} was built from (equal records), how many
            those are. Where they are the whole table, C{previous}'s part
            (the L{ConsumerIndex}, a credential entity's keys, the acl
            groups, a declared entity's L{EntityIndex}: for
            C{"plugin_entities"}, only with C{declared} as it was) is taken
            as it is, shared by both indexes (neither ever changes it);
            where records follow them, a copy of C{previous}'s part is
            given those (not for C{"plugin_entities"}).
        """
        kept = kept if previous is not None and kept is not None else {}
        entities: dict[str, EntityIndex] = {}
        declarations = [d for d in declared if d.table is None]
        if declarations:
            rows = tuple(getattr(data, "plugin_entities", ()))
            earlier = previous._entities if previous is not None and kept.get("plugin_entities") == len(rows) else {}
            grouped: dict[str, list[dict[str, Any]]] | None = None
            for declaration in declarations:
                found = earlier.get(declaration.name)
                if found is None:
                    if grouped is None:
                        grouped = yield from _grouped(rows)
                    indexed = ("id", *declaration.unique,
                               *((declaration.parent_field,) if declaration.parent_field else ()))
                    found = EntityIndex(declaration.name, grouped.get(declaration.name, ()), indexed)
                    yield None
                entities[declaration.name] = found
        index = cls.__new__(cls)
        yield from index._fill(getattr(data, "consumers", ()), {
            entity: getattr(data, entity, ()) for entity in (KEYAUTH, BASICAUTH, JWT, ACLS)},
            entities, previous, kept)
        return index

    def _fill(self, consumers: Iterable[Mapping[str, Any]],
              credentials: Mapping[str, Iterable[Mapping[str, Any]]], entities: dict[str, EntityIndex],
              previous: "CredentialIndex | None", kept: Mapping[str, int]) -> Generator[None, None, None]:
        consumers = tuple(consumers)
        same = kept.get("consumers") if previous is not None else None
        if previous is not None and same == len(consumers):
            self.consumers = previous.consumers
        else:
            same = same or 0
            self.consumers = yield from ConsumerIndex.building(
                consumers[same:], previous.consumers if previous is not None and same else None)
            yield None
        self._credentials = {entity: tuple(records) for entity, records in credentials.items()}
        self._entities = entities
        self._made = {}
        self._found = {entity: {} for entity in _LOOKUP}
        self._groups = {}
        for entity, records in self._credentials.items():
            field = _LOOKUP.get(entity)
            if field is None and entity != ACLS:
                raise ValueError(f"unknown credential entity {entity!r}")
            same = kept.get(entity) if previous is not None else None
            if previous is not None and same == len(records):
                made = previous._made.get(entity)
                if made is not None:
                    self._made[entity] = made
                if entity == ACLS:
                    self._groups = previous._groups
                else:
                    self._found[entity] = previous._found[entity]
                continue
            same = same or 0
            earlier = previous if previous is not None and same else None
            if field is None:
                self._groups = yield from _groups(records[same:], earlier._groups if earlier is not None else {})
                continue
            if earlier is not None:
                table = self._found[entity] = dict(earlier._found[entity])
                yield None
            else:
                table = self._found[entity]
            for done, record in enumerate(records[same:], 1):
                if not done % STEP:
                    yield None
                value = record.get(field)
                if value is not None:
                    table[value] = dict(record)
            yield None

    def entities(self, name: str) -> EntityIndex:
        """
        The records of the entity C{name}, declared by a loaded plugin
        (L{echogate.pdk.entities.PluginEntity}) or one of the bundled
        credential entities (C{"keyauth_credentials"}, ...), indexed for
        lookups by field: C{ctx.credentials.entities("tokens_tokens").find("token", value)}.

        @raise UnknownEntity: no loaded plugin declares C{name}.
        """
        found = self._entities.get(name)
        if found is None:
            found = self._made.get(name)
        if found is None:
            records = self._credentials.get(name)
            if records is None and name not in (KEYAUTH, BASICAUTH, JWT, ACLS):
                raise UnknownEntity(name)
            found = self._made[name] = EntityIndex(name, records or (), ("id",))
        return found

    def find(self, kind: str, key: str | None) -> dict[str, Any] | None:
        """
        The credential of C{kind} (C{"key-auth"}, C{"basic-auth"} or
        C{"jwt"}, or the entity's name) whose key (a basic-auth username)
        is C{key}, or C{None}.

        @raise ValueError: C{kind} is not one of those.
        """
        entity = _KINDS.get(kind)
        if entity is None:
            raise ValueError(f"unknown credential kind {kind!r}; expected key-auth, basic-auth or jwt")
        if not isinstance(key, str):
            return None
        return self._found[entity].get(key)

    def groups(self, consumer_id: str | None) -> tuple[str, ...]:
        """
        The acl groups of the consumer with this id, in the order they were
        stored (empty when none).
        """
        if not isinstance(consumer_id, str):
            return ()
        return self._groups.get(consumer_id.lower(), ())


def _grouped(rows: Iterable[Mapping[str, Any]]) -> Generator[None, None, dict[str, list[dict[str, Any]]]]:
    """
    The records of the plugin entities' rows (C{{"entity": ..., "record":
    ...}}) by entity, in steps.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for done, row in enumerate(rows, 1):
        if not done % STEP:
            yield None
        grouped.setdefault(row["entity"], []).append(row["record"])
    return grouped


def _groups(acls: Iterable[Mapping[str, Any]],
            earlier: Mapping[str, tuple[str, ...]]) -> Generator[None, None, dict[str, tuple[str, ...]]]:
    """
    Each consumer's acl groups (by its id, lower-cased), in the order they
    were stored, each once; in steps. C{earlier}: the groups of the acls
    that come before C{acls}.
    """
    groups = dict(earlier)
    if earlier:
        yield None
    for done, record in enumerate(acls, 1):
        if not done % STEP:
            yield None
        owner = _fk(record, "consumer")
        group = record.get("group")
        if owner is not None and group is not None:
            owner = owner.lower()
            owned = groups.get(owner)
            if owned is None:
                groups[owner] = (group,)
            elif group not in owned:
                groups[owner] = (*owned, group)
    yield None
    return groups


#: An index with nothing in it.
EMPTY = CredentialIndex()
