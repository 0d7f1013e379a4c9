"""
The node's process-wide memory tuning, run once configuration changes have
been quiet for a second (L{echogate.service.GatewayService}; tests that
run many nodes in one process leave their heap alone): the collector's
generations settled (L{settle_heap}, L{young_threshold}) and the C
allocator kept from handing memory back and forth to the kernel
(L{trim_threshold}). Also L{ReleaseInSlices}, which frees a replaced
configuration snapshot a slice at a time.
"""
from __future__ import annotations

import ctypes
import gc
import sys
import time
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["HeapSettler", "FULL_PASS_GROWTH", "settle_heap", "tune", "young_threshold", "trim_threshold",
           "MAX_TRIM_THRESHOLD", "ReleaseInSlices"]

#: glibc's C{mallopt} parameter for the trim threshold (C{M_TRIM_THRESHOLD}).
_M_TRIM_THRESHOLD = -1

#: The largest trim threshold C{mallopt} takes (a C{int}), rounded down to
#: a whole number of MiB.
MAX_TRIM_THRESHOLD = 2047 * 1024 * 1024


#: How much the frozen part of the heap may grow between two full passes
#: of L{HeapSettler}, as a share of what the last full pass left frozen.
FULL_PASS_GROWTH = 0.25


class HeapSettler:
    """
    Settles the heap once a configuration is swapped in: collects what is
    garbage, then freezes the survivors (the new snapshot, and everything
    the process made at start-up: modules, classes, the reactor) so that
    the collector's full passes, which per-request garbage triggers every
    few seconds under load, no longer walk them. Without it, each full
    pass walked several hundred thousand objects and stalled the proxy
    for tens of milliseconds (p99 latency about 120 ms instead of about
    20 ms at small-50), and with 10,000 routes it walked every route and
    credential too. Reference counting still frees frozen objects once
    unused.

    The first settling is a full pass: unfreeze, collect everything,
    freeze. After that a settling collects only what was made since the
    last one (a snapshot that is replaced is freed by reference counting)
    and freezes it: with 10,000 routes about 8 ms against about 63 ms of
    the reactor thread, in which nothing else runs. Garbage that was
    frozen while still in use and is caught in a reference cycle (an
    Admin API request in flight at the settling, some forty objects) is
    left to the next full pass, which comes once the frozen part has
    grown by L{FULL_PASS_GROWTH} since the last: that bounds what such
    garbage can hold to a quarter of the heap, and a node whose
    configuration keeps its size pays for a full pass rarely.

    @param collector: the C{gc} module (a test double in tests).
    @param allocated: how many blocks the process has allocated
        (C{sys.getallocatedblocks}; PyPy has none, and no generations to
        freeze either: there settling does nothing).
    """

    def __init__(self, collector: Any = gc, growth: float = FULL_PASS_GROWTH,
                 allocated: Callable[[], int] = getattr(sys, "getallocatedblocks", lambda: 0)):
        self._gc = collector
        self._allocated = allocated
        self._growth = growth
        self._baseline: int | None = None
        #: How many settlings were full passes (for tests and curiosity).
        self.full_passes = 0

    def __call__(self) -> None:
        collector = self._gc
        if not hasattr(collector, "freeze"):
            return  # (PyPy's collector has no generations to freeze)
        if self._baseline is not None:
            collector.freeze()
            if self._allocated() <= self._baseline * (1 + self._growth):
                return
        collector.unfreeze()
        collector.collect()
        collector.freeze()
        self._baseline = self._allocated()
        self.full_passes += 1


#: The process's settler: the collector is the process's, and so is what
#: it has frozen.
settle_heap = HeapSettler()


def young_threshold(objects: int) -> None:
    """
    Let the cyclic collector's youngest generation take C{objects} (net
    new container objects) before a pass, instead of Python's 700; C{0}
    leaves the thresholds as they are. For a settled node: its data path
    leaves no reference cycles (a request is freed by reference counting
    when it ends), so a pass finds nothing, yet with Python's threshold
    one ran every few dozen requests and walked every request in flight
    (at 500 connections, some 25,000 objects), and the older generations'
    passes followed from them: about a tenth of the node's time at 500
    connections. The threshold also bounds what a plugin that does make
    cycles can leave before a pass collects it.
    """
    if objects and hasattr(gc, "set_threshold"):
        gc.set_threshold(objects, *gc.get_threshold()[1:])


def _libc() -> Any:
    """
    The C library the process runs on (its symbols, through C{ctypes}).
    """
    return ctypes.CDLL(None)


def trim_threshold(size: int, libc: Any = None) -> bool:
    """
    Let up to C{size} bytes of freed memory stay at the top of the C heap
    instead of going back to the kernel; C{0} leaves the C library's own
    (dynamic) threshold. Bodies pass through the proxy in buffers of up to
    64 KiB that are made and freed by the hundred a second, and with
    glibc's default threshold (128 KiB, raised only as far as twice the
    largest block it had to C{mmap}) the heap's top was given back after
    each burst and taken again for the next one: every page of every body
    came from a page fault, some 210,000 a second and about a quarter of a
    node's time on 1 MiB answers. Memory stays bounded: the process keeps
    at most C{size} bytes more than it uses, not more with more traffic.

    @param libc: the C library (C{ctypes}); the process's own by default.
    @return: whether the threshold was set (C{False} for C{0}, or a C
        library without glibc's C{mallopt}).
    """
    if not size:
        return False
    if libc is None:
        libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    done: int = mallopt(_M_TRIM_THRESHOLD, min(size, MAX_TRIM_THRESHOLD))
    return done == 1


def tune(young: int, trim: int) -> bool:
    """
    What a settled node does to its process after L{settle_heap}: the
    collector's young threshold (L{young_threshold}, from
    C{gc_young_threshold}) and the C heap's trim threshold
    (L{trim_threshold}, from C{malloc_trim_threshold}). In one place so
    that C{bench/lean_proxy.py}, the floor the node is measured against,
    tunes its process exactly as a node does.

    @return: whether the trim threshold was set.
    """
    young_threshold(young)
    return trim_threshold(trim)


def _count(value: Any) -> int:
    """
    C{value}'s reference count, as L{ReleaseInSlices} reads it of a local.
    """
    return sys.getrefcount(value) if _REFCOUNTS else 0


def _count_in(values: list[Any], index: int) -> int:
    """
    The reference count of C{values[index]}.
    """
    return sys.getrefcount(values[index]) if _REFCOUNTS else 0


def _alone() -> int:
    """
    What L{_count} reads of an object that only a local refers to.
    """
    value = object()
    return _count(value)


def _in_parent() -> int:
    """
    What L{_count_in} reads of an object that only the list and one other
    object (its parent) refer to.
    """
    parent = [object()]
    return _count_in([parent[0]], 0)


#: Whether this interpreter counts references (PyPy does not: there
#: L{ReleaseInSlices} lets go of what it is given at once).
_REFCOUNTS = hasattr(sys, "getrefcount")
_ALONE = _alone()
_IN_PARENT = _in_parent()
_ON_LIST = _count_in([object()], 0)

#: The containers L{ReleaseInSlices} empties a piece at a time (none of
#: them can be referred to weakly: what only it holds, only it can reach).
_DRAINED = (dict, list, set)

#: From how many items a container is worth emptying a piece at a time;
#: a smaller one is freed with what holds it.
_LARGE = 64

#: The delay of the next slice: the reactor loop's next turn.
_NEXT_TURN = 0.00000001


def _large(value: Any) -> bool:
    """
    Whether C{value} is a container large enough to take apart itself.
    """
    kind = type(value)
    return (kind in _DRAINED or kind is tuple) and len(value) >= _LARGE


class ReleaseInSlices:
    """
    Frees large structures, such as a configuration snapshot that was
    replaced, a slice of the reactor thread at a time instead of at once.

    Reference counting frees a snapshot when its last user lets go of it:
    with 10,000 routes some 20,000 to 30,000 objects (the replaced route
    table's indexes, and all of its compiled routes once positions moved),
    1 to 4 ms in one piece of the reactor thread, inside whichever request
    happened to be the last to hold it. Given such a structure, this waits
    until it holds the only reference to it (requests in flight finish
    with it meanwhile; it looks every C{poll} seconds, for at most
    C{patience} seconds, then lets go of it), then takes it apart in
    slices of about C{slice_seconds}, one per turn of the reactor loop:
    the objects only it can reach (the snapshot, its router, their
    tuples) are opened to find more, and the dictionaries, lists and sets
    only it can reach are emptied a piece at a time, so that their items
    are freed a few at a time (an item that is itself a container of
    L{_LARGE} items or more is emptied in turn). Nothing that anything
    else can reach is changed: an object is opened only while this holds
    the only reference to it, and is freed as soon as it has been opened,
    its parts held here alone.

    On an interpreter without reference counts (PyPy, whose collector
    frees memory without such pauses), it lets go of what it is given at
    once.

    @param clock: where slices and polls are scheduled.
    @param timer: what slices are timed with (seconds).
    """

    def __init__(self, clock: IReactorTime, slice_seconds: float = 0.0005, poll: float = 0.01,
                 patience: float = 60.0, timer: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._slice = slice_seconds
        self._poll = poll
        self._patience = patience
        self._timer = timer
        #: The structures given, until only they refer to them; and when
        #: each stops being waited for.
        self._waiting: list[Any] = []
        self._deadlines: list[float] = []
        #: What is being taken apart: objects and containers that only
        #: this (and, for some, one parent being taken apart) refers to.
        self._work: list[Any] = []
        self._call: IDelayedCall | None = None
        self._next_poll = 0.0

    def __call__(self, structure: Any) -> None:
        """
        Take C{structure} apart once it is only referred to here.
        """
        if not _REFCOUNTS:
            return
        if any(waiting is structure for waiting in self._waiting):
            return
        self._waiting.append(structure)
        self._deadlines.append(self._clock.seconds() + self._patience)
        self._schedule(self._poll)

    @property
    def pending(self) -> int:
        """
        How many structures are waited for or being taken apart (the
        latter counted as one).
        """
        return len(self._waiting) + bool(self._work)

    def stop(self) -> None:
        """
        Let go of everything at once and schedule nothing more.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        del self._waiting[:], self._deadlines[:], self._work[:]

    def _schedule(self, delay: float) -> None:
        if self._call is None:
            self._call = self._clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._call = None
        if self._waiting and (not self._work or self._clock.seconds() >= self._next_poll):
            self._adopt()
        ends = self._timer() + self._slice
        work = self._work
        while work:
            self._step()
            if self._timer() >= ends:
                break
        if work:
            self._schedule(_NEXT_TURN)
        elif self._waiting:
            self._schedule(self._poll)

    def _adopt(self) -> None:
        """
        Move the structures only this refers to now from waiting to work;
        stop waiting for those past their patience.
        """
        now = self._clock.seconds()
        self._next_poll = now + self._poll
        waiting, deadlines = self._waiting, self._deadlines
        index = 0
        while index < len(waiting):
            if _count_in(waiting, index) == _ON_LIST:
                self._work.append(waiting.pop(index))
                del deadlines[index]
            elif deadlines[index] <= now:
                del waiting[index], deadlines[index]
            else:
                index += 1

    def _step(self) -> None:
        """
        One piece of work: a few dozen items out of the container on top,
        or the object on top opened.
        """
        work = self._work
        top = work[-1]
        kind = type(top)
        if kind in _DRAINED:
            take = top.popitem if kind is dict else top.pop
            for _ in range(_LARGE):
                if not top:
                    work.pop()
                    return
                value = take()
                if kind is dict:
                    value = value[1]
                if _large(value) and _count(value) == _ALONE:
                    work.append(value)
                    return
            return
        work.pop()
        if _count(top) != _ALONE or hasattr(type(top), "__del__"):
            # Something took hold of it since (through a weak reference),
            # or it may outlive this step (a finalizer that keeps it): it
            # goes whole.
            return
        referents = gc.get_referents(top)
        for index in range(len(referents)):
            if _count_in(referents, index) == _IN_PARENT and _opened(referents[index]):
                work.append(referents[index])


def _opened(value: Any) -> bool:
    """
    Whether L{ReleaseInSlices} takes C{value} apart on its own when it
    finds it in an object it opens (the router of a snapshot, the
    dictionaries of a router): what the collector tracks (what may refer
    to more objects), but not a class.
    """
    return gc.is_tracked(value) and not isinstance(value, type)
