"""
Tests for L{echogate.balancer.algorithms}.
"""
from __future__ import annotations

from collections import Counter

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from echogate.balancer.algorithms import (
    ConsistentHashing,
    Entry,
    Latency,
    LeastConnections,
    RoundRobin,
    observe,
    slot_of,
)


def entry(name: str, weight: float = 100, port: int = 80) -> Entry:
    """
    An entry for the address C{name}.
    """
    return Entry(name, port, weight, f"t-{name}")


def names(picks: list[Entry | None]) -> str:
    """
    The addresses of C{picks}, joined.
    """
    return " ".join(found.address if found else "-" for found in picks)


class RoundRobinTests(SynchronousTestCase):
    """
    Tests for L{RoundRobin}.
    """

    def test_smooth(self) -> None:
        """
        Weights 3:1 interleave as C{a a b a}, not in bursts.
        """
        rr = RoundRobin([entry("a", 3), entry("b", 1)])
        self.assertEqual(names([rr.pick(None, ()) for _ in range(8)]), "a a b a a a b a")

    def test_proportions(self) -> None:
        """
        Over a full cycle each entry is picked in proportion to its weight.
        """
        rr = RoundRobin([entry("a", 5), entry("b", 3), entry("c", 2)])
        counts = Counter(rr.pick(None, ()).address for _ in range(100))  # type: ignore[union-attr]
        self.assertEqual(counts, {"a": 50, "b": 30, "c": 20})

    def test_weight_zero(self) -> None:
        """
        An entry of weight 0 is never picked.
        """
        rr = RoundRobin([entry("a", 0), entry("b")])
        self.assertEqual(names([rr.pick(None, ()) for _ in range(3)]), "b b b")

    def test_exclude(self) -> None:
        """
        An excluded entry is skipped, and keeps its turn for later.
        """
        a, b = entry("a"), entry("b")
        rr = RoundRobin([a, b])
        self.assertEqual(rr.pick(None, [a]), b)
        self.assertEqual(names([rr.pick(None, ()) for _ in range(3)]), "a b a")
        self.assertIsNone(rr.pick(None, [a, b]))

    def test_unavailable(self) -> None:
        """
        An unavailable entry is skipped until it is available again.
        """
        a, b = entry("a"), entry("b")
        rr = RoundRobin([a, b])
        rr.set_available(a, False)
        self.assertEqual(names([rr.pick(None, ()) for _ in range(3)]), "b b b")
        rr.set_available(a, True)
        self.assertEqual(sorted(names([rr.pick(None, ()) for _ in range(2)]).split()), ["a", "b"])


class ConsistentHashingTests(SynchronousTestCase):
    """
    Tests for L{ConsistentHashing}.
    """

    keys = [f"key-{i}" for i in range(4000)]

    def owners(self, ring: ConsistentHashing) -> dict[str, str]:
        """
        The address each key goes to.
        """
        return {key: ring.pick(key, ()).address for key in self.keys}  # type: ignore[union-attr]

    def test_same_key_same_entry(self) -> None:
        """
        A key always goes to the same entry, and keys spread by weight.
        """
        ring = ConsistentHashing([entry("a", 100), entry("b", 300)], 1000)
        first = self.owners(ring)
        self.assertEqual(first, self.owners(ring))
        share = Counter(first.values())["b"] / len(self.keys)
        self.assertTrue(0.68 < share < 0.82, share)

    def test_adding_moves_one_share(self) -> None:
        """
        Adding a fifth entry moves about a fifth of the keys, all to it.
        """
        four = [entry(name) for name in "abcd"]
        before = self.owners(ConsistentHashing(four, 10000))
        after = self.owners(ConsistentHashing(four + [entry("e")], 10000))
        moved = [key for key in self.keys if before[key] != after[key]]
        self.assertEqual({after[key] for key in moved}, {"e"})
        self.assertTrue(0.15 < len(moved) / len(self.keys) < 0.25, len(moved))

    def test_removing_moves_one_share(self) -> None:
        """
        Removing one of four entries moves only its keys, about a quarter.
        """
        four = [entry(name) for name in "abcd"]
        before = self.owners(ConsistentHashing(four, 10000))
        after = self.owners(ConsistentHashing(four[:3], 10000))
        moved = [key for key in self.keys if before[key] != after[key]]
        self.assertEqual({before[key] for key in moved}, {"d"})
        self.assertTrue(0.2 < len(moved) / len(self.keys) < 0.3, len(moved))

    def test_unavailable_moves_only_its_keys(self) -> None:
        """
        The keys of an unavailable entry go elsewhere; the others stay.
        """
        entries = [entry(name) for name in "abcd"]
        ring = ConsistentHashing(entries, 10000)
        before = self.owners(ring)
        ring.set_available(entries[0], False)
        after = self.owners(ring)
        self.assertEqual({key for key in self.keys if before[key] != after[key]},
                         {key for key in self.keys if before[key] == "a"})
        self.assertNotIn("a", after.values())
        ring.set_available(entries[0], True)
        self.assertEqual(self.owners(ring), before)

    def test_exclude(self) -> None:
        """
        A retry never goes to the excluded entry, and goes to the key's
        next best.
        """
        entries = [entry(name) for name in "abc"]
        ring = ConsistentHashing(entries, 100)
        first = ring.pick("k", ())
        assert first is not None
        second = ring.pick("k", [first])
        self.assertNotIn(second, (None, first))
        self.assertEqual(ring.pick("k", [first]), second)

    def test_no_key(self) -> None:
        """
        Without a key the entries take turns.
        """
        ring = ConsistentHashing([entry("a"), entry("b")], 100)
        self.assertEqual(names([ring.pick(None, ()) for _ in range(4)]), "a b a b")

    def test_slot(self) -> None:
        """
        A key's slot is within the ring.
        """
        self.assertTrue(all(0 <= slot_of(key, 10) < 10 for key in self.keys))


class LeastConnectionsTests(SynchronousTestCase):
    """
    Tests for L{LeastConnections}.
    """

    def test_fewest_in_flight(self) -> None:
        """
        The entry with fewer requests in flight goes; a release counts.
        """
        a, b = entry("a"), entry("b")
        lc = LeastConnections([a, b])
        first = lc.pick(None, ())
        assert first is not None
        lc.acquire(first)
        second = lc.pick(None, ())
        self.assertNotEqual(second, first)
        assert second is not None
        lc.acquire(second)
        lc.acquire(second)
        self.assertEqual(lc.pick(None, ()), first)
        lc.acquire(first)
        lc.acquire(first)
        lc.release(second, None)
        lc.release(second, None)
        self.assertEqual(lc.pick(None, ()), second)

    def test_weight(self) -> None:
        """
        With weights 2:1, the heavier entry carries two requests for one.
        """
        a, b = entry("a", 200), entry("b", 100)
        lc = LeastConnections([a, b])
        for _ in range(6):
            found = lc.pick(None, ())
            assert found is not None
            lc.acquire(found)
        self.assertEqual((a.load.in_flight, b.load.in_flight), (4, 2))

    def test_exclude_and_unavailable(self) -> None:
        """
        Excluded and unavailable entries are skipped.
        """
        a, b, c = entry("a"), entry("b"), entry("c")
        lc = LeastConnections([a, b, c])
        lc.set_available(b, False)
        self.assertEqual({lc.pick(None, [a]) for _ in range(3)}, {c})
        lc.set_available(b, True)
        self.assertIn(lc.pick(None, [a, c]), (b,))


class LatencyTests(SynchronousTestCase):
    """
    Tests for L{Latency}.
    """

    def test_fastest(self) -> None:
        """
        Unsampled entries go first in turn; then the fastest goes.
        """
        clock = Clock()
        a, b = entry("a"), entry("b")
        lat = Latency([a, b], clock)
        self.assertEqual({lat.pick(None, ()), lat.pick(None, ())}, {a, b})
        lat.acquire(a)
        lat.release(a, 0.5)
        lat.acquire(b)
        lat.release(b, 0.1)
        self.assertEqual(names([lat.pick(None, ()) for _ in range(3)]), "b b b")
        self.assertEqual(lat.pick(None, [b]), a)

    def test_weight(self) -> None:
        """
        A heavier entry wins at equal latency.
        """
        clock = Clock()
        a, b = entry("a", 100), entry("b", 300)
        lat = Latency([a, b], clock)
        lat.release(a, 0.2)
        lat.release(b, 0.2)
        self.assertEqual(lat.pick(None, ()), b)

    def test_decay(self) -> None:
        """
        A slow entry's score decays while it gets no samples, so that it is
        tried again.
        """
        clock = Clock()
        a, b = entry("a"), entry("b")
        lat = Latency([a, b], clock)
        lat.release(a, 1.0)
        lat.release(b, 0.2)
        self.assertEqual(lat.pick(None, ()), b)
        clock.advance(30)
        lat.release(b, 0.2)
        self.assertEqual(lat.pick(None, ()), a)

    def test_observe(self) -> None:
        """
        A new sample moves the average by the smoothing share.
        """
        a = entry("a")
        observe(a.load, 1.0, 0.0)
        observe(a.load, 2.0, 0.0)
        self.assertAlmostEqual(a.load.ewma, 1.3)
