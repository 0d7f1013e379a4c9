"""
Counters and histograms counted in plain Python numbers and exposed
through C{prometheus_client} at scrape time: the prometheus plugin's
per-request metrics (L{echogate.bundled.prometheus}).

C{prometheus_client}'s own C{Counter} and C{Histogram} take a lock for
every increment (a histogram's C{observe} two: its sum and its bucket) and
check that the metric can be observed each time; at nine increments a
request that was about a quarter of what the plugin cost (32k of 122k
instructions). Here a series is a small
object whose numbers a request adds to directly (L{CounterSeries.value},
L{HistogramSeries.observe}); a L{PlainCounter} or L{PlainHistogram} is a
collector in a C{CollectorRegistry} that turns its series into a
C{CounterMetricFamily} or C{HistogramMetricFamily} when the registry is
read. The exposition is the one C{prometheus_client}'s metrics of the same
name, help, labels and buckets give: the same samples in the same order
(series in the order they were first used), float values summed in the
same order, and each series' C{_created} time taken when it was first used
(left out when C{prometheus_client}'s created series are disabled).

No lock: every count and every scrape happens on the reactor thread.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from typing import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _client_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import INF, floatToGoString

__all__ = ["CounterSeries", "HistogramSeries", "PlainCounter", "PlainHistogram"]


def _created_exported() -> bool:
    """
    Whether C{prometheus_client} exports the C{_created} series of
    counters and histograms (C{PROMETHEUS_DISABLE_CREATED_SERIES} and
    C{disable_created_metrics()} turn them off).
    """
    return bool(getattr(_client_metrics, "_use_created", True))


class CounterSeries:
    """
    One labelled series of a L{PlainCounter}.

    @ivar value: the count so far (a float, as C{prometheus_client} keeps
        it); a request adds to it directly.
    @ivar created: when the series was first used (seconds since the
        epoch).
    """

    __slots__ = ("value", "created")

    def __init__(self, created: float) -> None:
        self.value = 0.0
        self.created = created

    def inc(self, amount: float = 1) -> None:
        """
        Add C{amount}.

        @raise ValueError: if C{amount} is negative (a counter only goes
            up).
        """
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class HistogramSeries:
    """
    One labelled series of a L{PlainHistogram}.

    @ivar bounds: the buckets' upper bounds, ascending, the last C{+Inf}.
    @ivar counts: the observations in each bucket (not cumulative), the
        last one C{+Inf}'s.
    @ivar sum: the sum of the observations (a float).
    @ivar created: when the series was first used (seconds since the
        epoch).
    """

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Sequence[float], created: float) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = created

    def observe(self, amount: float) -> None:
        """
        Count C{amount} in the first bucket whose upper bound is at least
        C{amount} (NaN: in no bucket, but in the sum, as
        C{prometheus_client} does).
        """
        self.sum += amount
        if amount == amount:
            self.counts[bisect_left(self.bounds, amount)] += 1


class _Plain:
    """
    What L{PlainCounter} and L{PlainHistogram} share: a name, help,
    label names, the series by label values, and the wall clock their
    C{_created} times come from.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], wall: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._wall = wall

    def _values(self, labelvalues: tuple[object, ...]) -> tuple[str, ...]:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        return tuple(str(value) for value in labelvalues)


class PlainCounter(_Plain):
    """
    A labelled counter counted in L{CounterSeries}, registered in
    C{registry} as a collector.

    @ivar series: the series by label values (strings), in the order they
        were first used.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 wall: Callable[[], float] = time.time) -> None:
        """
        @param name: the name without C{_total}.
        @param wall: the clock of the series' C{_created} times.
        """
        super().__init__(name, documentation, labelnames, wall)
        self.series: dict[tuple[str, ...], CounterSeries] = {}
        registry.register(self)

    def labels(self, *labelvalues: object) -> CounterSeries:
        """
        The series of C{labelvalues} (one for each label name, made
        strings), made when first asked for.

        @raise ValueError: if there are not as many values as label names.
        """
        key = self._values(labelvalues)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = CounterSeries(self._wall())
        return found

    def describe(self) -> list[CounterMetricFamily]:
        """
        The family, without samples (the names the registry reserves).
        """
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        """
        The family with every series' count and C{_created} time.
        """
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = _created_exported()
        for key, series in list(self.series.items()):
            family.add_metric(key, series.value, created=series.created if created else None)
        yield family


class PlainHistogram(_Plain):
    """
    A labelled histogram counted in L{HistogramSeries}, registered in
    C{registry} as a collector.

    @ivar series: the series by label values (strings), in the order they
        were first used.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry, wall: Callable[[], float] = time.time) -> None:
        """
        @param buckets: the upper bounds, ascending (C{+Inf} is added when
            not last).
        @param wall: the clock of the series' C{_created} times.
        @raise ValueError: if the bounds are not ascending, or fewer than
            two with C{+Inf}.
        """
        super().__init__(name, documentation, labelnames, wall)
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        self._bounds = tuple(bounds)
        self._les = tuple(floatToGoString(bound) for bound in bounds)
        self.series: dict[tuple[str, ...], HistogramSeries] = {}
        registry.register(self)

    def labels(self, *labelvalues: object) -> HistogramSeries:
        """
        The series of C{labelvalues} (one for each label name, made
        strings), made when first asked for.

        @raise ValueError: if there are not as many values as label names.
        """
        key = self._values(labelvalues)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = HistogramSeries(self._bounds, self._wall())
        return found

    def describe(self) -> list[HistogramMetricFamily]:
        """
        The family, without samples (the names the registry reserves).
        """
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """
        The family with every series' cumulative buckets, count, sum and
        C{_created} time.
        """
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = _created_exported()
        for key, series in list(self.series.items()):
            total = 0.0
            buckets = []
            for le, count in zip(self._les, series.counts):
                total += count
                buckets.append((le, total))
            family.add_metric(key, buckets, series.sum)
            if created:
                family.add_sample(self.name + "_created", dict(zip(self.labelnames, key)), series.created)
        yield family
