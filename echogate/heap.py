"""
The node's process-wide memory tuning, run once configuration changes have
been quiet for a second (L{echogate.service.GatewayService}; tests that
run many nodes in one process leave their heap alone): the collector's
generations settled (L{settle_heap}, L{young_threshold}) and the C
allocator kept from handing memory back and forth to the kernel
(L{trim_threshold}).
"""
from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any, Callable

__all__ = ["HeapSettler", "FULL_PASS_GROWTH", "settle_heap", "tune", "young_threshold", "trim_threshold",
           "MAX_TRIM_THRESHOLD"]

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
