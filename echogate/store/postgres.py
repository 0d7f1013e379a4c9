"""
Entities in PostgreSQL, through txpostgres: L{PostgresStore}.

Each entity table keeps the whole Kong-shaped record in an C{entity}
jsonb column (that is what reads return) beside the real columns the
database must enforce: unique names, foreign keys, the one-plugin-per-scope
index. Every write is one transaction that writes the row, bumps the
single-row C{config_version} and runs C{NOTIFY echogate_config}, so that
every node learns of the change when it commits. How each entity maps to
its table, and which error a violated constraint becomes, is in
L{echogate.store.pgtables}; page offsets are in L{echogate.store.offsets}.

Nothing waits without a bound and broken connections are reopened: see
L{echogate.store.pgclient}.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Awaitable, Callable, Coroutine, Generator, Generic, Iterable, Mapping, TypeVar

import attrs
import psycopg2
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from txpostgres import txpostgres
from zope.interface import implementer

from echogate.errors import NotFound, UniqueViolation
from echogate.interfaces import IStore
from echogate.store.data import ConfigurationData
from echogate.store.migrations import SchemaOutdated, check_applied, read_status
from echogate.store.notices import NOTICES, NoticeListener
from echogate.store.offsets import decode_offset, encode_offset
from echogate.store.pgclient import BoundedPool, Connection, Deadlines, Listener, query, transaction
from echogate.store.pgtables import (
    CANONICAL_UUID,
    GENERIC,
    Declared,
    Table,
    key_text,
    parses_as_uuid,
    table_of,
    translate,
)
from echogate.store.tagged import decode_tag_offset, encode_tag_offset, tag_row

__all__ = ["PostgresStore", "SchemaOutdated", "CHANNEL", "check_schema_blocking"]

#: The LISTEN/NOTIFY channel; the payload is the new configuration version.
CHANNEL = "echogate_config"

_log = Logger(namespace="echogate.store")
_T = TypeVar("_T")


#: The tables L{PostgresStore.load} reads: L{ConfigurationData}'s fields
#: are named after them (C{plugin_entities}, the generic table, is read
#: too, each record with its entity's name).
_LOADED = tuple(f.name for f in attrs.fields(ConfigurationData) if f.name not in ("version", "plugin_entities"))

#: What L{PostgresStore.load} reads of each table's rows.
_READ = {**{name: "entity" for name in _LOADED},
         GENERIC.name: "(jsonb_build_object('entity', entity_name, 'record', entity))"}


async def _bump(cursor: txpostgres.Cursor) -> int:
    """
    Increase the configuration version; the notification goes out at
    commit.
    """
    await cursor.execute(
        "WITH v AS (UPDATE config_version SET version = version + 1 RETURNING version)"
        " SELECT version, pg_notify(%s, version::text) FROM v", (CHANNEL,))
    return int(cursor.fetchone()[0])


def _deferred(method: Callable[..., Coroutine[Any, Any, _T]]) -> Callable[..., Deferred[_T]]:
    """
    Make an C{async} method return a Deferred, so that bad arguments
    fail the Deferred too.
    """
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[_T]:
        return ensureDeferred(method(*args, **kwargs))

    return wrapper


class _Subscribers(Generic[_T]):
    """
    The callbacks subscribed to one kind of news (configuration changes,
    notices): one entry per subscription, so that a callback subscribed
    twice is unsubscribed once per subscription; a callback that raises
    is logged and the others still called.
    """

    def __init__(self, what: str):
        self._what = what
        self._entries: list[list[Callable[[_T], object]]] = []

    def add(self, callback: Callable[[_T], object]) -> Callable[[], None]:
        """
        Subscribe C{callback}; return what unsubscribes it.
        """
        entry = [callback]
        self._entries.append(entry)

        def unsubscribe() -> None:
            # (by identity: two subscriptions of one callback are equal lists)
            for index, subscribed in enumerate(self._entries):
                if subscribed is entry:
                    del self._entries[index]
                    return

        return unsubscribe

    def any(self) -> bool:
        """
        Whether anything is subscribed.
        """
        return bool(self._entries)

    def deliver(self, value: _T) -> None:
        """
        Call every subscriber with C{value}.
        """
        for (callback,) in list(self._entries):
            try:
                callback(value)
            except Exception:
                _log.failure("a {what} failed", what=self._what)


#: How many rows a load takes from the driver (and compares with the last
#: load's) between two turns of the reactor loop: about half a millisecond.
_PIECE = 1000

#: How many rows' JSON a load decodes between two turns of the reactor loop.
_DECODE_PIECE = 100


#: A cached row of a table: its id, the MD5 of its JSON text, its record.
_Entry = tuple[str, str, dict[str, Any]]


@attrs.define
class _Table:
    """
    What a load found of one table.

    @ivar entries: every row's id to its cache entry (L{_Entry}), in the
        order listed; C{None} for a row in C{changed} until it is decoded.
    @ivar changed: the id of each row whose digest the last load did not
        have, to its digest and JSON text (C{None} until fetched).
    """

    entries: dict[str, Any]
    changed: dict[str, tuple[str, str | None]]

    def take(self, known: Mapping[str, _Entry], rows: Iterable[tuple[Any, ...]]) -> None:
        """
        File the rows C{(id, digest)} or C{(id, digest, JSON text)} listed,
        against the entries of the last load, C{known}: a row whose digest
        it has keeps that entry (and its id string, so that the last load's
        are not freed all at once with its cache).
        """
        entries, changed = self.entries, self.changed
        for row in rows:
            seen = known.get(row[0])
            if seen is not None and seen[1] == row[1]:
                entries[seen[0]] = seen
            else:
                entries[row[0]] = None
                changed[row[0]] = (row[1], row[2] if len(row) > 2 else None)


@implementer(IStore)
class PostgresStore:
    """
    L{IStore} on PostgreSQL (see the module docstring).

    @param reactor: the reactor everything runs on (its time; txpostgres
        also uses its file descriptors).
    @param dsn: a libpq connection string or URI.
    @param pool_size: how many connections serve queries at once.
    @param query_timeout: seconds after which any call fails with
        L{echogate.errors.DatabaseUnavailable}.
    @param reconnect_delays: the first and the longest pause between
        attempts to reach a server that is down.
    @param heartbeat: seconds between checks that the LISTEN connection
        still answers.
    """

    #: From how many rows (at the last load) a table is listed by digest
    #: before its changed rows are read whole (see L{load}).
    list_first_from = 200

    def __init__(self, reactor: IReactorTime, dsn: str, *,
                 pool_size: int = 4, query_timeout: float = 5.0,
                 reconnect_delays: tuple[float, float] = (0.1, 10.0),
                 heartbeat: float = 30.0):
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if query_timeout <= 0:
            raise ValueError("query_timeout must be positive")
        self.dsn = dsn
        #: What the last L{load} decoded: table -> id -> (id, MD5 of the JSON text, record).
        self._decoded: dict[str, dict[str, Any]] = {}
        self._clock = reactor
        self._bounded = Deadlines(reactor, query_timeout)
        self._pool = BoundedPool(reactor, dsn, pool_size, self._bounded, reconnect_delays)
        self._listener = Listener(reactor, dsn, CHANNEL, self._bounded, reconnect_delays,
                                  heartbeat, self._deliver)
        self._subscribers: _Subscribers[int | None] = _Subscribers("configuration change subscriber")
        # Node-to-node notices (echogate.store.notices): LISTENed to on a
        # connection of their own, from the first subscription on.
        self._notices = NoticeListener(reactor, dsn, self._bounded, reconnect_delays, heartbeat,
                                       self._deliver_notice)
        self._notice_subscribers: _Subscribers[str | None] = _Subscribers("notice subscriber")
        self._notices_started = False
        #: The entities plugins declare, kept in the generic table (L{declare}).
        self._declared: dict[str, Declared] = {}

    def declare(self, entity: str, *, unique: Iterable[str] = (), keys: Iterable[str] = (),
                foreign: Mapping[str, str] | None = None) -> None:
        """
        Keep the records of C{entity}, an entity a plugin declares, in the
        generic table C{plugin_entities} (migration 6: no migration of the
        plugin's own): C{unique} fields unique among its records (by the
        rows of C{plugin_entity_keys}, in the write's transaction), C{keys}
        accepted by L{get} besides the id, C{foreign} fields (C{consumer},
        C{service} or C{route}) referencing their parent, deleted with it.

        @raise ValueError: C{entity} is a core entity, or a foreign field
            is not one of those.
        """
        try:
            table_of(entity)
        except ValueError:
            pass
        else:
            raise ValueError(f"{entity!r} is a core entity")
        foreign = dict(foreign or {})
        for field, parent in foreign.items():
            if GENERIC.foreign.get(field) != parent:
                raise ValueError(f"{entity!r}: {field!r} cannot reference {parent!r}")
        self._declared[entity] = Declared(entity, tuple(unique), tuple(keys), tuple(foreign))

    @_deferred
    async def start(self) -> None:
        """
        Connect: open the LISTEN connection. After L{stop}, starts again.

        @raise DatabaseUnavailable: the server cannot be reached in time.
        """
        self._pool.closed = False
        await self._listener.start()
        if self._notice_subscribers.any() and not self._notices_started:
            self._notices_started = True
            self._notices.begin()

    @_deferred
    async def stop(self) -> None:
        """
        Close every connection and stop reconnecting.
        """
        self._listener.stop()
        self._notices.stop()
        self._notices_started = False
        self._pool.close()

    # -- notifications

    def subscribe(self, callback: Callable[[int | None], object]) -> Callable[[], None]:
        """
        See L{IStore.subscribe}.
        """
        return self._subscribers.add(callback)

    def _deliver(self, version: int | None) -> None:
        self._subscribers.deliver(version)

    def subscribe_notices(self, callback: Callable[[str | None], object]) -> Callable[[], None]:
        """
        Call C{callback(text)} with each notice any node sends with
        L{notify_nodes} (this node's own included), and C{callback(None)}
        once the notices' connection was lost and regained. The first
        subscription opens that connection. Returns a callable that
        unsubscribes.
        """
        unsubscribe = self._notice_subscribers.add(callback)
        if not self._notices_started:
            self._notices_started = True
            self._notices.begin()
        return unsubscribe

    def _deliver_notice(self, text: str | None) -> None:
        self._notice_subscribers.deliver(text)

    @_deferred
    async def notify_nodes(self, text: str) -> None:
        """
        Send C{text} (under 8000 bytes) to every node's L{subscribe_notices}
        callbacks, through C{NOTIFY echogate_notices}.
        """
        async def work(connection: Connection) -> None:
            await query(connection, "SELECT pg_notify(%s, %s)", (NOTICES, text))

        await self._run(work)

    # -- reads

    async def _run(self, work: Callable[[Connection], Awaitable[_T]],
                   force: bool = False) -> _T:
        return await self._pool.run(work, force)

    @_deferred
    async def get(self, entity: str, key: str) -> dict[str, Any] | None:
        """
        See L{IStore.get}.
        """
        declared = self._declared.get(entity)
        if declared is not None:
            return await self._get_declared(declared, key)
        table = table_of(entity)
        if parses_as_uuid(key) and CANONICAL_UUID.match(key):
            # Only the dashed form is an id: a 32-hex-digit key (as Kong
            # generates for key-auth) is a key, though uuid.UUID reads it.
            sql = f"SELECT entity FROM {table.name} WHERE id = %s"
            params: tuple[str, ...] = (key,)
        elif table.keys and isinstance(key, str):
            matches = " OR ".join(f"{k} = %s" for k in table.keys)
            sql = (f"SELECT entity FROM {table.name} WHERE {matches}"
                   f" ORDER BY {table.keys[0]} = %s DESC LIMIT 1")
            params = (key,) * (len(table.keys) + 1)
        else:
            return None

        async def work(connection: Connection) -> dict[str, Any] | None:
            rows = await query(connection, sql, params)
            return rows[0][0] if rows else None

        return await self._run(work)

    async def _get_declared(self, declared: Declared, key: str) -> dict[str, Any] | None:
        if parses_as_uuid(key) and CANONICAL_UUID.match(key):
            sql = f"SELECT entity FROM {GENERIC.name} WHERE id = %s AND entity_name = %s"
            params: tuple[Any, ...] = (key, declared.name)
        elif declared.keys and isinstance(key, str):
            sql = (f"SELECT e.entity FROM plugin_entity_keys k JOIN {GENERIC.name} e ON e.id = k.id"
                   " WHERE k.entity_name = %s AND k.field = ANY(%s) AND k.value = %s"
                   " ORDER BY k.field = %s DESC LIMIT 1")
            params = (declared.name, list(declared.keys), key, declared.keys[0])
        else:
            return None

        async def work(connection: Connection) -> dict[str, Any] | None:
            rows = await query(connection, sql, params)
            return rows[0][0] if rows else None

        return await self._run(work)

    @_deferred
    async def page(self, entity: str, size: int, offset: str | None = None,
             tags: Iterable[str] | None = None, tags_any: bool = False,
             where: Mapping[str, Any] | None = None,
             ) -> tuple[list[dict[str, Any]], str | None]:
        """
        See L{IStore.page}.

        @raise InvalidOffset: C{offset} was not made by this store.
        @raise ValueError: C{size} below 1, or an unknown C{where} key.
        """
        declared = self._declared.get(entity)
        table = table_of(entity) if declared is None else GENERIC
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        conditions: list[str] = []
        params: list[Any] = []
        if declared is not None:
            conditions.append("entity_name = %s")
            params.append(entity)
        if offset is not None:
            conditions.append("id > %s")
            params.append(decode_offset(offset))
        tags = list(tags) if tags is not None else []
        if tags:
            conditions.append("tags && %s::text[]" if tags_any else "tags @> %s::text[]")
            params.append(tags)
        for field, value in (where or {}).items():
            if field not in (table.foreign if declared is None else declared.foreign):
                raise ValueError(f"{entity} cannot be filtered by {field!r}")
            value = value.get("id") if isinstance(value, Mapping) else value
            if value is None:
                conditions.append(f"{field}_id IS NULL")
            elif not parses_as_uuid(value):
                return [], None
            else:
                conditions.append(f"{field}_id = %s")
                params.append(value)
        sql = (f"SELECT id, entity FROM {table.name}"
               + (" WHERE " + " AND ".join(conditions) if conditions else "")
               + " ORDER BY id LIMIT %s")
        params.append(size + 1)

        async def work(connection: Connection) -> tuple[list[dict[str, Any]], str | None]:
            rows = await query(connection, sql, params)
            if len(rows) <= size:
                return [entity for _, entity in rows], None
            rows = rows[:size]
            return [entity for _, entity in rows], encode_offset(str(rows[-1][0]))

        return await self._run(work)

    @_deferred
    async def tagged(self, tag: str | None, size: int, offset: str | None = None,
                     ) -> tuple[list[dict[str, Any]], str | None]:
        """
        See L{IStore.tagged}: one C{UNION ALL} over every entity table
        (L{ConfigurationData}'s, and the generic table of the plugins'
        entities, each row named by its entity), each branch unnesting its C{tags} (with
        C{tag}, only the rows carrying it, by the tags' GIN index) after
        the offset's position, in order and limited, so that each table
        is read only as far as the page needs.

        @raise InvalidOffset: C{offset} was not made by this method.
        @raise ValueError: C{size} below 1.
        """
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        after = decode_tag_offset(offset) if offset is not None else None
        branches: list[str] = []
        params: list[Any] = []
        for name in _LOADED:
            conditions = ["tags IS NOT NULL"]
            if tag is not None:
                conditions.append("tags @> ARRAY[%s]::text[] AND t.tag = %s")
                params += [tag, tag]
            if after is not None:
                # (id, name, position) > after, with this branch's name known here.
                last_id, last_name, last_position = after
                if name > last_name:
                    conditions.append("id >= %s::uuid")
                    params.append(last_id)
                elif name < last_name:
                    conditions.append("id > %s::uuid")
                    params.append(last_id)
                else:
                    conditions.append("id >= %s::uuid AND (id, t.position) > (%s::uuid, %s)")
                    params += [last_id, last_id, last_position]
            branches.append(
                f"(SELECT id, text '{name}' COLLATE \"C\" AS entity_name, t.tag, t.position"
                f" FROM {name}, unnest(tags) WITH ORDINALITY AS t (tag, position)"
                f" WHERE {' AND '.join(conditions)} ORDER BY id, t.position LIMIT %s)")
            params.append(size + 1)
        # The generic table of the plugins' entities: each row's entity
        # name is its own, so the offset's position is compared in SQL.
        conditions = ["tags IS NOT NULL"]
        if tag is not None:
            conditions.append("tags @> ARRAY[%s]::text[] AND t.tag = %s")
            params += [tag, tag]
        if after is not None:
            last_id, last_name, last_position = after
            conditions.append("id >= %s::uuid AND (id, entity_name COLLATE \"C\", t.position)"
                              " > (%s::uuid, %s COLLATE \"C\", %s)")
            params += [last_id, last_id, last_name, last_position]
        branches.append(
            f"(SELECT id, entity_name COLLATE \"C\" AS entity_name, t.tag, t.position"
            f" FROM {GENERIC.name}, unnest(tags) WITH ORDINALITY AS t (tag, position)"
            f" WHERE {' AND '.join(conditions)} ORDER BY id, entity_name COLLATE \"C\", t.position LIMIT %s)")
        params.append(size + 1)
        sql = (" UNION ALL ".join(branches)
               + " ORDER BY id, entity_name, position LIMIT %s")
        params.append(size + 1)

        async def work(connection: Connection) -> tuple[list[dict[str, Any]], str | None]:
            rows = await query(connection, sql, params)
            found = [tag_row(str(id), name, value) for id, name, value, _ in rows[:size]]
            if len(rows) <= size:
                return found, None
            id, name, _, position = rows[size - 1]
            return found, encode_tag_offset((str(id), name, int(position)))

        return await self._run(work)

    @_deferred
    async def load(self) -> ConfigurationData:
        """
        See L{IStore.load}. Only rows that changed since the last load are
        read whole and decoded: for a table read before, the server lists
        each row's id and the MD5 of its JSON text, and only the rows whose
        digest is new are fetched; the others are the records that load
        made (snapshots never change their records). With 10,000 routes,
        every row's text is some 4 MB, which a node under load takes in
        one read per turn of its reactor loop, between requests. A table
        of fewer than L{list_first_from} rows is read whole in one
        statement: listing first would cost it a second round trip.

        The rows are taken from the driver, compared and decoded a piece
        at a time (L{_PIECE}, L{_DECODE_PIECE}), the reactor loop turning
        in between; an unchanged row keeps the very cache entry of the
        last load (its id, digest and record), so that a load makes and
        frees little beyond the rows that changed.
        """
        cache = self._decoded

        async def turn() -> None:
            await deferLater(self._clock, 0, lambda: None)

        taken = [0]

        async def took(count: int) -> None:
            # The loop turns once a piece's worth of rows was taken, over tables.
            taken[0] += count
            if taken[0] >= _PIECE:
                taken[0] = 0
                await turn()

        async def body(cursor: txpostgres.Cursor) -> tuple[int, dict[str, _Table]]:
            await cursor.execute("SELECT version FROM config_version")
            version = int(cursor.fetchone()[0])
            found: dict[str, _Table] = {}
            for name, read in _READ.items():
                known = cache.get(name, {})
                table = found[name] = _Table({}, {})
                if len(known) < self.list_first_from:
                    await cursor.execute(f"SELECT id::text, md5({read}::text), {read}::text FROM {name}"
                                         " ORDER BY created_at, id")
                    while rows := cursor.fetchmany(_PIECE):
                        table.take(known, rows)
                        await took(len(rows))
                    continue
                await cursor.execute(f"SELECT id::text, md5({read}::text) FROM {name} ORDER BY created_at, id")
                while rows := cursor.fetchmany(_PIECE):
                    table.take(known, rows)
                    await took(len(rows))
                if table.changed:
                    await cursor.execute(f"SELECT id::text, {read}::text FROM {name} WHERE id = ANY(%s::uuid[])",
                                         (list(table.changed),))
                    while rows := cursor.fetchmany(_PIECE):
                        for row_id, text in rows:
                            table.changed[row_id] = (table.changed[row_id][0], text)
                        await took(len(rows))
            return version, found

        version, tables = await self._run(lambda connection: transaction(
            connection, body, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        steps = self._decoding(version, tables)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                data: ConfigurationData = done.value
                return data
            await turn()

    def _decoding(self, version: int, found: Mapping[str, _Table]) -> Generator[None, None, ConfigurationData]:
        """
        The configuration from what a load C{found}, in steps (yielding
        between pieces): the rows that changed decoded, and each table's
        records in the order listed; the tables' entries become the cache
        of the next load.
        """
        loads = json.loads
        tables: dict[str, tuple[dict[str, Any], ...]] = {}
        # Work done since the last pause, in rows collected (a decoded row
        # counts as _PIECE / _DECODE_PIECE of them).
        done = 0
        for name, table in found.items():
            entries = table.entries
            for row_id, (digest, text) in table.changed.items():
                if text is None:  # (listed, then not read: not in one transaction)
                    raise LookupError(f"{name} row {row_id} was listed but could not be read")
                entries[row_id] = (row_id, digest, loads(text))
                done += _PIECE // _DECODE_PIECE
                if done >= _PIECE:
                    done = 0
                    yield None
            listed = list(entries.values())
            records: list[dict[str, Any]] = []
            for start in range(0, len(listed), _PIECE):
                piece = listed[start:start + _PIECE]
                records += [entry[2] for entry in piece]
                done += len(piece)
                if done >= _PIECE:
                    done = 0
                    yield None
            tables[name] = tuple(records)
        self._decoded = {name: table.entries for name, table in found.items()}
        tables["plugin_entities"] = tables.pop(GENERIC.name, ())
        return ConfigurationData(version=version, **tables)

    @_deferred
    async def version(self) -> int:
        """
        See L{IStore.version}.
        """
        async def work(connection: Connection) -> int:
            rows = await query(connection, "SELECT version FROM config_version")
            return int(rows[0][0])

        return await self._run(work)

    def reachable(self) -> Deferred[bool]:
        """
        Fire with whether the server answers a C{SELECT 1} in time (never
        fails; tries to connect even while backing off).
        """
        async def work(connection: Connection) -> bool:
            await query(connection, "SELECT 1")
            return True

        return ensureDeferred(self._run(work, force=True)).addErrback(lambda _: False)

    @_deferred
    async def check_schema(self) -> None:
        """
        Fail with L{SchemaOutdated} when the schema is missing or
        migrations are pending.
        """
        async def work(connection: Connection) -> None:
            rows = await query(connection, "SELECT to_regclass('schema_migrations') IS NOT NULL")
            versions = None
            if rows[0][0]:
                versions = [v for (v,) in await query(
                    connection, "SELECT version FROM schema_migrations")]
            check_applied(versions, self.dsn)

        return await self._run(work)

    # -- writes

    async def _write(self, table: Table, record: Mapping[str, Any],
                     body: Callable[[txpostgres.Cursor], Awaitable[_T]]) -> _T:
        async def work(connection: Connection) -> _T:
            try:
                return await transaction(connection, body)
            except psycopg2.IntegrityError as e:
                raise translate(e, table, record) from None

        return await self._run(work)

    async def _keys(self, cursor: txpostgres.Cursor, entity: str, record: Mapping[str, Any]) -> None:
        """
        For an entity a plugin declares, the rows of its record's unique
        values: replaced, and a value another record of the entity holds is
        a L{UniqueViolation} (which rolls the write back).
        """
        declared = self._declared.get(entity)
        if declared is None:
            return
        await cursor.execute("DELETE FROM plugin_entity_keys WHERE id = %s", (record["id"],))
        for field in declared.unique:
            value = key_text(record.get(field))
            if value is None:
                continue
            await cursor.execute(
                "INSERT INTO plugin_entity_keys (entity_name, field, value, id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING id", (entity, field, value, record["id"]))
            if cursor.fetchone() is None:
                raise UniqueViolation({field: record.get(field)})

    async def _changed(self, table: Table, sql: str, params: Any,
                       record: Mapping[str, Any], entity: str = "") -> dict[str, Any]:
        async def body(cursor: txpostgres.Cursor) -> dict[str, Any]:
            await cursor.execute(sql, params)
            row = cursor.fetchone()
            if row is None:
                raise NotFound(
                    f"could not find the entity with primary key '{{id=\"{record['id']}\"}}'",
                    {"id": record["id"]})
            await self._keys(cursor, entity, record)
            await _bump(cursor)
            stored: dict[str, Any] = row[0]
            return stored

        return await self._write(table, record, body)

    def _statement(self, operation: str, entity: str,
                   record: Mapping[str, Any]) -> tuple[Table, str, list[Any]]:
        """
        The SQL of one write: C{operation} is C{"insert"}, C{"update"},
        C{"upsert"} or C{"delete"} (of C{record["id"]}).
        """
        declared = self._declared.get(entity)
        table = table_of(entity) if declared is None else GENERIC
        # The generic table's rows name their entity, which a write never changes.
        mine = f" AND {table.name}.entity_name = %s" if declared is not None else ""
        same: list[Any] = [entity] if declared is not None else []
        if operation == "delete":
            if not parses_as_uuid(record["id"]):
                raise NotFound(
                    f"could not find the entity with primary key '{{id=\"{record['id']}\"}}'",
                    {"id": record["id"]})
            return table, f"DELETE FROM {table.name} WHERE id = %s{mine} RETURNING entity", [record["id"], *same]
        row = table.row(record)
        if declared is not None:
            row["entity_name"] = entity
        names = ", ".join(row)
        values = ", ".join(["%s"] * len(row))
        if operation == "insert":
            return table, f"INSERT INTO {table.name} ({names}) VALUES ({values}) RETURNING entity", list(row.values())
        if operation == "upsert":
            sets = ", ".join(f"{name} = EXCLUDED.{name}" for name in row if name != "id")
            guard = f" WHERE {table.name}.entity_name = EXCLUDED.entity_name" if declared is not None else ""
            return (table, f"INSERT INTO {table.name} ({names}) VALUES ({values})"
                    f" ON CONFLICT (id) DO UPDATE SET {sets}{guard} RETURNING entity", list(row.values()))
        if operation == "update":
            rid = row.pop("id")
            sets = ", ".join(f"{name} = %s" for name in row)
            return (table, f"UPDATE {table.name} SET {sets} WHERE id = %s{mine} RETURNING entity",
                    [*row.values(), rid, *same])
        raise ValueError(f"unknown write operation {operation!r}")

    @_deferred
    async def insert(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        See L{IStore.insert}.
        """
        return await self._changed(*self._statement("insert", entity, record), record, entity)

    @_deferred
    async def update(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        See L{IStore.update}.
        """
        return await self._changed(*self._statement("update", entity, record), record, entity)

    @_deferred
    async def upsert(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """
        See L{IStore.upsert}.
        """
        return await self._changed(*self._statement("upsert", entity, record), record, entity)

    @_deferred
    async def write(self, operations: list[tuple[str, str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """
        See L{IStore.write}: several writes, all or nothing; a
        C{"delete"} cascades as L{delete} does and fires with the record
        deleted.
        """
        statements = [(self._statement(op, entity, record), record, op, entity)
                      for op, entity, record in operations]
        current: list[Any] = [statements[0][0][0], statements[0][1]]

        async def body(cursor: txpostgres.Cursor) -> list[dict[str, Any]]:
            out = []
            for (table, sql, params), record, op, entity in statements:
                current[:] = [table, record]
                await cursor.execute(sql, params)
                row = cursor.fetchone()
                if row is None:
                    raise NotFound(
                        f"could not find the entity with primary key '{{id=\"{record['id']}\"}}'",
                        {"id": record["id"]})
                if op != "delete":
                    await self._keys(cursor, entity, record)
                out.append(row[0])
            await _bump(cursor)
            return out

        async def work(connection: Connection) -> list[dict[str, Any]]:
            try:
                return await transaction(connection, body)
            except psycopg2.IntegrityError as e:
                raise translate(e, current[0], current[1]) from None

        return await self._run(work)

    @_deferred
    async def delete(self, entity: str, id: str) -> bool:
        """
        See L{IStore.delete}.
        """
        declared = self._declared.get(entity)
        table = table_of(entity) if declared is None else GENERIC
        if not parses_as_uuid(id):
            return False
        sql = f"DELETE FROM {table.name} WHERE id = %s RETURNING id"
        params: tuple[str, ...] = (id,)
        if declared is not None:
            sql, params = (f"DELETE FROM {table.name} WHERE id = %s AND entity_name = %s RETURNING id",
                           (id, entity))

        async def body(cursor: txpostgres.Cursor) -> bool:
            await cursor.execute(sql, params)
            if cursor.fetchone() is None:
                return False
            await _bump(cursor)
            return True

        return await self._write(table, {"id": id}, body)


def check_schema_blocking(dsn: str) -> None:
    """
    L{PostgresStore.check_schema} with a short blocking connection, for
    start-up checks before the reactor runs.

    @raise SchemaOutdated: migrations are pending or there is no schema.
    @raise echogate.store.migrations.BadDSN: C{dsn} cannot be parsed.
    @raise echogate.store.migrations.Unreachable: the server cannot be reached.
    """
    applied, pending = read_status(dsn)
    check_applied([a.version for a in applied] if applied or not pending else None, dsn)
