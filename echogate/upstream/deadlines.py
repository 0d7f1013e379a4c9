"""
Many deadlines on one reactor timer.

A request to a service is bounded by a deadline that is almost always
cancelled (its response head arrives first). A reactor C{DelayedCall}
made and cancelled for each one is a measurable share of a busy proxy's
time; a L{DeadlineQueue} keeps them in plain FIFOs instead, one per
distinct number of seconds, with at most one C{DelayedCall} armed, at the
earliest deadline. Deadlines given the same number of seconds expire in
the order they were added, so the earliest of all is the earliest of the
FIFOs' heads.

The armed call is not cancelled when the last pending deadline is: a
proxy answering one request at a time empties the queue and fills it
again for every request, and the call armed for the first deadline still
comes before the next one's (a deadline later than the armed call leaves
the reactor alone). The call then fires once with nothing due, arms
nothing, and drops the FIFOs left empty: an idle queue leaves nothing on
the reactor once that call has fired (at most its timeout after it was
armed), or once it is stopped.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

_log = Logger(namespace="echogate.upstream")

#: How many cancelled deadlines a FIFO may hold before it is compacted
#: (when they are also more than half of it): compacting a short FIFO
#: after every other cancellation would cost more than it saves.
_SLACK = 32
_NEW = object.__new__


class Deadline:
    """
    One pending deadline of a L{DeadlineQueue}.

    @ivar time: when it expires, in the reactor's C{seconds()}.
    """

    __slots__ = ("time", "_callback", "_fifo")

    def __init__(self, time: float, callback: Callable[[], object], fifo: _TimeoutFifo):
        self.time = time
        self._callback: Callable[[], object] | None = callback
        self._fifo: _TimeoutFifo | None = fifo

    def active(self) -> bool:
        """
        Whether it is still to expire (neither expired nor cancelled).
        """
        return self._callback is not None

    def cancel(self) -> None:
        """
        Forget this deadline: its callback is not called, and no longer
        referenced. Cancelling an expired or cancelled deadline does
        nothing.
        """
        fifo = self._fifo
        if fifo is None:
            # Expired, cancelled, or due and about to expire (then it is
            # skipped).
            self._callback = None
            return
        self._fifo = self._callback = None
        entries = fifo.entries
        if entries[0] is self:
            entries.popleft()
            if entries and entries[0]._callback is None:
                fifo.pop_cancelled()
        else:
            fifo.dead += 1
            if fifo.dead > _SLACK and fifo.dead * 2 > len(entries):
                fifo.compact()
        # (the armed call stays: see the module's docstring)
        fifo.owner._live -= 1


class _TimeoutFifo:
    """
    The deadlines of one number of seconds, in the order they expire
    (and were added), C{dead} of them cancelled; the head is never a
    cancelled one. An empty FIFO stays with its owner until the armed
    call fires (or another FIFO is made): the next deadline of the same
    seconds, usually added soon after, finds it there.
    """

    __slots__ = ("owner", "seconds", "entries", "dead")

    def __init__(self, owner: DeadlineQueue, seconds: float):
        self.owner = owner
        self.seconds = seconds
        self.entries: deque[Deadline] = deque()
        self.dead = 0

    def pop_head(self) -> None:
        """
        Drop the head and the cancelled deadlines behind it.
        """
        self.entries.popleft()
        self.pop_cancelled()

    def pop_cancelled(self) -> None:
        """
        Drop the cancelled deadlines at the head.
        """
        entries = self.entries
        while entries and entries[0]._callback is None:
            entries.popleft()
            self.dead -= 1

    def compact(self) -> None:
        """
        Drop every cancelled deadline (more than half of them are): each
        is dropped once, so the cost is amortised over the cancellations.
        """
        self.entries = deque(entry for entry in self.entries if entry._callback is not None)
        self.dead = 0

    def insert(self, deadline: Deadline) -> None:
        """
        Put C{deadline} in its place: it expires before the last one (the
        reactor's clock went back).
        """
        entries = self.entries
        index = len(entries)
        while index and entries[index - 1].time > deadline.time:
            index -= 1
        entries.insert(index, deadline)


class DeadlineQueue:
    """
    Deadlines timed by the injected reactor through at most one
    C{DelayedCall}, armed at the earliest deadline. Adding a deadline
    that expires later than that one does not touch the reactor; nor does
    cancelling one, even the last one pending (the armed call then fires
    once, finds nothing due and arms nothing: see the module's
    docstring). Cancelled deadlines are dropped as they reach the head of
    their FIFO, or all at once when they are more than half of it.

    Callbacks run in deadline order; each may add or cancel deadlines. One
    that raises is logged and does not keep the others from running.
    """

    def __init__(self, reactor: IReactorTime):
        self._reactor = reactor
        self._fifos: dict[float, _TimeoutFifo] = {}
        #: How many deadlines are neither expired nor cancelled.
        self._live = 0
        self._call: Any = None
        # The expired deadlines whose callbacks are being run.
        self._due: list[Deadline] = []
        # When the armed call fires: infinity when none is, minus
        # infinity while callbacks run (they arm nothing themselves).
        self._armed_at = math.inf

    @property
    def pending(self) -> int:
        """
        How many deadlines are neither expired nor cancelled.
        """
        return self._live

    @property
    def stored(self) -> int:
        """
        How many deadlines the FIFOs hold, cancelled ones included.
        """
        return sum(len(fifo.entries) for fifo in self._fifos.values())

    def add(self, seconds: float, callback: Callable[[], object]) -> Deadline:
        """
        Call C{callback} in C{seconds} seconds, unless cancelled first.

        @return: the L{Deadline}, to cancel.
        """
        fifo = self._fifos.get(seconds)
        if fifo is None:
            self._forget_empty()
            fifo = self._fifos[seconds] = _TimeoutFifo(self, seconds)
        now = self._reactor.seconds()
        time = now + seconds
        # (Deadline(time, callback, fifo) without the call of its __init__)
        deadline = _NEW(Deadline)
        deadline.time, deadline._callback, deadline._fifo = time, callback, fifo
        entries = fifo.entries
        if entries and time < entries[-1].time:
            fifo.insert(deadline)
        else:
            entries.append(deadline)
        self._live += 1
        if time < self._armed_at:
            self._arm(time, now)
        return deadline

    def stop(self) -> None:
        """
        Cancel the armed call and every pending deadline (their callbacks
        never run). Deadlines added afterwards are timed as before.
        """
        for fifo in self._fifos.values():
            for deadline in fifo.entries:
                deadline._fifo = deadline._callback = None
        for deadline in self._due:
            deadline._callback = None
        self._fifos.clear()
        self._live = 0
        if self._call is not None:
            self._disarm()

    def _disarm(self) -> None:
        """
        Cancel the armed call.
        """
        self._call.cancel()
        self._call = None
        self._armed_at = math.inf

    def _forget_empty(self) -> None:
        """
        Drop the FIFOs without deadlines.
        """
        fifos = self._fifos
        for seconds in [seconds for seconds, fifo in fifos.items() if not fifo.entries]:
            del fifos[seconds]

    def _arm(self, time: float, now: float) -> None:
        """
        Have the one armed call fire at C{time} (not later: a delay that
        rounds up when the reactor adds it to C{now} is made smaller).
        """
        if self._call is not None:
            self._call.cancel()
        delay = time - now
        if delay <= 0:
            delay = 0.0
        else:
            while now + delay > time:
                delay = math.nextafter(delay, 0.0)
        self._armed_at = time
        self._call = self._reactor.callLater(delay, self._expire)

    def _earliest(self) -> _TimeoutFifo | None:
        """
        The FIFO whose head expires first, if any.
        """
        earliest = None
        time = math.inf
        for fifo in self._fifos.values():
            entries = fifo.entries
            if entries:
                head = entries[0].time
                if head < time:
                    earliest, time = fifo, head
        return earliest

    def _expire(self) -> None:
        """
        The armed call: run the callbacks of the deadlines that expired,
        in deadline order, then arm for the next one.
        """
        self._call = None
        self._armed_at = -math.inf
        now = self._reactor.seconds()
        due = self._due = []
        fifo = self._earliest()
        while fifo is not None and fifo.entries[0].time <= now:
            deadline = fifo.entries[0]
            # Out of its FIFO: a cancellation from now on only drops the
            # callback, and this loop skips it.
            deadline._fifo = None
            self._live -= 1
            fifo.pop_head()
            due.append(deadline)
            fifo = self._earliest()
        try:
            for deadline in due:
                callback = deadline._callback
                if callback is None:
                    continue
                deadline._callback = None
                try:
                    callback()
                except Exception:
                    _log.failure("deadline callback {callback!r} failed", callback=callback)
        finally:
            self._due = []
            self._armed_at = math.inf
            self._forget_empty()
            fifo = self._earliest()
            if fifo is not None:
                self._arm(fifo.entries[0].time, self._reactor.seconds())
