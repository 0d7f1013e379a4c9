"""
Messages between the nodes of a cluster that are not configuration
changes: the channel L{NOTICES} (C{echogate_notices}), whose payloads are
short texts (a plugin cache's invalidations: L{echogate.pdk.cache.Caches}).

It is a channel apart from C{echogate_config}, listened to on its own
connection, opened only once something on the node subscribes: a
configuration listener reads every payload as a version, and would take
anything else for "reload everything".
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate.store.pgclient import Deadlines, Listener

__all__ = ["NOTICES", "NoticeListener"]

#: The LISTEN/NOTIFY channel of node-to-node notices.
NOTICES = "echogate_notices"

_log = Logger(namespace="echogate.store")


class NoticeListener(Listener):
    """
    The connection that runs C{LISTEN echogate_notices}: calls
    C{deliver(payload)} with each notice's text, and C{deliver(None)} after
    the connection was lost and regained (notices may have been missed
    meanwhile). Reconnects as L{Listener} does.
    """

    def __init__(self, reactor: IReactorTime, dsn: str, bounded: Deadlines,
                 delays: tuple[float, float], heartbeat: float,
                 deliver: Callable[[str | None], None]):
        # (Listener types its deliver for versions; this one passes texts)
        untyped: Any = deliver
        super().__init__(reactor, dsn, NOTICES, bounded, delays, heartbeat, untyped)
        self._first_delay = delays[0]

    def _notified(self, notify: Any) -> None:
        self._deliver(notify.payload)

    def begin(self) -> None:
        """
        Open the connection in the background; while the server cannot be
        reached, retry as after a lost connection (delivering C{None} once
        it is reached).
        """
        def failed(failure: Failure) -> None:
            if self._stopped:
                return
            _log.warn("cannot LISTEN for notices yet: {why}", why=failure.getErrorMessage())
            self._retry(self._first_delay)

        ensureDeferred(self.start()).addErrback(failed)
