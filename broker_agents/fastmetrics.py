"""Counters and histograms cheap enough for the per-message hot path.

prometheus-client's own metrics take a lock and do bookkeeping on every call (1-2 us each),
which is a sizeable share of handling one agent message. These cells are plain numbers
updated from the event loop's thread and read by a collector at scrape time, exported
under the same Prometheus names and types.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import REGISTRY, CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

DEFAULT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CounterCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramCell:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.label_names = list(labels)

    def register(self) -> None:
        REGISTRY.register(self)


class FastCounter(_Family):
    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        super().__init__(name, doc, labels)
        self._cells: dict[tuple[str, ...], CounterCell] = {}
        self.register()

    def labels(self, *values: str) -> CounterCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = CounterCell()
        return cell

    def cells(self) -> list[tuple[tuple[str, ...], CounterCell]]:
        """Every label set's cell (a snapshot of the list, the cells live): for readers in
        the process that need the numbers, not exposition samples."""
        return list(self._cells.items())

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name.removesuffix("_total"), self.doc,
                                     labels=self.label_names)
        for values, cell in list(self._cells.items()):
            family.add_metric(list(values), cell.value)
        yield family


class FastHistogram(_Family):
    def __init__(self, name: str, doc: str, labels: Sequence[str],
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, doc, labels)
        self.bounds = tuple(sorted(buckets))
        self._cells: dict[tuple[str, ...], HistogramCell] = {}
        self.register()

    def labels(self, *values: str) -> HistogramCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = HistogramCell(self.bounds)
        return cell

    def cells(self) -> list[tuple[tuple[str, ...], HistogramCell]]:
        """Every label set's cell (see ``FastCounter.cells``); ``counts`` per bucket, not
        cumulative, the last one above every bound."""
        return list(self._cells.items())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.label_names)
        for values, cell in list(self._cells.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), cell.counts, strict=True):
                cumulative += count
                buckets.append((_fmt(bound), float(cumulative)))
            family.add_metric(list(values), buckets, cell.sum)
        yield family


def _fmt(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
