"""A mergeable duration sketch (DDSketch-style logarithmic buckets) with 1% relative accuracy.

Why a sketch: percentiles of a rollup must survive merging (hour -> day -> month, and rows
written by several collectors at once). Exact percentiles cannot be merged; a list of every
duration is too large. A value ``x > 0`` falls in bucket ``i = ceil(log_gamma(x))`` with
``gamma = (1 + a) / (1 - a)``; the bucket's representative ``2 * gamma**i / (gamma + 1)`` is
within a relative error ``a`` of every value in the bucket (Masson, Rim and Lee, "DDSketch",
VLDB 2019). Here ``a = ALPHA = 0.01``.

Merging adds bucket counts, so it is exact, commutative and associative: a month merged from
days merged from hours is the same sketch, bucket for bucket, as a month built directly.

Quantile ``q`` of ``n`` values returns the representative of the bucket holding the value of
rank ``floor(q * (n - 1))`` (0-based) of the sorted values, clamped to the known min and max:
within 1% of that exact value. Zero durations are counted apart (bucket of their own).

Stored as JSON: ``{"alpha": 0.01, "zero": z, "offset": i0, "counts": [c_i0, c_i0+1, ...]}``
(dense counts from the lowest non-empty bucket, trailing zeros trimmed).
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any, Final

ALPHA: Final = 0.01
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA: Final = math.log(GAMMA)
_INDEX_CACHE: dict[int, int] = {}


class SketchError(ValueError):
    """A stored sketch is not in the expected form."""


def bucket_index(value: float) -> int:
    """The bucket of a positive value (integer milliseconds are cached: durations repeat)."""
    if type(value) is int:
        cached = _INDEX_CACHE.get(value)
        if cached is None:
            cached = math.ceil(math.log(value) / _LOG_GAMMA)
            if len(_INDEX_CACHE) < 1_000_000:
                _INDEX_CACHE[value] = cached
        return cached
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative of a bucket: relative error at most ALPHA for any value inside."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def quantiles_of(
    zero: int, buckets: Iterable[tuple[int, int]], qs: Iterable[float], low: float | None, high: float | None
) -> list[float | None]:
    """Quantiles from a zero count and (bucket index, count) pairs in increasing index order."""
    wanted = list(qs)
    for q in wanted:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is outside 0..1")
    items = list(buckets)
    total = zero + sum(c for _, c in items)
    if total == 0:
        return [None] * len(wanted)
    ranks = sorted((q * (total - 1), position) for position, q in enumerate(wanted))
    out: list[float | None] = [None] * len(wanted)
    seen = zero
    pending = 0
    while pending < len(ranks) and seen > ranks[pending][0]:
        out[ranks[pending][1]] = 0.0
        pending += 1
    if pending < len(ranks):
        for index, count in items:
            if not count:
                continue
            seen += count
            while pending < len(ranks) and seen > ranks[pending][0]:
                out[ranks[pending][1]] = bucket_value(index)
                pending += 1
            if pending == len(ranks):
                break
    for position, value in enumerate(out):
        if value is None:
            continue
        if low is not None and (value < low or wanted[position] == 0.0):
            out[position] = float(low)
        elif high is not None and (value > high or wanted[position] == 1.0):
            out[position] = float(high)
    return out


class DenseCounts:
    """Adds stored sketches (their dense JSON form) fast: aligned slices summed with ``map`` in C,
    for the API, which merges hundreds of rollup rows per request."""

    __slots__ = ("counts", "offset", "zero")

    def __init__(self) -> None:
        self.zero = 0
        self.offset = 0
        self.counts: list[int] = []

    def add_json(self, data: Mapping[str, Any] | None) -> None:
        if not data:
            return
        if float(data.get("alpha", ALPHA)) != ALPHA:
            raise SketchError(f"sketch has relative accuracy {data['alpha']}, expected {ALPHA}")
        self.zero += int(data.get("zero", 0))
        counts: list[int] = data.get("counts") or []
        if not counts:
            return
        offset = int(data["offset"])
        if not self.counts:
            self.offset, self.counts = offset, list(counts)
            return
        if offset < self.offset:
            self.counts[:0] = [0] * (self.offset - offset)
            self.offset = offset
        start = offset - self.offset
        end = start + len(counts)
        if end > len(self.counts):
            self.counts.extend([0] * (end - len(self.counts)))
        self.counts[start:end] = map(operator.add, self.counts[start:end], counts)

    def add_buckets(self, zero: int, buckets: Mapping[int, int]) -> None:
        """Add a sparse sketch (``DurationSketch.zero`` and ``.buckets``) with non-negative counts."""
        self.zero += zero
        live = [i for i, c in buckets.items() if c]
        if not live:
            return
        low, high = min(live), max(live)
        if not self.counts:
            self.offset, self.counts = low, [0] * (high - low + 1)
        else:
            if low < self.offset:
                self.counts[:0] = [0] * (self.offset - low)
                self.offset = low
            if high - self.offset >= len(self.counts):
                self.counts.extend([0] * (high - self.offset + 1 - len(self.counts)))
        counts, offset = self.counts, self.offset
        for index in live:
            counts[index - offset] += buckets[index]

    def to_json(self) -> dict[str, Any]:
        """The same JSON as ``DurationSketch.to_json`` of the same counts (non-negative counts)."""
        counts = self.counts
        start, end = 0, len(counts)
        while start < end and not counts[start]:
            start += 1
        while end > start and not counts[end - 1]:
            end -= 1
        if start == end:
            return {"alpha": ALPHA, "zero": self.zero, "offset": 0, "counts": []}
        return {"alpha": ALPHA, "zero": self.zero, "offset": self.offset + start, "counts": counts[start:end]}

    def quantiles(self, qs: Iterable[float], low: float | None = None, high: float | None = None) -> list[float | None]:
        """``quantiles_of`` over the dense counts: running sums and a binary search (in C) rather
        than a Python loop over every bucket (the hook computes three per rollup row written)."""
        wanted = list(qs)
        for q in wanted:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile {q} is outside 0..1")
        running = list(accumulate(self.counts, initial=self.zero))  # running[i + 1]: up to bucket i
        total = running[-1]
        if total == 0:
            return [None] * len(wanted)
        out: list[float | None] = []
        for q in wanted:
            position = bisect_right(running, q * (total - 1))  # the first running count above the rank
            value = 0.0 if position == 0 else bucket_value(self.offset + position - 1)
            if low is not None and (value < low or q == 0.0):
                value = float(low)
            elif high is not None and (value > high or q == 1.0):
                value = float(high)
            out.append(value)
        return out

    def sketch(self) -> DurationSketch:
        return DurationSketch(self.zero, {self.offset + i: c for i, c in enumerate(self.counts) if c})


class DurationSketch:
    """Counts per logarithmic bucket; ``zero`` counts values <= 0."""

    __slots__ = ("buckets", "zero")

    def __init__(self, zero: int = 0, buckets: dict[int, int] | None = None) -> None:
        self.zero = zero
        self.buckets: dict[int, int] = buckets if buckets is not None else {}

    @classmethod
    def of(cls, values: Iterable[float]) -> DurationSketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    def add(self, value: float, count: int = 1) -> None:
        if value <= 0:
            self.zero += count
            return
        index = bucket_index(value)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + count

    def merge(self, other: DurationSketch) -> None:
        self.zero += other.zero
        buckets = self.buckets
        for index, count in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + count

    def copy(self) -> DurationSketch:
        return DurationSketch(self.zero, dict(self.buckets))

    @property
    def count(self) -> int:
        return self.zero + sum(self.buckets.values())

    def quantile(self, q: float, low: float | None = None, high: float | None = None) -> float | None:
        """The estimate of quantile ``q`` (0..1), clamped to [low, high] (the true min and max,
        when known: quantiles 0 and 1 are then exact); None if empty."""
        return self.quantiles((q,), low, high)[0]

    def quantiles(self, qs: Iterable[float], low: float | None = None, high: float | None = None) -> list[float | None]:
        """Several quantiles in one pass over the sorted buckets."""
        return quantiles_of(self.zero, sorted(self.buckets.items()), qs, low, high)

    def to_json(self) -> dict[str, Any]:
        buckets = {i: c for i, c in self.buckets.items() if c}
        if not buckets:
            return {"alpha": ALPHA, "zero": self.zero, "offset": 0, "counts": []}
        offset, top = min(buckets), max(buckets)
        counts = [0] * (top - offset + 1)
        for index, count in buckets.items():
            counts[index - offset] = count
        return {"alpha": ALPHA, "zero": self.zero, "offset": offset, "counts": counts}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DurationSketch:
        if not data:
            return cls()
        try:
            if float(data.get("alpha", ALPHA)) != ALPHA:
                raise SketchError(f"sketch has relative accuracy {data['alpha']}, expected {ALPHA}")
            offset = int(data["offset"])
            buckets = {offset + i: int(c) for i, c in enumerate(data["counts"]) if c}
            return cls(int(data["zero"]), buckets)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SketchError):
                raise
            raise SketchError(f"stored duration sketch is malformed: {type(exc).__name__}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DurationSketch):
            return NotImplemented
        return self.zero == other.zero and {i: c for i, c in self.buckets.items() if c} == {
            i: c for i, c in other.buckets.items() if c
        }

    def __repr__(self) -> str:
        return f"DurationSketch(count={self.count})"

    __hash__ = None  # type: ignore[assignment]
