"""
One suite of L{IStore}'s behaviour (L{StoreContractMixin}), run against
L{echogate.testing.MemoryStore} and against
L{echogate.store.postgres.PostgresStore} on the test PostgreSQL server (see
L{tests.postgres}), so that the double behaves as the real store; and
C{verifyObject} for every L{IStore} provider.
"""
from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.errors import ForeignKeyViolation, NotFound, PrimaryKeyViolation, UniqueViolation
from echogate.interfaces import IStore
from echogate.store.data import ConfigurationData
from echogate.store.offsets import InvalidOffset
from echogate.testing import MemoryStore
from tests.store.test_postgres import StoreTestCase, consumer, plugin, route, service


class StoreContractMixin:
    """
    L{IStore}'s behaviour; C{self.store} is the store under test.
    """

    store: Any

    async def failure(self, d: Deferred[Any], kind: type[Exception]) -> Any:
        try:
            await d
        except kind as e:
            return e
        self.fail(f"{kind.__name__} not raised")  # type: ignore[attr-defined]

    def test_provides(self) -> None:
        """
        The store provides L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, self.store))  # type: ignore[attr-defined]

    async def test_insert_get(self) -> None:
        """
        An inserted record is found by id and by endpoint key; a missing one is C{None}.
        """
        s = await self.store.insert("services", service("s1"))
        self.assertEqual(await self.store.get("services", s["id"]), s)
        self.assertEqual(await self.store.get("services", "s1"), s)
        self.assertIsNone(await self.store.get("services", str(uuid.uuid4())))
        self.assertIsNone(await self.store.get("services", "nobody"))

    async def test_insert_conflicts(self) -> None:
        """
        A taken id is a L{PrimaryKeyViolation}, a taken name a
        L{UniqueViolation} naming it, a dangling reference a
        L{ForeignKeyViolation}.
        """
        s = await self.store.insert("services", service("s1"))
        await self.failure(self.store.insert("services", dict(service("s2"), id=s["id"])), PrimaryKeyViolation)
        e = await self.failure(self.store.insert("services", service("s1")), UniqueViolation)
        self.assertEqual(e.fields, {"name": "s1"})
        await self.failure(self.store.insert("routes", route(str(uuid.uuid4()))), ForeignKeyViolation)

    async def test_update(self) -> None:
        """
        C{update} replaces a record; a missing one is L{NotFound}.
        """
        s = await self.store.insert("services", service("s1"))
        changed = await self.store.update("services", dict(s, host="other.example"))
        self.assertEqual(changed["host"], "other.example")
        self.assertEqual((await self.store.get("services", s["id"]))["host"], "other.example")
        await self.failure(self.store.update("services", service("s2")), NotFound)

    async def test_upsert(self) -> None:
        """
        C{upsert} inserts, then replaces.
        """
        record = service("s1")
        await self.store.upsert("services", record)
        await self.store.upsert("services", dict(record, host="other.example"))
        self.assertEqual((await self.store.get("services", record["id"]))["host"], "other.example")

    async def test_delete(self) -> None:
        """
        C{delete} says whether the record existed, cascades to plugins,
        and refuses a service that routes reference.
        """
        s = await self.store.insert("services", service("s1"))
        r = await self.store.insert("routes", route(s["id"], "r1"))
        p = await self.store.insert("plugins", plugin(route=r["id"]))
        await self.failure(self.store.delete("services", s["id"]), ForeignKeyViolation)
        self.assertTrue(await self.store.delete("routes", r["id"]))
        self.assertIsNone(await self.store.get("plugins", p["id"]))
        self.assertFalse(await self.store.delete("routes", r["id"]))

    async def test_consumer_cascade(self) -> None:
        """
        Deleting a consumer deletes its credentials.
        """
        c = await self.store.insert("consumers", consumer("alice"))
        key = await self.store.insert("keyauth_credentials", {
            "id": str(uuid.uuid4()), "created_at": 1, "updated_at": 1, "tags": None,
            "consumer": {"id": c["id"]}, "key": "k1"})
        self.assertEqual(await self.store.get("keyauth_credentials", "k1"), key)
        self.assertTrue(await self.store.delete("consumers", c["id"]))
        self.assertIsNone(await self.store.get("keyauth_credentials", key["id"]))

    async def test_page(self) -> None:
        """
        Pages follow each other by opaque offsets, in id order.
        """
        ids = sorted([(await self.store.insert("services", service(f"s{i}")))["id"] for i in range(5)])
        first, offset = await self.store.page("services", 2)
        second, offset2 = await self.store.page("services", 2, offset)
        third, end = await self.store.page("services", 2, offset2)
        self.assertEqual([r["id"] for r in first + second + third], ids)
        self.assertIsNone(end)
        await self.failure(self.store.page("services", 2, "not-an-offset"), InvalidOffset)

    async def test_page_tags_where(self) -> None:
        """
        C{tags} keeps records carrying all of them (any, with
        C{tags_any}); C{where} filters by foreign key.
        """
        a = await self.store.insert("services", service("a", tags=["x", "y"]))
        b = await self.store.insert("services", service("b", tags=["x"]))
        both, _ = await self.store.page("services", 10, tags=["x", "y"])
        anyof, _ = await self.store.page("services", 10, tags=["y", "z"], tags_any=True)
        self.assertEqual([r["id"] for r in both], [a["id"]])
        self.assertEqual([r["id"] for r in anyof], [a["id"]])
        r = await self.store.insert("routes", route(b["id"]))
        await self.store.insert("routes", route(a["id"]))
        found, _ = await self.store.page("routes", 10, where={"service": b["id"]})
        self.assertEqual([x["id"] for x in found], [r["id"]])

    async def tagged_records(self) -> list[dict[str, Any]]:
        """
        Tagged records of three entities, a service and a route sharing an
        id; every row of C{tagged(None, ...)}, in order.
        """
        first, second = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
        s = await self.store.insert("services", dict(service("s", tags=["b", "a"]), id=first))
        await self.store.insert("routes", dict(route(s["id"], tags=["a"]), id=first))
        await self.store.insert("consumers", dict(consumer("c"), id=second, tags=["a"]))
        await self.store.insert("consumers", consumer("untagged"))
        return [
            {"entity_name": "routes", "entity_id": first, "tag": "a"},
            {"entity_name": "services", "entity_id": first, "tag": "b"},
            {"entity_name": "services", "entity_id": first, "tag": "a"},
            {"entity_name": "consumers", "entity_id": second, "tag": "a"},
        ]

    async def every_page(self, tag: str | None, size: int) -> list[list[dict[str, Any]]]:
        pages = []
        rows, offset = await self.store.tagged(tag, size)
        pages.append(rows)
        while offset is not None:
            rows, offset = await self.store.tagged(tag, size, offset)
            pages.append(rows)
        return pages

    async def test_tagged(self) -> None:
        """
        C{tagged} lists one row per tag of every entity's records, by id,
        then entity, then the tag's position; with a tag, only its rows.
        """
        rows = await self.tagged_records()
        self.assertEqual(await self.store.tagged(None, 10), (rows, None))
        self.assertEqual(await self.store.tagged("a", 10), ([r for r in rows if r["tag"] == "a"], None))
        self.assertEqual(await self.store.tagged("absent", 10), ([], None))

    async def test_tagged_pages(self) -> None:
        """
        C{tagged} pages follow each other by opaque offsets, also between
        two tags of one record and two records sharing an id.
        """
        rows = await self.tagged_records()
        self.assertEqual(await self.every_page(None, 1), [[row] for row in rows])
        self.assertEqual(await self.every_page(None, 2), [rows[:2], rows[2:]])
        self.assertEqual(await self.every_page(None, 3), [rows[:3], rows[3:]])
        self.assertEqual(await self.every_page("a", 2), [[rows[0], rows[2]], [rows[3]]])

    async def test_tagged_plugin_entities(self) -> None:
        """
        C{tagged} lists the tagged records of the entities plugins declare
        (the generic table's), each under its entity's name, ordered and
        paged with the core's (by id, entity name, the tag's position).
        """
        rows = await self.tagged_records()
        first = rows[0]["entity_id"]
        self.store.declare("contract_things", unique=("name",), keys=("name",),
                           foreign={"consumer": "consumers"})
        self.store.declare("another_thing", unique=("name",))
        owner = (await self.store.page("consumers", 10, tags=["a"]))[0][0]
        await self.store.insert("contract_things", {
            "id": first, "created_at": 1, "updated_at": 1, "tags": ["z", "a"],
            "consumer": {"id": owner["id"]}, "name": "one"})
        zero = "00000000-0000-4000-8000-000000000000"
        await self.store.insert("another_thing", {
            "id": zero, "created_at": 1, "updated_at": 1, "tags": ["a"], "name": "two"})
        await self.store.insert("contract_things", {
            "id": str(uuid.uuid4()), "created_at": 1, "updated_at": 1, "tags": None,
            "consumer": {"id": owner["id"]}, "name": "untagged"})
        expected = [
            {"entity_name": "another_thing", "entity_id": zero, "tag": "a"},
            {"entity_name": "contract_things", "entity_id": first, "tag": "z"},
            {"entity_name": "contract_things", "entity_id": first, "tag": "a"},
            *rows,
        ]
        self.assertEqual(await self.store.tagged(None, 10), (expected, None))
        self.assertEqual(await self.store.tagged("z", 10), ([expected[1]], None))
        self.assertEqual(await self.every_page(None, 1), [[row] for row in expected])
        self.assertEqual(await self.every_page("a", 2), [
            [expected[0], expected[2]], [expected[3], expected[5]], [expected[6]]])

    async def test_tagged_bad_arguments(self) -> None:
        """
        An offset C{tagged} did not make (an entity list's among them) is
        L{InvalidOffset}; a size below 1 a L{ValueError}.
        """
        await self.tagged_records()
        _, list_offset = await self.store.page("consumers", 1)
        for offset in ["not-an-offset", list_offset, "WzEsMiwzXQ"]:
            await self.failure(self.store.tagged(None, 1, offset), InvalidOffset)
        await self.failure(self.store.tagged(None, 0), ValueError)

    async def test_write_rolls_back(self) -> None:
        """
        C{write} is all or nothing: a failing operation leaves nothing
        stored and the version unchanged.
        """
        before = await self.store.version()
        good = service("good")
        await self.failure(self.store.write([("insert", "services", good),
                                             ("update", "services", service("missing"))]), NotFound)
        self.assertIsNone(await self.store.get("services", good["id"]))
        self.assertEqual(await self.store.version(), before)
        stored = await self.store.write([("insert", "services", good), ("upsert", "routes", route(good["id"]))])
        self.assertEqual(len(stored), 2)
        self.assertGreater(await self.store.version(), before)

    async def test_write_delete(self) -> None:
        """
        C{write}'s C{"delete"} removes a record (its plugins by cascade)
        beside other writes in the same transaction, giving the record
        deleted in its place.
        """
        s = await self.store.insert("services", service("s1"))
        r = await self.store.insert("routes", route(s["id"], "r1"))
        p = await self.store.insert("plugins", plugin(route=r["id"]))
        other = service("s2")
        stored = await self.store.write([("delete", "routes", {"id": r["id"]}),
                                         ("delete", "services", {"id": s["id"]}),
                                         ("insert", "services", other)])
        self.assertEqual(stored[:2], [r, s])
        self.assertIsNone(await self.store.get("routes", r["id"]))
        self.assertIsNone(await self.store.get("plugins", p["id"]))
        self.assertIsNone(await self.store.get("services", s["id"]))
        self.assertEqual((await self.store.get("services", other["id"]))["name"], "s2")

    async def test_write_delete_rolls_back(self) -> None:
        """
        A C{"delete"} of a missing record is L{NotFound}, of a service that
        routes reference a L{ForeignKeyViolation}; either undoes the whole
        C{write}.
        """
        s = await self.store.insert("services", service("s1"))
        r = await self.store.insert("routes", route(s["id"], "r1"))
        before = await self.store.version()
        await self.failure(self.store.write([("delete", "routes", {"id": r["id"]}),
                                             ("delete", "routes", {"id": str(uuid.uuid4())})]), NotFound)
        await self.failure(self.store.write([("delete", "routes", {"id": "not-a-uuid"})]), NotFound)
        await self.failure(self.store.write([("insert", "services", service("s2")),
                                             ("delete", "services", {"id": s["id"]})]), ForeignKeyViolation)
        self.assertEqual(await self.store.get("routes", r["id"]), r)
        self.assertIsNone(await self.store.get("services", "s2"))
        self.assertEqual(await self.store.version(), before)

    async def test_version_load(self) -> None:
        """
        Every write increases the version; C{load} reads every entity and
        the version.
        """
        v0 = await self.store.version()
        s = await self.store.insert("services", service("s1"))
        c = await self.store.insert("consumers", consumer("alice"))
        v1 = await self.store.version()
        self.assertGreater(v1, v0)
        data = await self.store.load()
        self.assertIsInstance(data, ConfigurationData)
        self.assertEqual(data.version, v1)
        self.assertEqual(data.services, (s,))
        self.assertEqual(data.consumers, (c,))


class MemoryStoreContractTests(StoreContractMixin, TestCase):
    """
    L{MemoryStore} keeps L{IStore}'s contract.
    """

    def setUp(self) -> None:
        self.store = MemoryStore()

    async def test_subscribe(self) -> None:
        """
        Subscribers hear each new version until they unsubscribe.
        """
        heard: list[int | None] = []
        unsubscribe = self.store.subscribe(heard.append)
        await self.store.insert("services", service("s1"))
        unsubscribe()
        await self.store.insert("services", service("s2"))
        self.assertEqual(heard, [1])


class PostgresStoreContractTests(StoreContractMixin, StoreTestCase):
    """
    L{echogate.store.postgres.PostgresStore} keeps L{IStore}'s contract.
    """


class LateStoreTests(SynchronousTestCase):
    """
    The node's store as the Admin API sees it provides L{IStore}.
    """

    def test_provides(self) -> None:
        """
        L{echogate.service._LateStore} provides L{IStore}.
        """
        from echogate.service import _LateStore

        class Node:
            store = None

        self.assertTrue(verifyObject(IStore, _LateStore(Node())))  # type: ignore[arg-type]
