"""Row building: the compiled timestamp conversion against the Python one it replaces."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from agent_otel.collector.pipeline import rows
from agent_otel.collector.pipeline.normalize import COMPILED_SCAN

EDGES = [
    0,
    1,
    999,
    1000,
    -1,
    -999,
    -1000,
    -1001,
    86_400 * 10**9 - 1,
    951_782_400 * 10**9,  # 2000-02-29
    4_107_542_400 * 10**9,  # 2100-03-01 (2100 is no leap year)
    1_795_000_000 * 10**9 + 123_456_789,
    253_402_300_799_999_999_000,  # 9999-12-31T23:59:59.999999: the last datetime
    -62_135_596_800 * 10**9,  # 0001-01-01: the first
    2**63,  # beyond 64-bit nanoseconds
    -(2**63) - 1,
]


def test_the_compiled_conversion_is_built_under_ci() -> None:
    assert rows.ts is not rows._ts or not COMPILED_SCAN


@pytest.mark.parametrize("ns", EDGES)
def test_edges_give_the_same_datetime(ns: int) -> None:
    assert rows.ts(ns) == rows._ts(ns)
    assert rows.ts(ns).tzinfo is UTC


def test_random_times_give_the_same_datetime() -> None:
    rng = random.Random(7)
    for _ in range(100_000):
        ns = rng.randrange(-62_135_596_800 * 10**9, 253_402_300_799_999_999_000)
        assert rows.ts(ns) == rows._ts(ns), ns


@pytest.mark.parametrize("ns", [253_402_300_800 * 10**9, -62_135_596_801 * 10**9, 2**80, -(2**80), 2**200])
def test_out_of_range_is_an_overflow_error(ns: int) -> None:
    with pytest.raises(OverflowError):
        rows._ts(ns)
    with pytest.raises(OverflowError):
        rows.ts(ns)


def test_the_result_is_an_aware_datetime_in_utc() -> None:
    value = rows.ts(1_795_000_000 * 10**9 + 1_500)
    assert value == datetime(2026, 11, 18, 11, 6, 40, 1, tzinfo=UTC)
    assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_agent_rows_merge_as_the_store_merges_one_row_per_execution() -> None:
    import time as clock

    from bench.loadgen import build_bodies

    from agent_otel.collector.pipeline.assemble import StoredState, assemble
    from agent_otel.collector.pipeline.normalize import Limits, Normalizer
    from agent_otel.collector.pipeline.sanitize import SpanSanitizer
    from agent_otel.collector.receiver.decode import decode_traces
    from agent_otel.collector.storage.store import _merge_agents
    from agent_otel.sanitize import RedactionCounts
    from agent_otel.settings import SanitizerSettings

    normalizer = Normalizer(SpanSanitizer(SanitizerSettings()))
    limits = Limits(clock.time_ns(), 86_400 * 10**9, 86_400 * 10**9, 32)
    spans = []
    for body, _ in build_bodies(3_000, 256, 7):
        spans += normalizer.traces(decode_traces(body, "protobuf"), "default", limits, RedactionCounts(), body).spans
    plans = assemble(spans, StoredState()).executions
    assert len(plans) > 500
    # vary the metadata the merge keeps: the latest non-empty description, version and service
    for index, plan in enumerate(plans):
        plan.record.agent_description = f"d{index}" if index % 3 == 0 else None
        plan.record.agent_version = f"v{index}" if index % 5 == 0 else None
        plan.record.service_name = f"s{index}" if index % 7 == 0 else None
    expected = sorted(_merge_agents([rows.agent_row(plan) for plan in plans]))
    assert sorted(rows.agent_rows(plans)) == expected
    assert len(expected) == len({(p.record.tenant_id, p.agent_id) for p in plans})
