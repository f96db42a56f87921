"""Rollup periods (UTC, weeks from Monday) and the tiling of ranges into whole periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_otel.collector.analytics.periods import HOUR, ceil, floor, next_start, starts_of, tile

T = datetime(2026, 3, 4, 15, 42, 7, 123, tzinfo=UTC)  # a Wednesday


def test_floor_of_each_period() -> None:
    assert floor("hour", T) == datetime(2026, 3, 4, 15, tzinfo=UTC)
    assert floor("day", T) == datetime(2026, 3, 4, tzinfo=UTC)
    assert floor("week", T) == datetime(2026, 3, 2, tzinfo=UTC)  # Monday
    assert floor("month", T) == datetime(2026, 3, 1, tzinfo=UTC)
    assert starts_of(T) == tuple(floor(p, T) for p in ("hour", "day", "week", "month"))


def test_naive_and_other_zones_are_utc() -> None:
    from datetime import timezone

    assert floor("day", datetime(2026, 3, 4, 1, 0)) == datetime(2026, 3, 4, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert floor("day", datetime(2026, 3, 4, 1, 0, tzinfo=plus_two)) == datetime(2026, 3, 3, tzinfo=UTC)


def test_next_start_crosses_years_and_month_lengths() -> None:
    assert next_start("month", datetime(2025, 12, 1, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_start("month", datetime(2026, 2, 1, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert next_start("week", datetime(2026, 3, 2, tzinfo=UTC)) == datetime(2026, 3, 9, tzinfo=UTC)
    assert ceil("day", datetime(2026, 3, 4, tzinfo=UTC)) == datetime(2026, 3, 4, tzinfo=UTC)
    assert ceil("day", T) == datetime(2026, 3, 5, tzinfo=UTC)


def test_thirty_aligned_days_are_read_as_days_and_months() -> None:
    tiles = tile(datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    periods = [p for p, _ in tiles]
    assert ("month", datetime(2026, 2, 1, tzinfo=UTC)) in tiles
    assert "hour" not in periods
    assert len(tiles) < 20  # weeks and a month instead of 49 days


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.integers(min_value=1, max_value=120 * 24),
)
@settings(max_examples=300, deadline=None)
def test_tiles_partition_the_hour_rounded_range(start: datetime, hours: int) -> None:
    since = start.replace(tzinfo=UTC)
    until = since + timedelta(hours=hours, minutes=7)
    tiles = tile(since, until)
    cursor = floor("hour", since)
    for period, tile_start in sorted(tiles, key=lambda t: t[1]):
        assert tile_start == cursor, "gap or overlap"
        assert floor(period, tile_start) == tile_start
        cursor = next_start(period, tile_start)
    assert cursor == ceil("hour", until)
    assert all(next_start(p, s) - s >= HOUR for p, s in tiles)
