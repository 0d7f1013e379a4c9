"""
The consumers and credentials of a configuration snapshot, indexed for the
data path (C{ctx.consumers}, C{ctx.credentials}): one dict lookup per
key, username or id however many there are. The credential entities
themselves (schemas, generated keys, password hashing) are
L{echogate.entities.credentials}.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from echogate.pdk.entities import EntityIndex
from echogate.schema.fields import is_uuid

__all__ = ["KEYAUTH", "BASICAUTH", "JWT", "ACLS", "ConsumerIndex", "CredentialIndex", "EMPTY",
           "UnknownEntity"]

#: The credential entities, by their stored (Kong DAO) names.
KEYAUTH = "keyauth_credentials"
BASICAUTH = "basicauth_credentials"
JWT = "jwt_secrets"
ACLS = "acls"


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

    def __init__(self, consumers: Iterable[Mapping[str, Any]] = ()):
        self._by_id: dict[str, dict[str, Any]] = {}
        self._by_username: dict[str, dict[str, Any]] = {}
        self._by_custom_id: dict[str, dict[str, Any]] = {}
        for consumer in consumers:
            record = dict(consumer)
            self._by_id[record["id"].lower()] = record
            if record.get("username") is not None:
                self._by_username[record["username"]] = record
            if record.get("custom_id") is not None:
                self._by_custom_id[record["custom_id"]] = record

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

    __slots__ = ("consumers", "_found", "_groups", "_credentials", "_entities")

    def __init__(self, consumers: Iterable[Mapping[str, Any]] = (),
                 credentials: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                 entities: Mapping[str, EntityIndex] | None = None):
        self.consumers = ConsumerIndex(consumers)
        self._credentials = {entity: tuple(records) for entity, records in (credentials or {}).items()}
        self._entities: dict[str, EntityIndex] = dict(entities or {})
        self._found: dict[str, dict[str, dict[str, Any]]] = {entity: {} for entity in _LOOKUP}
        groups: dict[str, list[str]] = {}
        for entity, records in self._credentials.items():
            if entity == ACLS:
                for record in records:
                    owner = _fk(record, "consumer")
                    if owner is not None and record.get("group") is not None:
                        owned = groups.setdefault(owner.lower(), [])
                        if record["group"] not in owned:
                            owned.append(record["group"])
                continue
            field = _LOOKUP.get(entity)
            if field is None:
                raise ValueError(f"unknown credential entity {entity!r}")
            table = self._found[entity]
            for record in records:
                value = record.get(field)
                if value is not None:
                    table[value] = dict(record)
        self._groups = {owner: tuple(names) for owner, names in groups.items()}

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
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in getattr(data, "plugin_entities", ()):
            grouped.setdefault(row["entity"], []).append(row["record"])
        entities = {}
        for declaration in declared:
            if declaration.table is not None:
                continue
            indexed = ("id", *declaration.unique,
                       *((declaration.parent_field,) if declaration.parent_field else ()))
            entities[declaration.name] = EntityIndex(declaration.name, grouped.get(declaration.name, ()),
                                                     indexed)
        return cls(getattr(data, "consumers", ()), {
            entity: getattr(data, entity, ()) for entity in (KEYAUTH, BASICAUTH, JWT, ACLS)}, entities)

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
            records = self._credentials.get(name)
            if records is None and name not in (KEYAUTH, BASICAUTH, JWT, ACLS):
                raise UnknownEntity(name)
            found = self._entities[name] = EntityIndex(name, records or (), ("id",))
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


#: An index with nothing in it.
EMPTY = CredentialIndex()
