"""
What every balancing algorithm works on: the L{Entry} (one address and its
weight) with its L{Load}, the L{Algorithm} protocol, the entries by index
(L{IndexedEntries}) and the lazily updated heap (L{EntryQueue}) that lets
an algorithm pick in O(log n).
"""
from __future__ import annotations

import heapq
import itertools
from typing import Collection, Iterable, Protocol

import attrs


@attrs.define
class Load:
    """
    What this node knows of one address's load: it outlives a
    configuration snapshot (the L{echogate.balancer.Balancers} registry
    keeps it by address).

    @ivar in_flight: requests picked for the address and not yet reported.
    @ivar ewma: the average response time in seconds, C{0.0} before the
        first sample.
    @ivar ewma_at: the clock's time of the last sample.
    @ivar sampled: whether C{ewma} holds a sample.
    """

    in_flight: int = 0
    ewma: float = 0.0
    ewma_at: float = 0.0
    sampled: bool = False


@attrs.frozen
class Entry:
    """
    One address a balancer may pick.

    @ivar address: the IP address (or the host name, unresolved).
    @ivar port: the port.
    @ivar weight: this address's share of its target's weight.
    @ivar target_id: the id of the target the address belongs to.
    @ivar load: the address's L{Load}, shared across snapshots.
    """

    address: str
    port: int
    weight: float
    target_id: str
    load: Load = attrs.field(factory=Load, eq=False, repr=False)


class Algorithm(Protocol):
    """
    What a L{echogate.balancer.Balancer} asks of an algorithm.
    """

    def pick(self, key: str | None, exclude: Collection[Entry]) -> Entry | None:
        """
        The entry for the next request: available, not in C{exclude}.
        C{key} is the hash key (used by consistent hashing only).
        """

    def set_available(self, entry: Entry, available: bool) -> None:
        """
        Let C{entry} be picked, or not (it is unhealthy).
        """

    def acquire(self, entry: Entry) -> None:
        """
        A request went to C{entry}.
        """

    def release(self, entry: Entry, latency: float | None) -> None:
        """
        A request to C{entry} ended, after C{latency} seconds if known.
        """


class EntryQueue:
    """
    A min-heap of entry indexes by key whose keys can change: a change
    pushes a fresh item and the stale one is dropped when it surfaces.
    Equal keys go in the order they were queued.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._current: dict[int, int] = {}
        self._sequence = itertools.count()

    def put(self, index: int, key: float) -> None:
        """
        Queue C{index} with C{key}, replacing its earlier key.
        """
        stamp = next(self._sequence)
        self._current[index] = stamp
        heapq.heappush(self._heap, (key, stamp, index))
        if len(self._heap) > 2 * len(self._current) + 16:
            self._heap = [item for item in self._heap if self._current.get(item[2]) == item[1]]
            heapq.heapify(self._heap)

    def discard(self, index: int) -> None:
        """
        Take C{index} out of the queue.
        """
        self._current.pop(index, None)

    def __contains__(self, index: int) -> bool:
        return index in self._current

    def first(self, skip: Collection[int]) -> tuple[float, int] | None:
        """
        The key and index first in the queue, leaving out C{skip}; the
        queue is unchanged.
        """
        heap = self._heap
        aside = []
        found = None
        while heap:
            key, stamp, index = heap[0]
            if self._current.get(index) != stamp:
                heapq.heappop(heap)
            elif index in skip:
                aside.append(heapq.heappop(heap))
            else:
                found = (key, index)
                break
        for item in aside:
            heapq.heappush(heap, item)
        return found


class IndexedEntries:
    """
    The entries of positive weight, by index, and the indexes of an
    C{exclude} collection: the base of every algorithm.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = [entry for entry in entries if entry.weight > 0]
        self.index = {entry: i for i, entry in enumerate(self.entries)}

    def indexes(self, exclude: Collection[Entry]) -> set[int]:
        """
        The indexes of the entries of C{exclude} that are here.
        """
        return {self.index[entry] for entry in exclude if entry in self.index}
