"""
What keeps one client, or a flood of connections, from using up the
node's file descriptors: the count of open connections per client address
(L{AddressCounts}), the warning about refused connections
(L{RefusalLog}), and the collapsing of Twisted's per-connection log lines
when C{accept()} fails (L{AcceptErrorLog}, installed on a listening port
with L{throttle_accept_errors}).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import implementer

_log = Logger(namespace="echogate.proxy")

#: What Twisted's C{tcp.Port} logs, through its own logger, when
#: C{accept()} fails: one line per failure (the listening socket stays
#: readable, so the reactor calls again at once), and, when its reserved
#: descriptor lets it take a connection only to close it, one line per
#: such connection and two around them.
_ACCEPT_FAILED = "Could not accept new connection ({acceptError})"
_RECOVERY_CLOSED = "EMFILE recovery: Closed socket from {address}"
_RECOVERY_NOISE = frozenset({
    "EMFILE encountered; releasing reserved file descriptor.",
    "Re-reserving EMFILE recovery file descriptor.",
})


class AddressCounts:
    """
    Open connections per client address. An address whose count falls to
    zero is forgotten, so many distinct clients over time leave nothing
    behind.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        """
        How many addresses have a connection open.
        """
        return len(self._counts)

    def __getitem__(self, host: str) -> int:
        return self._counts.get(host, 0)

    def add(self, host: str) -> None:
        """
        One more connection from C{host}.
        """
        counts = self._counts
        counts[host] = counts.get(host, 0) + 1

    def remove(self, host: str) -> None:
        """
        One connection from C{host} fewer.
        """
        counts = self._counts
        left = counts.get(host, 0) - 1
        if left > 0:
            counts[host] = left
        else:
            counts.pop(host, None)


class _Interval:
    """
    Whether a line may be written now: at most one per C{interval} seconds
    of C{clock}.
    """

    def __init__(self, clock: IReactorTime, interval: float):
        self._clock = clock
        self._interval = interval
        self._last: float | None = None

    def due(self) -> bool:
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        return True


class RefusalLog:
    """
    Warns that new connections were refused because a connection limit was
    reached: at most one line per C{interval} seconds, saying how many were
    refused, by which limit, since the previous line.

    @ivar total: how many were refused in all.
    """

    def __init__(self, clock: IReactorTime, interval: float = 1.0, log: Logger = _log):
        self._due = _Interval(clock, interval)
        self._log = log
        self._since: dict[tuple[str, int], int] = {}
        self.total = 0

    def refused(self, setting: str, limit: int) -> None:
        """
        A connection was refused because C{setting} (its value C{limit})
        was reached.
        """
        self.total += 1
        key = (setting, limit)
        since = self._since
        since[key] = since.get(key, 0) + 1
        if self._due.due():
            self._since = {}
            self._log.warn(
                "refused {count} new client connection(s) since the last such line: {why}",
                count=sum(since.values()),
                why=", ".join(f"{name} ({limit}) reached: {n}" for (name, limit), n in sorted(since.items())),
                refused=dict(since),
            )


@implementer(ILogObserver)
class AcceptErrorLog:
    """
    A log observer in front of C{observer} that turns Twisted's lines about
    failed C{accept()} calls (out of file descriptors: C{EMFILE}; or
    C{ENFILE}, C{ENOBUFS}, C{ENOMEM}, C{ECONNABORTED}) into at most one
    warning per C{interval} seconds, with how many connections could not be
    accepted since the previous one. Other events pass through unchanged.

    Without it, a node out of descriptors writes a line for every try, as
    fast as the reactor turns (thousands a second), which also fills the
    disk the log is on.
    """

    def __init__(self, observer: ILogObserver, clock: IReactorTime, interval: float = 1.0):
        self._observer = observer
        self._due = _Interval(clock, interval)
        self._log = Logger(namespace="echogate.proxy", observer=observer)
        self._since: dict[str, int] = {}

    def __call__(self, event: LogEvent) -> None:
        text = event.get("log_format")
        if text == _ACCEPT_FAILED:
            self._failed(str(event.get("acceptError", "?")))
        elif text == _RECOVERY_CLOSED:
            self._failed("EMFILE")
        elif text not in _RECOVERY_NOISE:
            self._observer(event)

    def _failed(self, error: str) -> None:
        since = self._since
        since[error] = since.get(error, 0) + 1
        if self._due.due():
            self._since = {}
            self._log.warn(
                "could not accept {count} new client connection(s) since the last such line ({errors}): "
                "out of file descriptors or memory; see max_connections",
                count=sum(since.values()),
                errors=", ".join(f"{name}: {n}" for name, n in sorted(since.items())),
                failures=dict(since),
            )


def throttle_accept_errors(port: Any, clock: IReactorTime, interval: float = 1.0) -> Any:
    """
    Send what the listening C{port} logs about its C{accept()} calls
    through an L{AcceptErrorLog}, so that running out of file descriptors
    is logged at most once every C{interval} seconds. C{port} is a
    C{twisted.internet.tcp.Port} (as C{listenTCP} and C{adoptStreamPort},
    and the endpoints built on them, return); a port without Twisted's
    per-port logger is returned untouched.

    @return: C{port}, so that this can be a callback of the C{Deferred}
        that C{listen} returns.
    """
    logger = getattr(port, "_logger", None)
    if isinstance(logger, Logger) and not isinstance(logger.observer, AcceptErrorLog):
        # tcp.Port's accept loop logs through the namespace and observer of
        # self._logger (a class attribute); one on the instance wins.
        port._logger = Logger(namespace=logger.namespace, source=port,
                              observer=AcceptErrorLog(logger.observer, clock, interval))
    return port
