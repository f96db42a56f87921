"""Retention: delete rows older than each table's configured number of days.

- Raw tables (``agent_executions``, ``agent_steps``, ``agent_logs``): on PostgreSQL whole daily
  partitions are dropped (instant, no dead rows, no vacuum debt); the rows of the DEFAULT
  partition (days without their own partition) are deleted with one statement. On SQLite rows
  are deleted in batches of ``retention.batch_rows``, each batch its own short transaction, so
  the collector's writer is never blocked for long.
- Rollups (``agent_metrics`` and ``agent_metric_users`` per period, ``usage_daily``) are
  deleted by period start (in batches on SQLite).
- A cutoff is a UTC midnight: rows of day D go when ``D < today - days``. ``0`` days keeps forever.

Two collectors on one PostgreSQL do not run it at the same time (an advisory lock; the second
one skips). ``agent-otel retention run`` runs it on demand; ``serve`` every
``retention.interval_minutes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy import Engine, text

from agent_otel.collector.storage.partitions import drop_partitions_before
from agent_otel.collector.storage.store import sqlite_ts
from agent_otel.settings import RetentionSettings

log = logging.getLogger(__name__)

_LOCK_ID: Final = 0x726574656E74  # "retent": one retention run at a time per database
RAW: Final = (("agent_executions", "started_at", "executions_days"), ("agent_steps", "started_at", "steps_days"))
RAW_LOGS: Final = ("agent_logs", '"timestamp"', "logs_days")
ROLLUP_PERIODS: Final = (
    ("hour", "hourly_rollups_days"),
    ("day", "daily_rollups_days"),
    ("week", "weekly_rollups_days"),
    ("month", "monthly_rollups_days"),
)


@dataclass
class RetentionReport:
    """What one run removed: rows per table (and per period for rollups), partitions dropped."""

    cutoffs: dict[str, date] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    dropped_partitions: list[str] = field(default_factory=list)
    skipped: bool = False

    def add(self, name: str, count: int) -> None:
        if count:
            self.deleted[name] = self.deleted.get(name, 0) + count

    def summary(self) -> str:
        if self.skipped:
            return "retention: another collector is applying retention; skipped"
        parts = [f"{name}={count}" for name, count in sorted(self.deleted.items())]
        if self.dropped_partitions:
            parts.append(f"partitions dropped={len(self.dropped_partitions)}")
        return "retention: " + (", ".join(parts) if parts else "nothing to delete")


def cutoff(days: int, today: date) -> date | None:
    """The first day kept, or None when the table is kept forever."""
    return None if days <= 0 else today - timedelta(days=days)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def apply_retention(engine: Engine, retention: RetentionSettings, today: date | None = None) -> RetentionReport:
    """Delete what is past retention; safe to run while collectors write."""
    today = today or datetime.now(UTC).date()
    report = RetentionReport()
    is_pg = engine.dialect.name == "postgresql"
    with engine.connect() as lock_conn:
        if is_pg:
            got = lock_conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": _LOCK_ID}).scalar_one()
            lock_conn.commit()
            if not got:
                report.skipped = True
                return report
        try:
            for table, column, setting in (*RAW, RAW_LOGS):
                first_kept = cutoff(getattr(retention, setting), today)
                if first_kept is None:
                    continue
                report.cutoffs[table] = first_kept
                if is_pg:
                    dropped = drop_partitions_before(engine, table, first_kept)
                    report.dropped_partitions += dropped
                    report.add(f"{table} partitions", len(dropped))
                    report.add(table, _delete_batches(engine, f"{table}_default", column, first_kept, retention))
                else:
                    report.add(table, _delete_batches(engine, table, column, first_kept, retention))
            for period, setting in ROLLUP_PERIODS:
                first_kept = cutoff(getattr(retention, setting), today)
                if first_kept is None:
                    continue
                report.cutoffs[f"agent_metrics/{period}"] = first_kept
                for table in ("agent_metric_users", "agent_metrics"):
                    count = _delete_batches(engine, table, "period_start", first_kept, retention, period)
                    report.add(f"{table}/{period}", count)
            first_kept = cutoff(retention.usage_daily_days, today)
            if first_kept is not None:
                report.cutoffs["usage_daily"] = first_kept
                report.add("usage_daily", _delete_batches(engine, "usage_daily", '"date"', first_kept, retention))
        finally:
            if is_pg:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                lock_conn.commit()
    if report.deleted:
        log.info(report.summary())
    return report


def _delete_batches(
    engine: Engine, table: str, column: str, first_kept: date, retention: RetentionSettings, period: str | None = None
) -> int:
    """Delete rows with ``column < first_kept``; return how many.

    PostgreSQL: one statement (MVCC: readers and the writer, which touches recent rows, do not
    wait for it). SQLite: batches of ``batch_rows``, each its own transaction, because a
    transaction there holds the one write lock that the collector's writer needs.
    """
    is_pg = engine.dialect.name == "postgresql"
    if column == '"date"':
        bound: object = first_kept if is_pg else first_kept.isoformat()
    else:
        bound = _midnight(first_kept) if is_pg else sqlite_ts(_midnight(first_kept))
    where = f"{column} < :bound" + (" AND period = :period" if period else "")
    params: dict[str, object] = {"bound": bound, "batch": retention.batch_rows}
    if period:
        params["period"] = period
    if is_pg:
        with engine.begin() as conn:
            return int(conn.execute(text(f"DELETE FROM {table} WHERE {where}"), params).rowcount)
    sql = text(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT :batch)")
    total = 0
    while True:
        with engine.begin() as conn:
            deleted = int(conn.execute(sql, params).rowcount)
        total += deleted
        if deleted < retention.batch_rows:
            return total
