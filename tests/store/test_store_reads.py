"""
Tests for the reads of L{echogate.store.postgres.PostgresStore}: C{get} by id or
endpoint key, C{load}, C{version}, C{reachable}, and C{page} with its
offsets, tag filters and foreign-key filters (see L{tests.store.test_postgres}).
"""
from __future__ import annotations

import base64
import uuid
from typing import Any

from echogate.store.data import ConfigurationData
from echogate.store.offsets import InvalidOffset
from tests.store.test_postgres import StoreTestCase, consumer, plugin, route, service


class ReadTests(StoreTestCase):
    """
    C{get}, C{load}, C{version}, C{reachable}.
    """

    async def test_get_missing(self) -> None:
        """
        A missing id or name fires C{None}.
        """
        self.assertIsNone(await self.store.get("services", str(uuid.uuid4())))
        self.assertIsNone(await self.store.get("services", "nobody"))

    async def test_get_plugin_by_name(self) -> None:
        """
        Plugins are found by id only.
        """
        await self.store.insert("plugins", plugin())
        self.assertIsNone(await self.store.get("plugins", "header-echo"))

    async def test_consumer_keys(self) -> None:
        """
        A consumer is found by username, else by custom_id; a username
        wins over another consumer's custom_id.
        """
        alice = await self.store.insert("consumers", consumer("alice", "bob"))
        bob = await self.store.insert("consumers", consumer("bob", "x"))
        only = await self.store.insert("consumers", consumer(custom_id="c9"))
        self.assertEqual(await self.store.get("consumers", "alice"), alice)
        self.assertEqual(await self.store.get("consumers", "bob"), bob)
        self.assertEqual(await self.store.get("consumers", "c9"), only)

    async def test_route_by_name(self) -> None:
        """
        A route is found by name.
        """
        r = await self.store.insert("routes", route(None, "r1"))
        self.assertEqual(await self.store.get("routes", "r1"), r)

    async def test_load(self) -> None:
        """
        C{load} reads every service, route, plugin and consumer and the version.
        """
        s = await self.store.insert("services", service())
        r = await self.store.insert("routes", route(s["id"]))
        p = await self.store.insert("plugins", plugin(route=r["id"]))
        c = await self.store.insert("consumers", consumer("alice"))
        self.assertEqual(await self.store.load(), ConfigurationData(
            version=4, services=(s,), routes=(r,), plugins=(p,), consumers=(c,)))

    async def test_load_reuses_unchanged_records(self) -> None:
        """
        A second C{load} gives the very records of the first for rows that
        did not change, new ones for rows that did, and none for rows
        deleted meanwhile.
        """
        s = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s["id"], "r1"))
        r2 = await self.store.insert("routes", route(s["id"], "r2"))
        c = await self.store.insert("consumers", consumer("alice"))
        first = await self.store.load()
        changed = await self.store.update("routes", dict(r2, paths=["/changed"]))
        await self.store.delete("consumers", c["id"])
        second = await self.store.load()
        before = {r["id"]: r for r in first.routes}
        after = {r["id"]: r for r in second.routes}
        self.assertIs(second.services[0], first.services[0])
        self.assertIs(after[r1["id"]], before[r1["id"]])
        self.assertEqual(after[r1["id"]], r1)
        self.assertIsNot(after[r2["id"]], before[r2["id"]])
        self.assertEqual(after[r2["id"]], changed)
        self.assertEqual(second.consumers, ())

    async def test_load_empty(self) -> None:
        """
        C{load} of an empty database is version 0 and nothing else.
        """
        self.assertEqual(await self.store.load(), ConfigurationData(version=0))

    async def test_reachable(self) -> None:
        """
        A running server is reachable.
        """
        self.assertIs(await self.store.reachable(), True)


class PageTests(StoreTestCase):
    """
    Keyset pagination, tag filters and foreign-key filters.
    """

    async def test_pages(self) -> None:
        """
        Pages follow each other without gaps or repeats, and the last one
        has no next offset.
        """
        made = [await self.store.insert("services", service()) for _ in range(5)]
        seen: list[dict[str, Any]] = []
        offset = None
        sizes = []
        while True:
            records, offset = await self.store.page("services", 2, offset)
            sizes.append(len(records))
            seen.extend(records)
            if offset is None:
                break
        self.assertEqual(sizes, [2, 2, 1])
        self.assertEqual(sorted(r["id"] for r in seen), sorted(r["id"] for r in made))
        self.assertEqual([r["id"] for r in seen], sorted(r["id"] for r in seen))

    async def test_exact_last_page(self) -> None:
        """
        When the last page is full, it still says there is no next page.
        """
        for _ in range(4):
            await self.store.insert("services", service())
        _, offset = await self.store.page("services", 2)
        records, offset = await self.store.page("services", 2, offset)
        self.assertEqual((len(records), offset), (2, None))

    async def test_empty(self) -> None:
        """
        An empty table is one empty page.
        """
        self.assertEqual(await self.store.page("routes", 10), ([], None))

    async def test_bad_offset(self) -> None:
        """
        An offset that is not base64 is L{InvalidOffset}, Kong's 400.
        """
        e = await self.failure(self.store.page("services", 10, "%%%"), InvalidOffset)
        self.assertEqual(e.status, 400)
        self.assertEqual(e.body(), {"code": 7, "name": "invalid offset",
                                    "message": "'%%%' is not a valid offset: bad base64 encoding"})

    async def test_offset_not_an_id(self) -> None:
        """
        Valid base64 that does not hold an id is L{InvalidOffset} too.
        """
        offset = base64.urlsafe_b64encode(b"hello").decode()
        await self.failure(self.store.page("services", 10, offset), InvalidOffset)
        await self.failure(self.store.page(
            "services", 10, base64.urlsafe_b64encode(b"\xff\xfe").decode()), InvalidOffset)

    async def test_bad_size(self) -> None:
        """
        A size below one is a C{ValueError}.
        """
        await self.failure(self.store.page("services", 0), ValueError)

    async def test_tags_all(self) -> None:
        """
        C{tags} keeps the records that carry every tag.
        """
        both = await self.store.insert("services", service(tags=["a", "b"]))
        await self.store.insert("services", service(tags=["a"]))
        await self.store.insert("services", service())
        self.assertEqual(await self.store.page("services", 10, tags=["a", "b"]), ([both], None))

    async def test_tags_any(self) -> None:
        """
        With C{tags_any}, records that carry any of the tags.
        """
        a = await self.store.insert("services", service(tags=["a"]))
        b = await self.store.insert("services", service(tags=["b", "c"]))
        await self.store.insert("services", service(tags=["d"]))
        records, _ = await self.store.page("services", 10, tags=["a", "b"], tags_any=True)
        self.assertEqual(sorted(r["id"] for r in records), sorted([a["id"], b["id"]]))

    async def test_tags_paged(self) -> None:
        """
        A tag filter holds across pages.
        """
        tagged = [await self.store.insert("services", service(tags=["t"])) for _ in range(3)]
        for _ in range(3):
            await self.store.insert("services", service())
        first, offset = await self.store.page("services", 2, tags=["t"])
        second, last = await self.store.page("services", 2, offset, tags=["t"])
        self.assertEqual(sorted(r["id"] for r in first + second),
                         sorted(r["id"] for r in tagged))
        self.assertIsNone(last)

    async def test_where(self) -> None:
        """
        C{where} keeps the records whose foreign key names the entity.
        """
        s1 = await self.store.insert("services", service())
        s2 = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s1["id"]))
        await self.store.insert("routes", route(s2["id"]))
        loose = await self.store.insert("routes", route(None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": s1["id"]}),
                         ([r1], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": {"id": s1["id"]}}),
                         ([r1], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": None}),
                         ([loose], None))
        self.assertEqual(await self.store.page("routes", 10, where={"service": "not-an-id"}),
                         ([], None))

    async def test_where_plugins(self) -> None:
        """
        Plugins filter by consumer (and by any of their scopes).
        """
        c = await self.store.insert("consumers", consumer("alice"))
        p = await self.store.insert("plugins", plugin(consumer=c["id"]))
        await self.store.insert("plugins", plugin())
        self.assertEqual(await self.store.page("plugins", 10, where={"consumer": c["id"]}),
                         ([p], None))

    async def test_where_unknown(self) -> None:
        """
        Filtering by a field that is not a foreign key is a C{ValueError}.
        """
        await self.failure(self.store.page("routes", 10, where={"name": "x"}), ValueError)
