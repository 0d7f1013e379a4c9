"""
The algorithms that take turns: smooth weighted round-robin
(L{RoundRobin}) and the consistent hashing ring built on it
(L{ConsistentHashing}), which goes round-robin for a request without a
hash key.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from typing import Collection, Iterable

from echogate.balancer.entries import Entry, EntryQueue, IndexedEntries

_MASK = (1 << 64) - 1


class RoundRobin(IndexedEntries):
    """
    Smooth weighted round-robin: the entry whose next turn is due first
    goes; an entry of weight C{w} has its C{n}th turn at C{n / w}.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        super().__init__(entries)
        self._turns = [0] * len(self.entries)
        self._now = 0.0
        self._queue = EntryQueue()
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
