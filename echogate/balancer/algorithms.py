"""
The four ways a balancer chooses an entry: round-robin, consistent hashing,
least-connections and latency; L{make_algorithm} gives the one an upstream
record names.

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

The last two keep their entries in a lazily updated heap
(L{echogate.balancer.entries.EntryQueue}): O(log n) a pick, an acquire or
a release. Every algorithm skips entries marked unavailable
(L{Algorithm.set_available}) and the entries of C{exclude}, so a retry
never goes back to the entry that just failed.

The modules: L{echogate.balancer.entries} (the entry, its load, the
protocol and the heap), L{echogate.balancer.roundrobin} (round-robin and
the hash ring), L{echogate.balancer.leastload} (least-connections and
latency); this one names them all.
"""
from __future__ import annotations

from typing import Sequence

from twisted.internet.interfaces import IReactorTime

from echogate.balancer.entries import Algorithm, Entry, Load
from echogate.balancer.leastload import DECAY_TIME, SMOOTHING, Latency, LeastConnections, observe
from echogate.balancer.roundrobin import ConsistentHashing, RoundRobin, slot_of

__all__ = [
    "CONSISTENT_HASHING", "DECAY_TIME", "LATENCY", "LEAST_CONNECTIONS", "ROUND_ROBIN", "SMOOTHING",
    "Algorithm", "ConsistentHashing", "Entry", "Latency", "LeastConnections", "Load", "RoundRobin",
    "make_algorithm", "observe", "slot_of",
]

#: The algorithms by their name in an upstream record.
ROUND_ROBIN = "round-robin"
CONSISTENT_HASHING = "consistent-hashing"
LEAST_CONNECTIONS = "least-connections"
LATENCY = "latency"


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
