"""
Tests for L{echogate.store.postgres.PostgresStore.load} after the first: only rows
whose JSON text changed are read whole (by the MD5 the server lists for
each row) and decoded; the others are the records of the last load.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from echogate.store import postgres as store_module
from tests.store.test_postgres import StoreTestCase, consumer, route, service


class _RecordingCursor:
    """
    A cursor that records each statement and how many rows it fetched.
    """

    def __init__(self, cursor: Any, log: list[list[Any]], pieces: list[int] | None = None):
        self._cursor = cursor
        self._log = log
        self._pieces = pieces if pieces is not None else []

    async def execute(self, sql: str, params: Any = None) -> "_RecordingCursor":
        await self._cursor.execute(sql, params)
        self._log.append([sql, None])
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._log[-1][1] = len(rows)
        return rows

    def fetchmany(self, size: int) -> list[Any]:
        rows: list[Any] = self._cursor.fetchmany(size)
        self._log[-1][1] = (self._log[-1][1] or 0) + len(rows)
        self._pieces.append(len(rows))
        return rows


class LoadTests(StoreTestCase):
    """
    What a load reads, and what it hands back.
    """

    def setUp(self) -> Any:
        self.statements: list[list[Any]] = []
        real = store_module.transaction

        async def recording(connection: Any, body: Callable[[Any], Awaitable[Any]], begin: str = "BEGIN") -> Any:
            return await real(connection, lambda cursor: body(_RecordingCursor(cursor, self.statements)), begin)

        self.patch(store_module, "transaction", recording)
        # Every table is listed first, however small, unless a test says.
        self.patch(store_module.PostgresStore, "list_first_from", 0)
        return super().setUp()

    def _whole_rows(self, table: str) -> list[int]:
        """
        How many rows of C{table} each statement of the loads since the
        last C{statements.clear()} fetched with their JSON text.
        """
        return [fetched for sql, fetched in self.statements
                if f"FROM {table}" in sql and "entity::text FROM" in sql]

    async def test_onlyChangedRowsRead(self) -> None:
        """
        After a first load has read every row, a load after one route
        changed and one was added reads those two whole, and decodes
        nothing else.
        """
        s = await self.store.insert("services", service())
        routes = [await self.store.insert("routes", route(s["id"], f"r{n}")) for n in range(5)]
        await self.store.load()
        self.assertEqual(self._whole_rows("routes"), [5])
        changed = await self.store.update("routes", dict(routes[2], paths=["/changed"]))
        added = await self.store.insert("routes", route(s["id"], "r5"))
        decoded: list[str] = []
        loads = store_module.json.loads
        self.patch(store_module.json, "loads", lambda text: decoded.append(text) or loads(text))
        self.statements.clear()
        data = await self.store.load()
        self.assertEqual(self._whole_rows("routes"), [2])
        self.assertEqual(self._whole_rows("services"), [])
        self.assertEqual(len(decoded), 2)
        expected = routes[:2] + [changed] + routes[3:] + [added]
        self.assertEqual(sorted(data.routes, key=lambda r: r["id"]), sorted(expected, key=lambda r: r["id"]))

    async def test_nothingChanged(self) -> None:
        """
        A load with nothing changed reads no row whole, and hands back the
        very records of the last load, in their order.
        """
        s = await self.store.insert("services", service())
        for n in range(3):
            await self.store.insert("routes", route(s["id"], f"r{n}"))
        await self.store.insert("consumers", consumer("alice"))
        first = await self.store.load()
        self.statements.clear()
        second = await self.store.load()
        self.assertEqual(sum(fetched for sql, fetched in self.statements if "entity::text FROM" in sql), 0)
        for name in ("services", "routes", "consumers"):
            before, after = getattr(first, name), getattr(second, name)
            self.assertEqual(len(before), len(after), f"row name={name!r}")
            for a, b in zip(before, after):
                self.assertIs(a, b, f"row name={name!r} a={a!r} b={b!r}")

    async def test_sameContentRewritten(self) -> None:
        """
        A row written again with the same content keeps its record.
        """
        s = await self.store.insert("services", service())
        first = await self.store.load()
        await self.store.update("services", dict(s))
        second = await self.store.load()
        self.assertIs(second.services[0], first.services[0])

    async def test_deletedAndEmptied(self) -> None:
        """
        Rows deleted since the last load are gone, down to an empty table,
        and a table that fills again is read whole.
        """
        s = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s["id"], "r1"))
        r2 = await self.store.insert("routes", route(s["id"], "r2"))
        await self.store.load()
        await self.store.delete("routes", r1["id"])
        self.assertEqual((await self.store.load()).routes, (r2,))
        await self.store.delete("routes", r2["id"])
        self.assertEqual((await self.store.load()).routes, ())
        r3 = await self.store.insert("routes", route(s["id"], "r3"))
        self.statements.clear()
        self.assertEqual((await self.store.load()).routes, (r3,))
        self.assertEqual(self._whole_rows("routes"), [1])

    async def test_unicodeText(self) -> None:
        """
        Records with text beyond ASCII are told apart by their digests like
        any other.
        """
        s = await self.store.insert("services", service(tags=["café"]))
        await self.store.load()
        changed = await self.store.update("services", dict(s, tags=["cafè"]))
        self.assertEqual((await self.store.load()).services, (changed,))

    async def test_concurrentLoads(self) -> None:
        """
        Loads that overlap each read against the records they started
        with, and each hands back the whole configuration.
        """
        from twisted.internet.defer import gatherResults

        s = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s["id"], "r1"))
        await self.store.load()
        changed = await self.store.update("routes", dict(r1, paths=["/changed"]))
        r2 = await self.store.insert("routes", route(s["id"], "r2"))
        first, second = await gatherResults([self.store.load(), self.store.load()])
        expected = sorted([changed, r2], key=lambda r: r["id"])
        for data in (first, second, await self.store.load()):
            self.assertEqual(sorted(data.routes, key=lambda r: r["id"]), expected, f"row data={data!r}")

    async def test_smallTableReadWhole(self) -> None:
        """
        A table of fewer rows than C{list_first_from} is read whole, in one
        statement, and its unchanged records are still the last load's.
        """
        self.patch(store_module.PostgresStore, "list_first_from", 3)
        s = await self.store.insert("services", service())
        r1 = await self.store.insert("routes", route(s["id"], "r1"))
        first = await self.store.load()
        await self.store.insert("routes", route(s["id"], "r2"))
        self.statements.clear()
        second = await self.store.load()
        self.assertEqual([fetched for sql, fetched in self.statements if "FROM routes" in sql], [2])
        self.assertIs({r["id"]: r for r in second.routes}[r1["id"]], first.routes[0])
        await self.store.insert("routes", route(s["id"], "r3"))
        self.statements.clear()
        await self.store.load()
        self.assertEqual([fetched for sql, fetched in self.statements if "FROM routes" in sql], [3])
        self.statements.clear()
        await self.store.load()
        self.assertEqual([fetched for sql, fetched in self.statements if "FROM routes" in sql], [3])
        self.assertEqual(self._whole_rows("routes"), [])


def _listed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    C{records} in the order a load lists them (by creation time, then id).
    """
    return sorted(records, key=lambda record: (record["created_at"], record["id"]))


class PiecesTests(StoreTestCase):
    """
    A load takes rows from the driver, and decodes them, a piece at a time,
    the reactor loop turning in between; an unchanged row keeps its cache
    entry.
    """

    def setUp(self) -> Any:
        self.statements: list[list[Any]] = []
        self.pieces: list[int] = []
        real = store_module.transaction

        async def recording(connection: Any, body: Callable[[Any], Awaitable[Any]], begin: str = "BEGIN") -> Any:
            return await real(connection, lambda cursor: body(_RecordingCursor(cursor, self.statements, self.pieces)),
                              begin)

        self.patch(store_module, "transaction", recording)
        self.patch(store_module.PostgresStore, "list_first_from", 3)
        self.patch(store_module, "_PIECE", 2)
        self.patch(store_module, "_DECODE_PIECE", 1)
        self.turns = 0
        later = store_module.deferLater

        def counting(*args: Any) -> Any:
            self.turns += 1
            return later(*args)

        self.patch(store_module, "deferLater", counting)
        return super().setUp()

    async def test_inPieces(self) -> None:
        """
        No statement's rows are taken from the driver more than C{_PIECE} at
        a time, the loop turns between pieces, and the configuration is
        whole and in order, whether the rows are read whole (the first
        load) or listed (later ones).
        """
        s = await self.store.insert("services", service())
        routes = _listed([await self.store.insert("routes", route(s["id"], f"r{n}")) for n in range(7)])
        first = await self.store.load()
        self.assertEqual(first.routes, tuple(routes))
        self.assertGreaterEqual(self.turns, 7)
        self.assertLessEqual(max(self.pieces), 2)
        routes[3] = await self.store.update("routes", dict(routes[3], paths=["/changed"]))
        self.pieces.clear()
        self.turns = 0
        second = await self.store.load()
        self.assertEqual(second.routes, tuple(routes))
        self.assertGreaterEqual(self.turns, 4)
        self.assertEqual(sum(self.pieces), 7 + 1 + 1)  # the routes listed, the service and the changed route read
        self.assertLessEqual(max(self.pieces), 2)

    async def test_entriesKept(self) -> None:
        """
        A row whose digest did not change keeps the very cache entry (id
        string, digest, record) of the last load, so that a load frees
        little beyond what changed.
        """
        s = await self.store.insert("services", service())
        routes = _listed([await self.store.insert("routes", route(s["id"], f"r{n}")) for n in range(5)])
        await self.store.load()
        before = dict(self.store._decoded["routes"])
        await self.store.update("routes", dict(routes[1], paths=["/changed"]))
        await self.store.load()
        after = self.store._decoded["routes"]
        for r in routes:
            if r is routes[1]:
                self.assertIsNot(after[r["id"]], before[r["id"]])
            else:
                self.assertIs(after[r["id"]], before[r["id"]], f"row route={r['id']!r}")
        self.assertEqual([entry[0] for entry in after.values()], [r["id"] for r in routes])
