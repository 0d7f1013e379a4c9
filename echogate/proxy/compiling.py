"""
Where the next configuration snapshot is compiled, for
L{echogate.proxy.snapshot.LiveConfiguration}: in short slices of the
reactor thread (L{build_in_slices}, what the gateway does), or in the
reactor's thread pool (L{build_in_thread}).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import Cooperator, deferLater
from twisted.internet.threads import deferToThreadPool

from echogate.proxy.snapshot import Snapshot
from echogate.store.data import ConfigurationData

__all__ = ["build_in_slices", "build_in_thread"]

#: The delay of the next slice of a build: as short as can be, so that it
#: runs in the reactor loop's next turn (as in Twisted's own Cooperator).
_NEXT_TURN = 0.00000001


@attrs.frozen
class _SliceEnds:
    """
    The termination predicate of one slice of L{build_in_slices}: true once
    C{seconds} have passed on C{timer} since it was made.
    """

    _timer: Callable[[], float]
    _ends: float

    def __call__(self) -> bool:
        return self._timer() >= self._ends


def build_in_slices(clock: IReactorTime, slice_seconds: float = 0.001, regex_timeout: float | None = 0.005,
                    timer: Callable[[], float] = time.perf_counter) -> Callable[..., Deferred]:
    """
    A C{build} for L{echogate.proxy.snapshot.LiveConfiguration} that
    compiles snapshots on the reactor thread, in slices of about
    C{slice_seconds} (as many steps of L{Snapshot.building} as fit),
    handing the reactor back between two slices (the next runs in the
    reactor loop's next turn), so that a request waits for one slice at
    most instead of for the whole compile. Requests meanwhile are served
    by the current snapshot: the new one is handed over whole, in one
    assignment, in the turn after the last slice.

    (A build in a worker thread, L{build_in_thread}, shares the
    interpreter with the reactor thread, which then waits for the
    interpreter lock up to C{sys.getswitchinterval()}, 5 ms, on each of the
    many system calls of the requests it serves: under load, with 10,000
    routes, requests waited 30 to 100 ms during a burst of changes.)

    @param timer: what slices are timed with (seconds).
    @return: a C{build(data, plugins, previous=None,
        missing_plugins="refuse")} that returns a Deferred firing with the
        new snapshot, or failing with what the build raised.
    """
    cooperator = Cooperator(terminationPredicateFactory=lambda: _SliceEnds(timer, timer() + slice_seconds),
                            scheduler=lambda work: clock.callLater(_NEXT_TURN, work))

    def build(data: ConfigurationData, plugins: Mapping[str, Any], previous: Snapshot | None = None,
              missing_plugins: str = "refuse") -> Deferred:
        built: list[Snapshot] = []

        def steps() -> Iterator[None]:
            built.append((yield from Snapshot.building(data, plugins, previous, missing_plugins, regex_timeout)))

        def handed(_: object) -> Deferred:
            # In a turn of its own: what switching to the snapshot sets off
            # (the switch callbacks, answering the Admin API writes that
            # waited for it) does not lengthen the last slice.
            return deferLater(clock, _NEXT_TURN, built.pop)

        return cooperator.coiterate(steps()).addCallback(handed)

    return build


def build_in_thread(reactor: IReactorThreads, regex_timeout: float | None = 0.005) -> Callable[..., Deferred]:
    """
    A C{build} for L{echogate.proxy.snapshot.LiveConfiguration} that
    compiles snapshots in the reactor's thread pool. L{Snapshot.build} only reads its arguments and
    makes new objects, so it may run there; the reactor thread keeps
    serving requests meanwhile (sharing the interpreter with the build:
    the proxy slows down while a large configuration compiles, instead of
    stopping for all of it).
    """

    def build(data: ConfigurationData, plugins: Mapping[str, Any], previous: Snapshot | None = None,
              missing_plugins: str = "refuse") -> Deferred:
        return deferToThreadPool(reactor, reactor.getThreadPool(), Snapshot.build, data, plugins, previous,
                                 missing_plugins, regex_timeout)

    return build
