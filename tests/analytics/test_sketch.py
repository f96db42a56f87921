"""The duration sketch: 1% relative accuracy against exact percentiles, exact merges."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_otel.collector.analytics.sketch import ALPHA, DurationSketch, SketchError, bucket_index, bucket_value

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def exact(values: list[int], q: float) -> int:
    """The value of rank floor(q * (n - 1)) of the sorted values (the sketch's definition)."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_within_alpha(sketch: DurationSketch, values: list[int]) -> None:
    estimates = sketch.quantiles(QUANTILES)
    for q, estimate in zip(QUANTILES, estimates, strict=True):
        truth = exact(values, q)
        assert estimate is not None
        if truth == 0:
            assert estimate == 0
        else:
            assert abs(estimate - truth) <= ALPHA * truth + 1e-9, (q, estimate, truth)
        assert sketch.quantile(q) == estimate


@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=400))
@settings(max_examples=300, deadline=None)
def test_quantiles_are_within_one_percent_of_exact(values: list[int]) -> None:
    assert_within_alpha(DurationSketch.of(values), values)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: int(rng.lognormvariate(7, 1.2)),  # agent latencies: long right tail
        lambda rng: int(rng.expovariate(1 / 300)),
        lambda rng: rng.choice((5, 5, 5, 60_000)),  # bimodal: cache hits and timeouts
        lambda rng: int(rng.uniform(0, 10)),  # tiny values and zeros
    ],
)
def test_realistic_distributions(draw: object) -> None:
    rng = random.Random(11)
    values = [draw(rng) for _ in range(50_000)]  # type: ignore[operator]
    assert_within_alpha(DurationSketch.of(values), values)


def test_every_bucket_representative_is_within_alpha_of_its_values() -> None:
    for value in (1, 2, 3, 7, 99, 100, 101, 12_345, 999_999, 10**9):
        representative = bucket_value(bucket_index(value))
        assert abs(representative - value) <= ALPHA * value


@given(
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=300),
    st.lists(st.integers(min_value=0, max_value=299), max_size=10),
)
@settings(max_examples=200, deadline=None)
def test_merging_parts_gives_the_direct_sketch(values: list[int], cuts: list[int]) -> None:
    """Hour -> day -> month: any split, merged in any order, is the same sketch."""
    bounds = sorted({0, len(values), *(c for c in cuts if c < len(values))})
    parts = [DurationSketch.of(values[a:b]) for a, b in itertools.pairwise(bounds)]
    merged = DurationSketch()
    for part in reversed(parts):
        merged.merge(part)
    direct = DurationSketch.of(values)
    assert merged == direct
    assert merged.to_json() == direct.to_json()
    assert merged.quantiles(QUANTILES) == direct.quantiles(QUANTILES)


def test_json_round_trip_and_clamping() -> None:
    sketch = DurationSketch.of([0, 1, 10, 10, 250, 4000])
    again = DurationSketch.from_json(sketch.to_json())
    assert again == sketch and again.count == 6
    assert sketch.to_json()["zero"] == 1
    assert sketch.quantile(1.0, low=0, high=4000) == 4000  # clamped to the true max
    assert sketch.quantile(0.5, low=20, high=30) == 20
    assert DurationSketch().quantile(0.5) is None
    assert DurationSketch.from_json(None).count == 0


@pytest.mark.parametrize(
    "stored",
    [{"alpha": 0.05, "zero": 0, "offset": 0, "counts": [1]}, {"zero": 0, "counts": [1]}, {"offset": "x", "zero": 0}],
)
def test_malformed_stored_sketches_are_refused(stored: dict[str, object]) -> None:
    with pytest.raises(SketchError):
        DurationSketch.from_json(stored)


def test_quantile_outside_zero_to_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        DurationSketch.of([1]).quantile(1.5)


@given(st.lists(st.lists(st.integers(min_value=0, max_value=10**6), max_size=50), max_size=12))
@settings(max_examples=150, deadline=None)
def test_dense_merging_of_stored_sketches_equals_sketch_merging(parts: list[list[int]]) -> None:
    """The API adds stored rows as dense arrays: the same sketch as merging them one by one."""
    from agent_otel.collector.analytics.sketch import DenseCounts

    dense = DenseCounts()
    merged = DurationSketch()
    for values in parts:
        part = DurationSketch.of(values)
        dense.add_json(part.to_json())
        merged.merge(part)
    assert dense.sketch() == merged
    with pytest.raises(SketchError):
        dense.add_json({"alpha": 0.02, "zero": 0, "offset": 0, "counts": [1]})
