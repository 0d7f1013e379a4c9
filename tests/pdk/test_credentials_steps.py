"""
L{CredentialIndex.building}: the credential index built in steps, taking
the parts of the previous index whose tables did not change (or only had
records added at their end), and always indexing what a build from
scratch in one step indexes.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.pdk import credentials as credentials_module
from echogate.pdk.credentials import ACLS, BASICAUTH, JWT, KEYAUTH, TABLES, CredentialIndex, UnknownEntity
from echogate.pdk.entities import PluginEntity
from echogate.routing.router import finish
from echogate.schema import Record, String
from echogate.store.data import ConfigurationData
from tests.stepping import run_steps

TOKENS = PluginEntity(name="tests_tokens", schema=Record({"token": String()}), endpoint="tests-tokens",
                      parent="consumers", unique=("token",))


def _id(kind: int, n: int) -> str:
    return f"{kind}0000000-0000-4000-8000-{n:012d}"


def _consumer(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": _id(1, n), "username": f"u{n}", "custom_id": f"c{n}", **fields}


def _owned(kind: int, n: int, owner: int, **fields: Any) -> dict[str, Any]:
    return {"id": _id(kind, n), "consumer": {"id": _id(1, owner)}, **fields}


def _data(count: int = 6, **changes: Any) -> ConfigurationData:
    """
    C{count} consumers, each with a key, a basic-auth username, a jwt key,
    two acls (one group shared by all) and a token of L{TOKENS}.
    """
    data = ConfigurationData(
        version=1,
        consumers=tuple(_consumer(n) for n in range(count)),
        keyauth_credentials=tuple(_owned(2, n, n, key=f"k{n}") for n in range(count)),
        basicauth_credentials=tuple(_owned(3, n, n, username=f"b{n}", password="h") for n in range(count)),
        jwt_secrets=tuple(_owned(4, n, n, key=f"j{n}", secret="s", algorithm="HS256") for n in range(count)),
        acls=tuple(_owned(5, 2 * n + side, n, group=group)
                   for n in range(count) for side, group in enumerate((f"g{n}", "all"))),
        plugin_entities=tuple({"entity": TOKENS.name, "record": _owned(6, n, n, token=f"t{n}", tags=None)}
                              for n in range(count)))
    return attrs.evolve(data, **changes)


def _reference(data: ConfigurationData) -> dict[str, Any]:
    """
    What a build from scratch indexes, worked out here the plain way: the
    last record of a key wins, ids are lower-cased, groups kept once each
    in stored order.
    """
    by_id, by_username, by_custom_id = {}, {}, {}
    for consumer in data.consumers:
        by_id[consumer["id"].lower()] = consumer
        if consumer.get("username") is not None:
            by_username[consumer["username"]] = consumer
        if consumer.get("custom_id") is not None:
            by_custom_id[consumer["custom_id"]] = consumer
    found: dict[str, dict[str, Any]] = {}
    for entity, field in ((KEYAUTH, "key"), (BASICAUTH, "username"), (JWT, "key")):
        found[entity] = {r[field]: r for r in getattr(data, entity) if r.get(field) is not None}
    groups: dict[str, list[str]] = {}
    for acl in data.acls:
        owned = groups.setdefault(acl["consumer"]["id"].lower(), [])
        if acl["group"] not in owned:
            owned.append(acl["group"])
    return {"by_id": by_id, "by_username": by_username, "by_custom_id": by_custom_id, "found": found,
            "groups": {owner: tuple(names) for owner, names in groups.items()},
            "credentials": {entity: tuple(getattr(data, entity)) for entity in (KEYAUTH, BASICAUTH, JWT, ACLS)},
            "tokens": tuple(row["record"] for row in data.plugin_entities if row["entity"] == TOKENS.name)}


def _contents(index: CredentialIndex) -> dict[str, Any]:
    """
    Everything C{index} holds, as plain values (copies of its tables).
    """
    consumers = index.consumers
    return {"by_id": dict(consumers._by_id), "by_username": dict(consumers._by_username),
            "by_custom_id": dict(consumers._by_custom_id),
            "found": {entity: dict(table) for entity, table in index._found.items()},
            "groups": dict(index._groups), "credentials": dict(index._credentials),
            "tokens": tuple(index.entities(TOKENS.name))}


_run = run_steps


def _kept(new: ConfigurationData, old: ConfigurationData, tables: Iterable[str] = TABLES) -> dict[str, int]:
    """
    C{kept} for L{CredentialIndex.building}, of the C{tables} of C{new}
    that begin with all of C{old}'s records.
    """
    kept = {}
    for table in tables:
        records, earlier = getattr(new, table), getattr(old, table)
        if records[:len(earlier)] == earlier:
            kept[table] = len(earlier)
    return kept


def _build(data: ConfigurationData, previous: CredentialIndex | None = None,
           kept: Mapping[str, int] | None = None) -> CredentialIndex:
    return finish(CredentialIndex.building(data, [TOKENS], previous, kept))


class SteppedBuildTests(SynchronousTestCase):
    """
    L{CredentialIndex.building} without a previous index.
    """

    def test_sameAsReference(self) -> None:
        """
        The index holds what a build from scratch in one step holds.
        """
        data = _data()
        self.assertEqual(_contents(CredentialIndex.build(data, [TOKENS])), _reference(data))

    def test_steps(self) -> None:
        """
        It yields after every L{credentials_module.STEP} records of a table
        and after each table, and indexes the same as in one step.
        """
        data = _data(count=10)
        self.patch(credentials_module, "STEP", 3)
        yielded, stepped = _run(CredentialIndex.building(data, [TOKENS]))
        # consumers 10, keys 10, basic 10, jwt 10: 3 + 1 each; acls 20: 6 + 1;
        # tokens 10: 3, and one after the entity's index.
        self.assertEqual(yielded, 4 * 4 + 7 + 3 + 1)
        self.patch(credentials_module, "STEP", 1000)
        self.assertEqual(_contents(stepped), _contents(CredentialIndex.build(data, [TOKENS])))
        self.assertEqual(_contents(stepped), _reference(data))

    def test_lookups(self) -> None:
        """
        The stepped index finds keys, usernames, ids (any case), custom ids,
        basic-auth usernames, jwt keys, groups and declared records.
        """
        self.patch(credentials_module, "STEP", 2)
        index = _build(_data())
        self.assertEqual(index.find("key-auth", "k3")["id"], _id(2, 3))
        self.assertEqual(index.find("basic-auth", "b4")["consumer"], {"id": _id(1, 4)})
        self.assertEqual(index.find("jwt", "j5")["id"], _id(4, 5))
        self.assertEqual(index.consumers.get("u2")["id"], _id(1, 2))
        self.assertEqual(index.consumers.get(_id(1, 2).upper())["username"], "u2")
        self.assertEqual(index.consumers.by_custom_id("c1")["id"], _id(1, 1))
        self.assertEqual(index.groups(_id(1, 3)), ("g3", "all"))
        self.assertEqual(index.entities(TOKENS.name).find("token", "t5")["id"], _id(6, 5))
        self.assertEqual(index.entities(KEYAUTH).get(_id(2, 1))["key"], "k1")
        self.assertRaises(UnknownEntity, index.entities, "nothing_declared")
        self.assertRaises(ValueError, index.find, "oauth2", "k1")

    def test_duplicatesAndCase(self) -> None:
        """
        Duplicated keys and usernames: the last stored wins, across steps;
        a group given twice is kept once; ids in upper case are found.
        """
        self.patch(credentials_module, "STEP", 2)
        data = _data(
            consumers=(*_data().consumers, _consumer(9, id=_id(1, 9).upper(), username="u0")),
            keyauth_credentials=(*_data().keyauth_credentials, _owned(2, 9, 9, key="k0")),
            acls=(*_data().acls, _owned(5, 99, 0, group="g0"), _owned(5, 98, 9, group="x")))
        index = _build(data)
        self.assertEqual(_contents(index), _reference(data))
        self.assertEqual(index.consumers.get("u0")["id"], _id(1, 9).upper())
        self.assertEqual(index.find("key-auth", "k0")["id"], _id(2, 9))
        self.assertEqual(index.groups(_id(1, 0)), ("g0", "all"))
        self.assertEqual(index.groups(_id(1, 9)), ("x",))

    def test_recordsCopied(self) -> None:
        """
        The stepped index keeps copies of the records it was given.
        """
        data = _data()
        index = _build(data)
        self.assertIsNot(index.find("key-auth", "k1"), data.keyauth_credentials[1])
        self.assertIsNot(index.consumers.get("u1"), data.consumers[1])


class ReusedPartsTests(SynchronousTestCase):
    """
    L{CredentialIndex.building} from the index of the snapshot it replaces.
    """

    def test_unchangedPartsShared(self) -> None:
        """
        With only the keys changed, every other part of the previous index
        is taken as it is, records made on a lookup included.
        """
        first = _build(_data())
        made = first.entities(BASICAUTH)
        keys = (_owned(2, 0, 0, key="changed"),) + _data().keyauth_credentials[1:]
        data = _data(keyauth_credentials=keys)
        second = _build(data, first, _kept(data, _data()))
        self.assertIs(second.consumers, first.consumers)
        self.assertIs(second._groups, first._groups)
        self.assertIs(second._found[BASICAUTH], first._found[BASICAUTH])
        self.assertIs(second._found[JWT], first._found[JWT])
        self.assertIs(second.entities(TOKENS.name), first.entities(TOKENS.name))
        self.assertIs(second.entities(BASICAUTH), made)
        self.assertIsNot(second._found[KEYAUTH], first._found[KEYAUTH])
        self.assertEqual(_contents(second), _reference(data))
        self.assertIsNone(second.find("key-auth", "k0"))
        self.assertEqual(first.find("key-auth", "k0")["key"], "k0")

    def test_eachTableChanged(self) -> None:
        """
        A record changed in the middle of any table is seen, and the index
        is what a build from scratch gives.
        """
        self.patch(credentials_module, "STEP", 2)
        base = _data()
        first = _build(base)
        changed = {
            "consumers": _consumer(3, username="renamed"),
            KEYAUTH: _owned(2, 3, 3, key="new-key"),
            BASICAUTH: _owned(3, 3, 3, username="new-basic", password="h"),
            JWT: _owned(4, 3, 3, key="new-jwt", secret="s", algorithm="HS256"),
            ACLS: _owned(5, 6, 3, group="new-group"),
            "plugin_entities": {"entity": TOKENS.name, "record": _owned(6, 3, 3, token="new-token", tags=None)},
        }
        for table, record in changed.items():
            records = getattr(base, table)
            data = attrs.evolve(base, **{table: records[:3] + (record,) + records[4:]})
            second = _build(data, first, _kept(data, base))
            self.assertEqual(_contents(second), _reference(data), table)
            self.assertNotEqual(_contents(second), _contents(first), table)
        self.assertEqual(_contents(first), _reference(base))

    def test_recordsAdded(self) -> None:
        """
        Records added at the end of a table are indexed on a copy of the
        previous index's part, which stays as it was; duplicates among them
        win over earlier records, as in a build from scratch.
        """
        self.patch(credentials_module, "STEP", 2)
        base = _data()
        first = _build(base)
        before = _contents(first)
        data = _data(
            consumers=(*base.consumers, _consumer(7), _consumer(8, username="u1")),
            keyauth_credentials=(*base.keyauth_credentials, _owned(2, 7, 7, key="k7"), _owned(2, 8, 8, key="k2")),
            basicauth_credentials=(*base.basicauth_credentials, _owned(3, 7, 7, username="b7", password="h")),
            jwt_secrets=(*base.jwt_secrets, _owned(4, 7, 7, key="j7", secret="s", algorithm="HS256")),
            acls=(*base.acls, _owned(5, 70, 7, group="all"), _owned(5, 71, 0, group="all"),
                  _owned(5, 72, 0, group="late")))
        kept = _kept(data, base)
        self.assertEqual(kept, dict.fromkeys(TABLES, 6) | {ACLS: 12})
        second = _build(data, first, kept)
        self.assertEqual(_contents(second), _reference(data))
        self.assertEqual(_contents(first), before)
        self.assertEqual(second.consumers.get("u1")["id"], _id(1, 8))
        self.assertEqual(second.find("key-auth", "k2")["id"], _id(2, 8))
        self.assertEqual(second.groups(_id(1, 0)), ("g0", "all", "late"))
        self.assertIsNone(first.find("key-auth", "k7"))
        self.assertIsNone(first.consumers.get("u7"))
        self.assertIsNone(first.consumers.by_id(_id(1, 8)))
        self.assertEqual(first.groups(_id(1, 0)), ("g0", "all"))
        self.assertIs(second.find("key-auth", "k1"), first.find("key-auth", "k1"))
        self.assertIs(second.consumers.get("u3"), first.consumers.get("u3"))

    def test_recordsRemoved(self) -> None:
        """
        A table that lost its last record is indexed anew.
        """
        base = _data()
        first = _build(base)
        data = _data(keyauth_credentials=base.keyauth_credentials[:-1], acls=())
        second = _build(data, first, _kept(data, base))
        self.assertEqual(_contents(second), _reference(data))
        self.assertIsNone(second.find("key-auth", "k5"))
        self.assertEqual(second.groups(_id(1, 0)), ())

    def test_notKeptNotTaken(self) -> None:
        """
        A table missing from C{kept} is indexed anew, even when empty now.
        """
        base = _data()
        first = _build(base)
        data = _data(keyauth_credentials=())
        second = _build(data, first, {})
        self.assertEqual(_contents(second), _reference(data))

    def test_declarationsChanged(self) -> None:
        """
        Without C{"plugin_entities"} in C{kept} (the plugins changed), the
        declared entities are indexed anew; with the declaration gone, the
        name is unknown.
        """
        base = _data()
        first = _build(base)
        kept = _kept(base, base, [t for t in TABLES if t != "plugin_entities"])
        second = _build(base, first, kept)
        self.assertIsNot(second.entities(TOKENS.name), first.entities(TOKENS.name))
        self.assertEqual(tuple(second.entities(TOKENS.name)), tuple(first.entities(TOKENS.name)))
        self.assertIs(second.consumers, first.consumers)
        bare = finish(CredentialIndex.building(base, [], first, kept))
        self.assertRaises(UnknownEntity, bare.entities, TOKENS.name)
