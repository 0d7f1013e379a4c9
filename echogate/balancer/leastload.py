"""
The algorithms that pick the least loaded entry: the fewest requests in
flight for the weight (L{LeastConnections}), or the lowest time-decayed
average response time for the weight (L{Latency}). Both keep their entries
in an L{EntryQueue} whose keys change as requests start and end: O(log n)
a pick, an acquire or a release.
"""
from __future__ import annotations

import math
from typing import Collection, Iterable

from twisted.internet.interfaces import IReactorTime

from echogate.balancer.entries import Entry, EntryQueue, IndexedEntries, Load

#: How fast a latency sample is forgotten: it counts C{1/e} after this
#: many seconds without a new sample.
DECAY_TIME = 10.0
#: The share a new latency sample takes of the average.
SMOOTHING = 0.3


class LeastConnections(IndexedEntries):
    """
    The entry with the fewest requests in flight for its weight: the
    lowest C{(in_flight + 1) / weight}; equal scores take turns.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        super().__init__(entries)
        self._queue = EntryQueue()
        for i in range(len(self.entries)):
            self._requeue(i)

    def _score(self, i: int) -> float:
        entry = self.entries[i]
        return (entry.load.in_flight + 1) / entry.weight

    def _requeue(self, i: int) -> None:
        self._queue.put(i, self._score(i))

    def pick(self, key: str | None, exclude: Collection[Entry]) -> Entry | None:
        """
        The least loaded entry, not excluded.
        """
        found = self._queue.first(self.indexes(exclude) if exclude else ())
        return None if found is None else self.entries[found[1]]

    def set_available(self, entry: Entry, available: bool) -> None:
        """
        Take C{entry} out, or put it back with its current score.
        """
        i = self.index.get(entry)
        if i is None:
            return
        if not available:
            self._queue.discard(i)
        elif i not in self._queue:
            self._requeue(i)

    def _changed(self, entry: Entry) -> None:
        i = self.index.get(entry)
        if i is not None and i in self._queue:
            self._requeue(i)

    def acquire(self, entry: Entry) -> None:
        """
        One more request in flight on C{entry}.
        """
        entry.load.in_flight += 1
        self._changed(entry)

    def release(self, entry: Entry, latency: float | None) -> None:
        """
        One request fewer in flight on C{entry}.
        """
        entry.load.in_flight = max(0, entry.load.in_flight - 1)
        self._changed(entry)


class Latency(LeastConnections):
    """
    The entry with the lowest average response time for its weight.

    The average decays towards 0 while an entry gets no samples
    (C{ewma * exp(-idle / DECAY_TIME)}), so a slow entry is tried again in
    time. The queue's key is the logarithm of the decayed score, which
    orders entries the same at any time: C{ln(ewma / weight) + ewma_at /
    DECAY_TIME}. Entries without a sample come first; equal keys take
    turns.
    """

    def __init__(self, entries: Iterable[Entry], clock: IReactorTime) -> None:
        self._clock = clock
        super().__init__(entries)

    def _score(self, i: int) -> float:
        entry = self.entries[i]
        load = entry.load
        if not load.sampled or load.ewma <= 0:
            return -math.inf
        return math.log(load.ewma / entry.weight) + load.ewma_at / DECAY_TIME

    def pick(self, key: str | None, exclude: Collection[Entry]) -> Entry | None:
        """
        The fastest entry, not excluded; it goes behind its equals.
        """
        entry = super().pick(key, exclude)
        if entry is not None:
            self._changed(entry)
        return entry

    def release(self, entry: Entry, latency: float | None) -> None:
        """
        Count the request ended and fold C{latency} into the average.
        """
        if latency is not None:
            observe(entry.load, latency, self._clock.seconds())
        super().release(entry, latency)


def observe(load: Load, latency: float, now: float) -> None:
    """
    Fold one response time into C{load}'s decayed average.
    """
    latency = max(latency, 1e-6)
    if not load.sampled:
        load.ewma = latency
    else:
        decayed = load.ewma * math.exp(-max(0.0, now - load.ewma_at) / DECAY_TIME)
        load.ewma = decayed * (1 - SMOOTHING) + latency * SMOOTHING
    load.ewma_at = now
    load.sampled = True
