"""Retention: old raw rows go (whole partitions on PostgreSQL, bounded batches on SQLite),
rollups are kept longer and deleted by period start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, text

from agent_otel.collector.storage.partitions import ensure_partitions, existing_partitions
from agent_otel.collector.storage.retention import apply_retention
from agent_otel.collector.storage.store import sqlite_ts
from agent_otel.settings import RetentionSettings
from tests.analytics.conftest import post_traces
from tests.analytics.traffic import demo_requests
from tests.conftest import RunningCollector, wait_for_rollups

POLICY = RetentionSettings(
    executions_days=30,
    steps_days=30,
    logs_days=14,
    hourly_rollups_days=20,
    daily_rollups_days=40,
    usage_daily_days=35,
    batch_rows=7,
)


def _bound(engine: Engine, days: int) -> Any:
    moment = datetime.combine(datetime.now(UTC).date() - timedelta(days=days), time(), tzinfo=UTC)
    return sqlite_ts(moment) if engine.dialect.name == "sqlite" else moment


def count(engine: Engine, sql: str, days: int | None = None) -> int:
    params = {"bound": _bound(engine, days)} if days is not None else {}
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_retention_removes_what_is_past_each_tables_horizon(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(db_url)
    engine = running.collector.jobs_engine
    is_pg = engine.dialect.name == "postgresql"
    today = datetime.now(UTC).date()
    if is_pg:  # daily partitions for part of the old data, the rest lands in the DEFAULT partition
        ensure_partitions(engine, 3, today=today - timedelta(days=44))
    post_traces(running.http_endpoint, demo_requests(90, seed=5, hours=24 * 45))
    wait_for_rollups(engine)

    old_executions = count(engine, "SELECT count(*) FROM agent_executions WHERE started_at < :bound", 30)
    kept_executions = count(engine, "SELECT count(*) FROM agent_executions WHERE started_at >= :bound", 30)
    old_hours = count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'hour' AND period_start < :bound", 20)
    old_days = count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'day' AND period_start < :bound", 40)
    days_kept_longer = (
        count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'day' AND period_start < :bound", 30)
        - old_days
    )
    months = count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'month'")
    assert old_executions > 0 and kept_executions > 0 and old_hours > 0 and days_kept_longer > 0

    report = apply_retention(engine, POLICY)

    assert count(engine, "SELECT count(*) FROM agent_executions WHERE started_at < :bound", 30) == 0
    assert count(engine, "SELECT count(*) FROM agent_steps WHERE started_at < :bound", 30) == 0
    assert count(engine, 'SELECT count(*) FROM agent_logs WHERE "timestamp" < :bound', 14) == 0
    assert count(engine, "SELECT count(*) FROM agent_executions") == kept_executions
    assert count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'hour' AND period_start < :bound", 20) == 0
    assert (
        count(engine, "SELECT count(*) FROM agent_metric_users WHERE period = 'hour' AND period_start < :bound", 20)
        == 0
    )
    assert count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'day' AND period_start < :bound", 40) == 0
    # rollups outlive raw rows: the days between 40 and 30 days ago keep their day rows
    assert count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'day' AND period_start < :bound", 30) == (
        days_kept_longer
    )
    assert count(engine, "SELECT count(*) FROM agent_metrics WHERE period = 'month'") == months  # kept forever
    cutoff = (today - timedelta(days=35)).isoformat()
    with engine.connect() as conn:
        assert conn.execute(text('SELECT count(*) FROM usage_daily WHERE "date" < :d'), {"d": cutoff}).scalar() == 0
    assert report.deleted["agent_metrics/hour"] == old_hours
    assert report.deleted["agent_metrics/day"] == old_days
    if is_pg:
        assert report.dropped_partitions, "old daily partitions were not dropped"
        with engine.connect() as conn:
            remaining = existing_partitions(conn)
        assert all(day >= today - timedelta(days=30) for days in remaining.values() for day in days)
    else:
        assert report.deleted["agent_executions"] == old_executions  # in batches of 7

    again = apply_retention(engine, POLICY)
    assert again.deleted == {} and again.summary() == "retention: nothing to delete"


def test_serve_schedules_retention_and_the_cli_runs_it(running_collector: RunningCollector) -> None:
    jobs = {name: every for every, _job, name in running_collector.collector.background_jobs()}
    assert jobs["retention"] == running_collector.settings.retention.interval_minutes * 60
    assert jobs["rollup statistics"] == 15.0
    result = subprocess.run(
        [sys.executable, "-m", "agent_otel", "retention", "run", "--db", running_collector.settings.db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "agent_executions: keeping rows from" in result.stdout
    assert result.stdout.rstrip().endswith("retention: nothing to delete")
