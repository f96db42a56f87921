"""Rollup periods: hour, day, week (starting Monday) and month, all in UTC.

Pure calendar arithmetic shared by the rollup hook, the rebuild, retention and the API (which
tiles a time range with the coarsest whole periods that fit, so a 30-day question reads 30 day
rows rather than 720 hour rows).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

Period = Literal["hour", "day", "week", "month"]
PERIODS: Final[tuple[Period, ...]] = ("hour", "day", "week", "month")
HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)

_STARTS_CACHE: dict[datetime, tuple[datetime, datetime, datetime, datetime]] = {}


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor(period: Period, value: datetime) -> datetime:
    """The start of the period that contains ``value``."""
    value = utc(value)
    if period == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}")


def next_start(period: Period, start: datetime) -> datetime:
    """The start of the period after the one starting at ``start``."""
    if period == "hour":
        return start + HOUR
    if period == "day":
        return start + DAY
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return (
            start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        )
    raise ValueError(f"unknown period {period!r}")


def ceil(period: Period, value: datetime) -> datetime:
    """The first period start at or after ``value``."""
    start = floor(period, value)
    return start if start == utc(value) else next_start(period, start)


def starts_of(value: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(hour, day, week, month) starts of an aware datetime (in UTC); cached per hour."""
    if value.tzinfo is not UTC:
        value = utc(value)
    hour = value.replace(minute=0, second=0, microsecond=0)
    cached = _STARTS_CACHE.get(hour)
    if cached is None:
        day = hour.replace(hour=0)
        cached = (hour, day, day - timedelta(days=day.weekday()), day.replace(day=1))
        if len(_STARTS_CACHE) > 200_000:
            _STARTS_CACHE.clear()
        _STARTS_CACHE[hour] = cached
    return cached


def row_date_hour(period: Period, start: datetime) -> tuple[date, int | None]:
    """The ``date`` and ``hour`` columns of an ``agent_metrics`` row (seed 000's layout)."""
    return start.date(), (start.hour if period == "hour" else None)


def tile(since: datetime, until: datetime) -> list[tuple[Period, datetime]]:
    """Cover [since, until) with whole periods, coarsest first where they fit.

    ``since`` and ``until`` are rounded outwards to hours. Months and weeks are used only where
    they lie entirely inside the range; days fill between them, hours at the edges.
    """
    low, high = floor("hour", since), ceil("hour", until)
    return _tile(low, high, ("month", "week", "day", "hour"))


def _tile(low: datetime, high: datetime, periods: tuple[Period, ...]) -> list[tuple[Period, datetime]]:
    if low >= high:
        return []
    period, rest = periods[0], periods[1:]
    if not rest:  # hours: the range is hour-aligned
        out: list[tuple[Period, datetime]] = []
        cursor = low
        while cursor < high:
            out.append(("hour", cursor))
            cursor += HOUR
        return out
    first = ceil(period, low)
    tiles: list[tuple[Period, datetime]] = []
    cursor = first
    while next_start(period, cursor) <= high:
        tiles.append((period, cursor))
        cursor = next_start(period, cursor)
    if not tiles:
        return _tile(low, high, rest)
    return _tile(low, first, rest) + tiles + _tile(cursor, high, rest)
