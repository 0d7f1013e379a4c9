"""
The four ways a balancer chooses an entry: round-robin, consistent hashing,
least-connections and latency.

An L{Entry} is one address a balancer may send to (a target, or one address
of a target whose name resolves to several), with its share of the
target's weight. Every algorithm takes the entries once, never keeps an
entry of weight 0, and answers C{pick(key, exclude)} without a scan of all
entries where it can:

  - L{RoundRobin} is smooth weighted round-robin, scheduled as earliest
    deadline first: an entry of weight C{w} is due every C{1/w}, so weights
    3:1 interleave as C{a a b a}, never C{a a a b} bursts, in O(log n) a
    pick;
  - L{ConsistentHashing} owns a ring of C{slots}: a key's slot belongs to
    the entry of highest weighted rendezvous score for that slot, worked
    out on first use and kept, so a pick is O(1) once warm, and adding or
    removing an entry moves only the slots that entry wins or held;
  - L{LeastConnections} picks the lowest C{(in_flight + 1) / weight};
  - L{Latency} picks the lowest time-decayed EWMA of response times divided
    by the weight; an entry without a sample goes first.

The last two keep their entries in a lazily updated heap (L{_Queue}):
O(log n) a pick, an acquire or a release. Every algorithm skips entries
marked unavailable (L{Algorithm.set_available}) and the entries of
C{exclude}, so a retry never goes back to the entry that just failed.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import zlib
from typing import Collection, Iterable, Protocol, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

#: The algorithms by their name in an upstream record.
ROUND_ROBIN = "round-robin"
CONSISTENT_HASHING = "consistent-hashing"
LEAST_CONNECTIONS = "least-connections"
LATENCY = "latency"

#: How fast a latency sample is forgotten: it counts C{1/e} after this
#: many seconds without a new sample.
DECAY_TIME = 10.0
#: The share a new latency sample takes of the average.
SMOOTHING = 0.3

_MASK = (1 << 64) - 1


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


class _Queue:
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


class _Indexed:
    """
    The entries of positive weight, by index, and the indexes of an
    C{exclude} collection.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = [entry for entry in entries if entry.weight > 0]
        self.index = {entry: i for i, entry in enumerate(self.entries)}

    def indexes(self, exclude: Collection[Entry]) -> set[int]:
        """
        The indexes of the entries of C{exclude} that are here.
        """
        return {self.index[entry] for entry in exclude if entry in self.index}


class RoundRobin(_Indexed):
    """
    Smooth weighted round-robin: the entry whose next turn is due first
    goes; an entry of weight C{w} has its C{n}th turn at C{n / w}.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        super().__init__(entries)
        self._turns = [0] * len(self.entries)
        self._now = 0.0
        self._queue = _Queue()
        for i, entry in enumerate(self.entries):
            self._queue.put(i, 1 / entry.weight)

    def pick(self, key: str | None, exclude: Collection[Entry]) -> Entry | None:
        """
        The entry due first, not excluded; its next turn is scheduled.
        """
        found = self._queue.first(self.indexes(exclude) if exclude else ())
        if found is None:
            return None
        due, i = found
        self._now = due
        self._turns[i] += 1
        self._queue.put(i, (self._turns[i] + 1) / self.entries[i].weight)
        return self.entries[i]

    def set_available(self, entry: Entry, available: bool) -> None:
        """
        Take C{entry} out of turn, or back in at the current time.
        """
        i = self.index.get(entry)
        if i is None:
            return
        if not available:
            self._queue.discard(i)
        elif i not in self._queue:
            weight = entry.weight
            self._turns[i] = math.floor(self._now * weight)
            self._queue.put(i, (self._turns[i] + 1) / weight)

    def acquire(self, entry: Entry) -> None:
        """
        Count the request in flight.
        """
        entry.load.in_flight += 1

    def release(self, entry: Entry, latency: float | None) -> None:
        """
        Count the request ended.
        """
        entry.load.in_flight = max(0, entry.load.in_flight - 1)


def _seed(entry: Entry) -> int:
    digest = hashlib.blake2b(f"{entry.address}:{entry.port}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _mix(value: int) -> int:
    """
    SplitMix64's finaliser: a well spread 64-bit hash of C{value}.
    """
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def slot_of(key: str, slots: int) -> int:
    """
    The ring slot of a hash key.
    """
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % slots


class ConsistentHashing(RoundRobin):
    """
    A ring of C{slots} slots; a slot goes to the entry with the highest
    weighted rendezvous score C{-weight / ln(u)}, C{u} a hash of the
    entry's address and the slot. Each entry wins a share of slots in
    proportion to its weight, and a slot changes hands only when the entry
    that wins it comes or goes. A pick without a key goes round-robin.
    """

    def __init__(self, entries: Iterable[Entry], slots: int) -> None:
        super().__init__(entries)
        self.slots = slots
        self._seeds = [_seed(entry) for entry in self.entries]
        self._available = [True] * len(self.entries)
        self._owners: dict[int, int] = {}
        self._usable: dict[int, int] = {}

    def _score(self, i: int, slot: int) -> float:
        bits = _mix(self._seeds[i] ^ _mix(slot)) >> 11
        unit = (bits + 0.5) / (1 << 53)
        return -self.entries[i].weight / math.log(unit)

    def _best(self, slot: int, skip: Collection[int]) -> int | None:
        best, best_score = None, -1.0
        for i in range(len(self.entries)):
            if i in skip:
                continue
            score = self._score(i, slot)
            if score > best_score:
                best, best_score = i, score
        return best

    def owner(self, slot: int) -> Entry | None:
        """
        The entry that owns C{slot}, whatever its health.
        """
        i = self._owners.get(slot)
        if i is None:
            i = self._best(slot, ())
            if i is None:
                return None
            self._owners[slot] = i
        return self.entries[i]

    def pick(self, key: str | None, exclude: Collection[Entry]) -> Entry | None:
        """
        The available entry of highest score for the key's slot, leaving
        out C{exclude}.
        """
        if key is None:
            return super().pick(key, exclude)
        slot = slot_of(key, self.slots)
        i = self._usable.get(slot)
        if i is None:
            owner = self.owner(slot)
            if owner is None:
                return None
            i = self.index[owner]
            if not self._available[i]:
                down = {j for j, up in enumerate(self._available) if not up}
                i = self._best(slot, down)
                if i is None:
                    return None
            self._usable[slot] = i
        if exclude and self.entries[i] in exclude:
            skip = self.indexes(exclude) | {j for j, up in enumerate(self._available) if not up}
            i = self._best(slot, skip)
            if i is None:
                return None
        return self.entries[i]

    def set_available(self, entry: Entry, available: bool) -> None:
        """
        Let C{entry} win slots, or hand its slots to the next best.
        """
        super().set_available(entry, available)
        i = self.index.get(entry)
        if i is not None and self._available[i] != available:
            self._available[i] = available
            self._usable.clear()


class LeastConnections(RoundRobin):
    """
    The entry with the fewest requests in flight for its weight: the
    lowest C{(in_flight + 1) / weight}; equal scores take turns.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        _Indexed.__init__(self, entries)
        self._queue = _Queue()
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


def make_algorithm(name: str, entries: Sequence[Entry], *, slots: int,
                   clock: IReactorTime) -> Algorithm:
    """
    The algorithm called C{name} in an upstream record, over C{entries};
    an unknown name is round-robin.
    """
    if name == CONSISTENT_HASHING:
        return ConsistentHashing(entries, slots)
    if name == LEAST_CONNECTIONS:
        return LeastConnections(entries)
    if name == LATENCY:
        return Latency(entries, clock)
    return RoundRobin(entries)
