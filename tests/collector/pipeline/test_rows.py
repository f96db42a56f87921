"""Row building: the compiled timestamp conversions against the Python ones they replace (``rows.ts``
for every row, ``store.sqlite_ts`` for SQLite's timestamp text)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent_otel.collector.pipeline import rows
from agent_otel.collector.pipeline.normalize import COMPILED_SCAN
from agent_otel.collector.storage import store

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
    assert store.sqlite_ts is not store._sqlite_ts or not COMPILED_SCAN


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


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 7, 1, 2, 3, 456, tzinfo=UTC),
        datetime(2026, 12, 7, 1, 2, 3),  # naive: taken as UTC already
        datetime(2026, 12, 7, 1, 2, 3, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 12, 7, 23, 0, tzinfo=timezone(timedelta(hours=-2))),  # the next day in UTC
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 2, 3, 4, 5, 6, 7),  # a three-digit year is zero-padded
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
)
def test_sqlite_text_is_the_same_as_the_python_form(value: datetime) -> None:
    assert store.sqlite_ts(value) == store._sqlite_ts(value)
    assert len(store.sqlite_ts(value)) == 26


def test_sqlite_text_of_random_times_is_the_same() -> None:
    rng = random.Random(11)
    zones = [UTC, None, timezone(timedelta(hours=9)), timezone(timedelta(hours=-7, minutes=-30))]
    for _ in range(50_000):
        value = rows.ts(rng.randrange(86_400 * 10**9, 253_402_214_400 * 10**9))
        value = value.replace(tzinfo=rng.choice(zones)) if rng.random() < 0.5 else value
        assert store.sqlite_ts(value) == store._sqlite_ts(value), value


def test_sqlite_text_refuses_what_is_not_a_datetime() -> None:
    with pytest.raises((TypeError, AttributeError)):
        store.sqlite_ts("2026-12-07")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):  # before year 1 once in UTC, in both
        store._sqlite_ts(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(OverflowError):
        store.sqlite_ts(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


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
