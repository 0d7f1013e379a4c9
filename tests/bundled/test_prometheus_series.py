"""
Tests for L{echogate.bundled.prometheus_series}: counters and histograms
counted in plain numbers expose what C{prometheus_client}'s own C{Counter}
and C{Histogram} expose for the same counts.
"""
from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as client_metrics
from twisted.trial.unittest import SynchronousTestCase

from echogate.bundled.prometheus_series import PlainCounter, PlainHistogram
from tests.bundled.test_prometheus_exposition import WallClock

#: Observations: on and off the bounds, fractions (float sums), negative,
#: zero, infinite, not a number.
OBSERVATIONS = (0.1, 0.2, 0.3, 1, 2.5, 5, 5.000001, 10, 250, -3, 0, 1e9, float("inf"), 0.7, float("nan"), 4)
BUCKETS = (0.5, 1, 5, 10, 100, 1000)


class SameExpositionTests(SynchronousTestCase):
    """
    A L{PlainCounter} and a L{PlainHistogram} expose what
    C{prometheus_client}'s C{Counter} and C{Histogram} do.
    """

    def counts(self, registry: CollectorRegistry, counter: object, histogram: object) -> str:
        """
        The same counts on C{counter} and C{histogram} (two label sets,
        the first used first, then both); the exposition of C{registry}.
        """
        for i, amount in enumerate(OBSERVATIONS):
            labels = ("a", "x") if i < 5 or i % 2 else ("b\n\"", "y")
            counter.labels(*labels).inc(abs(amount) if amount == amount else 1)
            histogram.labels(*labels).observe(amount)
        counter.labels(7, None).inc()
        return generate_latest(registry).decode("utf-8")

    def client_text(self) -> str:
        self.patch(client_metrics, "time", SimpleNamespace(time=WallClock()))
        registry = CollectorRegistry(auto_describe=True)
        counter = Counter("things", "Things\\ counted", ["kind", "where"], registry=registry)
        histogram = Histogram("sizes_ms", "Sizes", ["kind", "where"], buckets=BUCKETS, registry=registry)
        return self.counts(registry, counter, histogram)

    def plain_text(self) -> str:
        registry = CollectorRegistry(auto_describe=True)
        wall = WallClock()
        counter = PlainCounter("things", "Things\\ counted", ["kind", "where"], registry, wall)
        histogram = PlainHistogram("sizes_ms", "Sizes", ["kind", "where"], BUCKETS, registry, wall)
        return self.counts(registry, counter, histogram)

    def test_same(self) -> None:
        """
        The same text: samples, values, buckets, C{_created} times.
        """
        plain = self.plain_text()
        self.assertIn("_created", plain)
        self.assertEqual(plain, self.client_text())

    def test_createdOff(self) -> None:
        """
        With C{prometheus_client}'s created series off, neither has them.
        """
        self.patch(client_metrics, "_use_created", False)
        plain = self.plain_text()
        self.assertNotIn("_created", plain)
        self.assertEqual(plain, self.client_text())

    def test_infBucketGiven(self) -> None:
        """
        Bounds that end with C{+Inf} keep one C{+Inf} bucket.
        """
        registry = CollectorRegistry()
        histogram = PlainHistogram("h", "H", ["l"], (1, float("inf")), registry)
        histogram.labels("v").observe(2)
        self.assertEqual(histogram.labels("v").counts, [0, 1])


class SeriesTests(SynchronousTestCase):
    """
    The series and their families' checks.
    """

    def test_negativeIncrement(self) -> None:
        """
        A counter series refuses a negative increment.
        """
        counter = PlainCounter("c", "C", ["l"], CollectorRegistry())
        self.assertRaises(ValueError, counter.labels("v").inc, -1)

    def test_labelCount(self) -> None:
        """
        As many label values as names, else C{ValueError}.
        """
        counter = PlainCounter("c", "C", ["l", "m"], CollectorRegistry())
        histogram = PlainHistogram("h", "H", ["l"], (1,), CollectorRegistry())
        self.assertRaises(ValueError, counter.labels, "v")
        self.assertRaises(ValueError, histogram.labels, "v", "w")

    def test_bounds(self) -> None:
        """
        Bounds out of order, or only C{+Inf}, are refused.
        """
        self.assertRaises(ValueError, PlainHistogram, "h", "H", ["l"], (2, 1), CollectorRegistry())
        self.assertRaises(ValueError, PlainHistogram, "h", "H", ["l"], (float("inf"),), CollectorRegistry())

    def test_sameSeries(self) -> None:
        """
        The same label values (as strings) give the same series, made once
        with the wall clock's time.
        """
        wall = WallClock()
        counter = PlainCounter("c", "C", ["l"], CollectorRegistry(), wall)
        self.assertIs(counter.labels(1), counter.labels("1"))
        self.assertEqual((wall.readings, counter.labels("1").created), (1, 1_700_000_000.5))

    def test_namesReserved(self) -> None:
        """
        A registry refuses a second collector of a family's names.
        """
        registry = CollectorRegistry()
        PlainCounter("c", "C", ["l"], registry)
        PlainHistogram("h", "H", ["l"], (1,), registry)
        self.assertRaises(ValueError, Counter, "c", "C", ["l"], registry=registry)
        self.assertRaises(ValueError, Histogram, "h_sum", "H", registry=registry)
