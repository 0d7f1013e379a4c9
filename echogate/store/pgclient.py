"""
Connections to PostgreSQL that never hang, on txpostgres.

Every call is bounded twice: each connection carries a server-side
C{statement_timeout}, and a timer on the injected reactor abandons the
call after the same number of seconds, closing the connection it was
using (a server frozen with C{SIGSTOP} never answers a cancel request,
so the socket is closed instead). A closed or broken pool connection is
reopened on its next use, after a capped exponential back-off while the
server stays unreachable. L{Listener} keeps one C{LISTEN} connection
open, reconnecting when it is lost.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet import error as netError
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres

from echogate.errors import DatabaseUnavailable
from echogate.store.migrations import redact
from echogate.store.pgdriver import as_conninfo, is_connection_error, parse_dsn

_log = Logger(namespace="echogate.store")
_T = TypeVar("_T")


def unavailable(failure: Failure) -> Failure:
    """
    Turn a lost connection or an unreachable server into
    L{DatabaseUnavailable}; let everything else through.
    """
    if (failure.value is not None and is_connection_error(failure.value)) or failure.check(
            netError.ConnectionDone, netError.ConnectionLost, txpostgres.RollbackFailed):
        reason = str(failure.value).strip().splitlines()
        _log.warn("database call failed: {reason}", reason=reason[0] if reason else failure.value)
        error = DatabaseUnavailable()
        error.__cause__ = failure.value
        return Failure(error)
    return failure


async def _awaited(awaitable: Awaitable[_T]) -> _T:
    """
    C{awaitable}'s result, from a coroutine (what C{ensureDeferred} runs).
    """
    return await awaitable


class Cursor(txpostgres.Cursor):
    """
    A txpostgres cursor that counts the statements run on its connection.
    """

    def execute(self, query: str, params: Any = None) -> Deferred[Cursor]:
        self._connection.executed += 1
        executed: Deferred[Cursor] = txpostgres.Cursor.execute(self, query, params)
        return executed


class Connection(txpostgres.Connection):
    """
    A txpostgres connection that reports a socket broken while idle to
    the reactor as a lost connection (txpostgres raises from C{doRead},
    which the reactor logs as an unhandled error), delivers notifications
    synchronously, and calls L{onLost} when it goes away.
    """

    cursorFactory = Cursor
    onLost: Callable[[Failure], None] | None = None
    #: How many statements ran on this connection.
    executed = 0

    @property
    def isOpen(self) -> bool:
        return self._connection is not None and not self._connection.closed

    def doRead(self) -> Exception | None:
        try:
            txpostgres.Connection.doRead(self)
        except psycopg2.Error as e:
            return e
        return None

    def checkForNotifies(self) -> None:
        notifies = self._connection.notifies
        while notifies:
            notify = notifies.pop(0)
            for observer in self.getNotifyObservers():
                observer(notify)

    def connectionLost(self, reason: Failure) -> None:
        txpostgres.Connection.connectionLost(self, reason)
        onLost, self.onLost = self.onLost, None
        if onLost is not None:
            onLost(reason)

    def close(self) -> None:
        if self._connection is not None:
            txpostgres.Connection.close(self)


class Deadlines:
    """
    Bounds on how long a call may take, measured by the injected reactor.

    @ivar timeout: the seconds each call is given.
    """

    def __init__(self, reactor: IReactorTime, timeout: float):
        self._reactor = reactor
        self.timeout = timeout

    def deadline(self) -> float:
        """
        When a call starting now must be done; its steps share it.
        """
        return self._reactor.seconds() + self.timeout

    def __call__(self, d: Deferred[_T], deadline: float,
                 expire: Callable[[], object]) -> Deferred[_T]:
        """
        C{d}'s result, or L{DatabaseUnavailable} at C{deadline}, when
        C{expire} is called to abandon whatever C{d} waits for (its late
        result is then dropped).
        """
        expired = False

        def cancel(outer: Deferred[_T]) -> None:
            nonlocal expired
            expired = True
            expire()

        outer: Deferred[_T] = Deferred(cancel)

        def relay(result: object) -> None:
            if not expired:
                outer.callback(result)  # type: ignore[arg-type]

        d.addBoth(relay)

        def timedOut(result: object, timeout: float) -> Failure:
            return Failure(DatabaseUnavailable(
                f"The database did not answer within {self.timeout:g} seconds"))

        remaining = max(0.0, deadline - self._reactor.seconds())
        return outer.addTimeout(remaining, self._reactor, onTimeoutCancel=timedOut)


def connection_string(dsn: str, timeout: float, role: str = "") -> str:
    """
    C{dsn} with what echogate adds to every connection: bounded
    statements, keepalives so that a vanished peer is noticed, and an
    application name (C{echogate} unless the DSN sets one, then C{role}).
    """
    try:
        parsed = parse_dsn(dsn)
    except psycopg2.ProgrammingError as e:
        raise ValueError(f"invalid database DSN {redact(dsn)!r}: {e}".strip()) from None
    ms = max(1, int(timeout * 1000))
    options = " ".join(filter(None, [
        parsed.get("options"), f"-c statement_timeout={ms}",
        f"-c idle_in_transaction_session_timeout={4 * ms}"]))
    return as_conninfo({**parsed, "options": options,
                        "application_name": parsed.get("application_name", "echogate") + role,
                        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                        "keepalives_count": 3})


class BoundedPool(txpostgres.ConnectionPool):
    """
    txpostgres's pool, with connections opened on first use, reopened
    (after a capped back-off) when they broke, and every checkout bounded.

    @param reactor: the clock of the back-off; the connections also watch
        their sockets with it (an L{twisted.internet.interfaces.IReactorFDSet} too).
    """

    connectionFactory = Connection

    def __init__(self, reactor: IReactorTime, dsn: str, size: int, bounded: Deadlines,
                 delays: tuple[float, float]):
        self.reactor = reactor
        super().__init__(None, connection_string(dsn, bounded.timeout), min=size)
        self._bounded = bounded
        self._delays = delays
        self._delay = delays[0]
        self._retryAt = 0.0
        self._all = frozenset(self.connections)
        self.closed = False

    def close(self) -> None:
        """
        Close every connection, including those in use (their calls fail
        at once).
        """
        self.closed = True
        for connection in self._all:
            connection.close()

    async def _open(self, connection: Connection, deadline: float, force: bool) -> None:
        now = self.reactor.seconds()
        if now < self._retryAt and not force:
            raise DatabaseUnavailable()
        try:
            await self._bounded(connection.connect(*self.connargs, **self.connkw),
                                deadline, connection.close)
        except BaseException as e:
            connection.close()
            if isinstance(e, (DatabaseUnavailable, psycopg2.Error)):
                self._retryAt = now + self._delay
                self._delay = min(self._delays[1], self._delay * 2)
            raise
        self._delay = self._delays[0]
        self._retryAt = 0.0

    async def run(self, work: Callable[[Connection], Awaitable[_T]], force: bool = False) -> _T:
        """
        Run C{work} with a connection of its own, within the deadline.

        @param force: connect even while backing off.
        @raise DatabaseUnavailable: no connection, or no answer in time.
        """
        if self.closed:
            raise DatabaseUnavailable("The database connection is closed")
        deadline = self._bounded.deadline()
        acquiring = self._semaphore.acquire()
        await self._bounded(acquiring, deadline, acquiring.cancel)
        connection = self.connections.pop()
        try:
            return await self._use(connection, work, deadline, force)
        except BaseException:
            unavailable(Failure()).raiseException()
            raise  # pragma: no cover
        finally:
            self.connections.add(connection)
            self._semaphore.release()

    async def _use(self, connection: Connection, work: Callable[[Connection], Awaitable[_T]],
                   deadline: float, force: bool) -> _T:
        """
        Run C{work} on C{connection}, opening it if needed. A connection
        that looked open but fails its very first statement (the server
        restarted, or killed it while idle) is reopened and C{work} runs
        once more: nothing reached the database the first time.
        """
        retry = connection.isOpen
        while True:
            if self.closed:
                raise DatabaseUnavailable("The database connection is closed")
            if not connection.isOpen:
                await self._open(connection, deadline, force)
            before = connection.executed
            try:
                return await self._bounded(ensureDeferred(_awaited(work(connection))), deadline,
                                           connection.close)
            except psycopg2.Error as e:
                if (not is_connection_error(e) or not retry or connection.executed != before + 1
                        or isinstance(e, psycopg2.extensions.QueryCanceledError)):
                    raise
            retry = False
            _log.info("a pooled database connection was broken; reconnecting")
            connection.close()


async def transaction(connection: Connection,
                       body: Callable[[txpostgres.Cursor], Awaitable[_T]],
                       begin: str = "BEGIN") -> _T:
    """
    Run C{body} in a transaction on C{connection}: commit after it,
    roll back when it fails.
    """
    cursor = connection.cursor()
    await cursor.execute(begin)
    try:
        result = await body(cursor)
        await cursor.execute("COMMIT")
        return result
    except BaseException:
        if connection.isOpen:
            try:
                await cursor.execute("ROLLBACK")
            except psycopg2.Error:
                connection.close()
        raise


async def query(connection: Connection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """
    Run one statement (in its own transaction) and fetch its rows.
    """
    cursor = await connection.cursor().execute(sql, params)
    rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


class Listener:
    """
    The one connection that runs C{LISTEN <channel>}: reopened with a
    capped exponential back-off when it is lost (or stops answering the
    heartbeat), after which C{deliver(None)} says "reload everything";
    each notification calls C{deliver(int(payload))} (C{None} when the
    payload is not an integer).

    @param reactor: the clock of the back-off and the heartbeat; the
        connection also watches its socket with it (an L{twisted.internet.interfaces.IReactorFDSet}
        too).
    """

    def __init__(self, reactor: IReactorTime, dsn: str, channel: str, bounded: Deadlines,
                 delays: tuple[float, float], heartbeat: float,
                 deliver: Callable[[int | None], None]):
        self._reactor = reactor
        self._channel = channel
        self._conninfo = connection_string(dsn, bounded.timeout, " listener")
        self._bounded = bounded
        self._delays = delays
        self._heartbeat = heartbeat
        self._deliver = deliver
        self._connection: Connection | None = None
        self._pending: Connection | None = None
        self._timer: Any = None
        self._stopped = False

    async def _listen(self) -> None:
        """
        Open a connection and LISTEN on it, within the deadline.
        """
        connection = self._pending = Connection(self._reactor)
        deadline = self._bounded.deadline()
        try:
            await self._bounded(connection.connect(self._conninfo),
                                deadline, connection.close)
            await self._bounded(connection.runOperation(f"LISTEN {self._channel}"),
                                deadline, connection.close)
        except BaseException:
            connection.close()
            unavailable(Failure()).raiseException()
        finally:
            self._pending = None
        if self._stopped:
            connection.close()
            raise DatabaseUnavailable("The database connection is closed")
        connection.addNotifyObserver(self._notified)
        connection.onLost = self._lost
        self._connection = connection
        self._schedule(self._heartbeat, self._beat)

    async def start(self) -> None:
        """
        Open the connection (again, after L{stop}).

        @raise DatabaseUnavailable: the server cannot be reached in time.
        """
        if self._connection is not None:
            return
        self._stopped = False
        await self._listen()

    def stop(self) -> None:
        """
        Close the connection (or the attempt to open one) and stop
        reconnecting.
        """
        self._stopped = True
        self._cancelTimer()
        for connection in (self._connection, self._pending):
            if connection is not None:
                connection.onLost = None
                connection.close()
        self._connection = None

    def _schedule(self, delay: float, f: Callable[[], object]) -> None:
        self._cancelTimer()
        self._timer = self._reactor.callLater(delay, f)

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _notified(self, notify: Any) -> None:
        try:
            version: int | None = int(notify.payload)
        except ValueError:
            version = None
        self._deliver(version)

    def _beat(self) -> None:
        """
        Check that the server still answers on the LISTEN connection; close
        it (and so reconnect) when it does not.
        """
        self._timer = None
        connection = self._connection
        if connection is None:
            return
        d = self._bounded(connection.runQuery("SELECT 1"), self._bounded.deadline(),
                          connection.close)

        def answered(result: object) -> None:
            if self._connection is connection:
                self._schedule(self._heartbeat, self._beat)

        def failed(reason: Failure) -> None:
            if self._stopped:
                return
            _log.warn("the LISTEN connection stopped answering: {reason}", reason=reason.value)
            connection.close()

        d.addCallbacks(answered, failed)

    def _lost(self, reason: Failure) -> None:
        if self._stopped:
            return
        self._connection = None
        _log.warn("lost the LISTEN connection: {reason}", reason=reason.value)
        self._retry(self._delays[0])

    def _retry(self, delay: float) -> None:
        self._schedule(delay, lambda: ensureDeferred(self._reconnect(delay)))

    async def _reconnect(self, delay: float) -> None:
        self._timer = None
        try:
            await self._listen()
        except Exception as e:
            if not self._stopped:
                _log.info("cannot restore the LISTEN connection yet: {e}", e=e)
                self._retry(min(self._delays[1], delay * 2))
            return
        if not self._stopped:
            _log.info("LISTEN connection restored; reloading")
            self._deliver(None)
