"""
Where rate-limiting counts requests: the policies.

A policy's C{consume(identifier, limits, now)} counts one request against
C{identifier} in the current window of every period in C{limits} (period
name to limit), unless one of them has already reached its limit, and
returns the L{Usage} it saw before counting (or a Deferred of it). It
raises (or fails with) L{StoreUnavailable} when its counters cannot be
reached.

  - L{LocalPolicy}: counters in this node's memory, exact for this node.
  - L{BatchedPolicy} over an L{ICounterStore} (L{PostgresCounters} for
    C{cluster}, L{echogate.bundled.ratelimit_redis.RedisCounters} for
    C{redis} with a C{sync_rate}): counters shared by every node, synced
    in batches. A node counts locally and adds its counts to the store
    every C{interval} seconds, learning the other nodes' totals in the
    same statement; it never holds more than C{max(1, limit // 10)}
    unsynced requests of one counter (a request past that waits for the
    sync). Across N nodes the requests let through in a window are at
    most C{limit + (N - 1) * max(1, limit // 10)}.
"""
from __future__ import annotations

import calendar
import datetime
from typing import Any, Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

__all__ = ["PERIODS", "window", "Usage", "StoreUnavailable", "IRateLimitPolicy", "ICounterStore",
           "LocalPolicy", "BatchedPolicy", "PostgresCounters"]

_log = Logger(namespace="echogate.plugins.rate-limiting")

#: The periods, shortest first.
PERIODS = ("second", "minute", "hour", "day", "month", "year")
_FIXED = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

CounterKey = tuple[str, str, int]


def window(period: str, now: float) -> tuple[int, int]:
    """
    The UTC window of C{period} that contains C{now}: C{(start, end)} in
    integer seconds (months and years are calendar months and years).
    """
    seconds = int(now)
    length = _FIXED.get(period)
    if length is not None:
        start = seconds - seconds % length
        return start, start + length
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    if period == "month":
        first = (moment.year, moment.month)
        following = (moment.year + (moment.month == 12), moment.month % 12 + 1)
    elif period == "year":
        first, following = (moment.year, 1), (moment.year + 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return (calendar.timegm((*first, 1, 0, 0, 0)), calendar.timegm((*following, 1, 0, 0, 0)))


@attrs.frozen
class Usage:
    """
    What a policy saw for one request.

    @ivar counts: period to the number of requests already counted in its
        current window (before this one).
    @ivar stop: a period whose limit was already reached (the request was
        not counted), or C{None} (it was counted).
    """

    counts: Mapping[str, int]
    stop: str | None


class StoreUnavailable(Exception):
    """
    The counters cannot be reached (the database or Redis is down, or did
    not answer in time).
    """


class IRateLimitPolicy(Interface):
    """
    Counts requests per identifier and period.
    """

    def consume(identifier: str, limits: Mapping[str, float], now: float) -> Any:  # noqa: N805 (an Interface)
        """
        Count one request unless a limit is reached; return (or fire with)
        a L{Usage}. Raise (or fail with) L{StoreUnavailable}.
        """


class ICounterStore(Interface):
    """
    Counters shared by every node (PostgreSQL, Redis).
    """

    def add(increments: Sequence[tuple[CounterKey, int, int]]) -> Deferred:  # noqa: N805 (an Interface)
        """
        Add each C{(key, amount, expires_at)} and fire with C{{key: total}}
        (the counter's value after the addition, every node's counts
        included). With no increments, check that the store answers.
        Fails with L{StoreUnavailable}.
        """

    def close() -> Deferred:
        """
        Close the connections.
        """


@implementer(IRateLimitPolicy)
class LocalPolicy:
    """
    Counters in this node's memory; each period keeps only its current
    window.
    """

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, dict[str, int]]] = {}

    def consume(self, identifier: str, limits: Mapping[str, float], now: float) -> Usage:
        counts: dict[str, int] = {}
        tables = []
        stop = None
        for period, limit in limits.items():
            start, _ = window(period, now)
            current = self._windows.get(period)
            if current is None or current[0] != start:
                current = self._windows[period] = (start, {})
            used = current[1].get(identifier, 0)
            counts[period] = used
            if used >= limit:
                stop = period
            tables.append(current[1])
        if stop is None:
            for table in tables:
                table[identifier] = table.get(identifier, 0) + 1
        return Usage(counts, stop)

    def count(self, identifier: str, period: str, start: int, limit: float) -> int:
        """
        C{consume} for one period, without a L{Usage}: count one request
        against C{identifier} in the window of C{period} that starts at
        C{start} (L{window}'s) unless C{limit} is reached, and return how
        many were counted in it before (the request was counted if that
        is below C{limit}). The same counters as C{consume}'s.
        """
        current = self._windows.get(period)
        if current is None or current[0] != start:
            current = self._windows[period] = (start, {})
        table = current[1]
        used = table.get(identifier, 0)
        if used < limit:
            table[identifier] = used + 1
        return used


class _Counter:
    __slots__ = ("known", "pending", "inflight", "expires")

    def __init__(self, expires: int):
        self.known = 0
        self.pending = 0
        self.inflight = 0
        self.expires = expires


def batch_size(limit: float) -> int:
    """
    The most requests of one counter a node lets through before it syncs.
    """
    return max(1, int(limit // 10))


@implementer(IRateLimitPolicy)
class BatchedPolicy:
    """
    Counters shared through an L{ICounterStore}, synced in batches (see the
    module docstring for the bound this keeps).

    @param interval: seconds between syncs while there are counts to add.
    @param retry_interval: seconds between attempts to reach a store that
        is down.
    """

    def __init__(self, clock: IReactorTime, store: ICounterStore, interval: float = 0.1, retry_interval: float = 1.0,
                 name: str = "counters"):
        self._clock = clock
        self._store = store
        self._interval = interval
        self._retry_interval = retry_interval
        self._name = name
        self._counters: dict[CounterKey, _Counter] = {}
        self._flushing: Deferred | None = None
        self._timer: IDelayedCall | None = None
        self._down: str | None = None
        self._retry_at = 0.0
        self._stopped = False
        self.syncs = 0

    def consume(self, identifier: str, limits: Mapping[str, float], now: float) -> Usage | Deferred:
        if self._down is not None:
            if now >= self._retry_at and self._flushing is None:
                self._retry_at = now + self._retry_interval
                self._flush()
            raise StoreUnavailable(self._down)
        counters = []
        for period, limit in limits.items():
            start, end = window(period, now)
            key = (identifier, period, start)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter(end)
            counters.append((period, limit, counter))
        if any(c.pending + c.inflight >= batch_size(limit) for _, limit, c in counters):
            waiting = self._flush()
            return waiting.addCallback(lambda _: self.consume(identifier, limits, self._clock.seconds()))
        counts = {period: c.known + c.pending + c.inflight for period, _, c in counters}
        stop = None
        for period, limit, _ in counters:
            if counts[period] >= limit:
                stop = period
        if stop is None:
            for _, _, counter in counters:
                counter.pending += 1
            self._schedule()
        return Usage(counts, stop)

    def _schedule(self) -> None:
        if self._timer is None and self._flushing is None and not self._stopped:
            delay = self._interval if self._down is None else self._retry_interval
            self._timer = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if any(c.pending for c in self._counters.values()):
            self._flush()

    def _flush(self) -> Deferred:
        """
        Start a sync (unless one runs); fire (with C{None}) when the running
        one is done, whatever its outcome.
        """
        if self._flushing is None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            syncing = ensureDeferred(self._sync())
            if syncing.called:
                self._synced()
                return succeed(None)
            self._flushing = syncing
            syncing.addBoth(self._passing_synced)
        waiter: Deferred[None] = Deferred()

        def wake(result: object) -> object:
            waiter.callback(None)
            return result

        self._flushing.addBoth(wake)
        return waiter

    def _passing_synced(self, result: object) -> object:
        """
        L{_synced}, then C{result} passed on (the sync's outcome).
        """
        self._synced()
        return result

    def _synced(self) -> None:
        self._flushing = None
        if any(c.pending for c in self._counters.values()):
            self._schedule()

    async def _sync(self) -> None:
        now = self._clock.seconds()
        batch = []
        for key, counter in list(self._counters.items()):
            if counter.expires <= now:
                del self._counters[key]
                continue
            if counter.pending:
                counter.inflight, counter.pending = counter.pending, 0
                batch.append((key, counter))
        if not batch and self._down is None:
            return
        try:
            totals = await self._store.add([(key, c.inflight, c.expires) for key, c in batch])
        except Exception as e:
            for _, counter in batch:
                counter.pending += counter.inflight
                counter.inflight = 0
            why = str(e) or type(e).__name__
            if self._down is None:
                _log.error("rate-limiting: cannot sync the {name} ({why}); their limits are not"
                           " enforced until they are back", name=self._name, why=why)
                self._retry_at = self._clock.seconds() + self._retry_interval
            self._down = why
        else:
            self.syncs += 1
            for key, counter in batch:
                counter.known = totals.get(key, counter.known + counter.inflight)
                counter.inflight = 0
            if self._down is not None:
                _log.info("rate-limiting: the {name} are reachable again", name=self._name)
                self._down = None

    def stop(self) -> Deferred:
        """
        Stop syncing: one last sync of what is pending, then close the store.
        """
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        last = self._flush() if any(c.pending for c in self._counters.values()) else succeed(None)
        return last.addCallback(lambda _: self._store.close())


_UPSERT_ROW = "(%s, %s, %s, %s, %s)"


@implementer(ICounterStore)
class PostgresCounters:
    """
    The C{cluster} policy's counters, in the C{ratelimiting_counters} table
    (migration 3), through one connection of their own. Expired rows are
    deleted about once a minute.
    """

    def __init__(self, reactor: IReactorTime, dsn: str, timeout: float = 2.0):
        from echogate.store.pgclient import BoundedPool, Deadlines

        self._reactor = reactor
        self._pool = BoundedPool(reactor, dsn, 1, Deadlines(reactor, timeout), (0.1, 5.0))
        self._next_cleanup = 0.0

    def add(self, increments: Sequence[tuple[CounterKey, int, int]]) -> Deferred:
        return ensureDeferred(self._add(list(increments)))

    async def _add(self, increments: list[tuple[CounterKey, int, int]]) -> dict[CounterKey, int]:
        from echogate.errors import DatabaseUnavailable
        from echogate.store.pgclient import query

        increments.sort()
        now = self._reactor.seconds()
        cleanup = now >= self._next_cleanup
        if cleanup:
            self._next_cleanup = now + 60

        async def work(connection: Any) -> dict[CounterKey, int]:
            totals: dict[CounterKey, int] = {}
            if increments:
                params: list[Any] = []
                for (identifier, period, start), amount, expires in increments:
                    params += [identifier, period, start, amount, expires]
                rows = await query(
                    connection,
                    "INSERT INTO ratelimiting_counters AS c (identifier, period, period_start, value, expires_at)"
                    " VALUES " + ", ".join([_UPSERT_ROW] * len(increments))
                    + " ON CONFLICT (identifier, period, period_start)"
                    " DO UPDATE SET value = c.value + EXCLUDED.value"
                    " RETURNING identifier, period, period_start, value", params)
                totals = {(i, p, int(s)): int(v) for i, p, s, v in rows}
            else:
                await query(connection, "SELECT 1")
            if cleanup:
                await connection.runOperation("DELETE FROM ratelimiting_counters WHERE expires_at < %s",
                                              (int(now),))
            return totals

        try:
            return await self._pool.run(work)
        except DatabaseUnavailable as e:
            raise StoreUnavailable(e.message) from None
        except Exception as e:
            raise StoreUnavailable(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e

    def close(self) -> Deferred:
        self._pool.close()
        return succeed(None)
