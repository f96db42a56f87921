"""``agent-otel rollups rebuild``: the same rows as incremental updates, for everything or a range."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from agent_otel.collector.analytics.periods import floor
from agent_otel.collector.analytics.rebuild import RebuildRefused, rebuild
from agent_otel.collector.storage.store import sqlite_ts
from tests.analytics.conftest import post_traces, with_retries
from tests.analytics.helpers import assert_rollups_match_raw, diff_rollups, read_rollups
from tests.conftest import RunningCollector


def test_full_rebuild_gives_the_incremental_rows(running_collector: RunningCollector, traffic: list[bytes]) -> None:
    post_traces(running_collector.http_endpoint, with_retries(traffic))
    incremental = assert_rollups_match_raw(running_collector.engine)
    engine = running_collector.collector.jobs_engine  # writes, the rollups file attached (BEGIN IMMEDIATE)
    with engine.begin() as conn:  # damage every rollup table: the rebuild must restore it all
        conn.execute(text("UPDATE agent_metrics SET total_executions = total_executions + 5, p95_duration = 1"))
        conn.execute(text("DELETE FROM agent_metric_users WHERE period = 'day'"))
        conn.execute(text("UPDATE user_agent_interactions SET rating = NULL, total_executions = 0"))
        conn.execute(text("DELETE FROM usage_daily"))
        conn.execute(text("UPDATE agents SET total_executions = 0, avg_rating = NULL"))
    assert diff_rollups(read_rollups(running_collector.engine), incremental)
    report = rebuild(engine)
    assert report.executions == sum(v[2] for k, v in incremental.agent_metrics.items() if k[2] == "month")
    assert diff_rollups(read_rollups(running_collector.engine), incremental) == []


def test_range_rebuild_touches_only_whole_periods_inside(
    running_collector: RunningCollector, traffic: list[bytes]
) -> None:
    post_traces(running_collector.http_endpoint, traffic)
    incremental = assert_rollups_match_raw(running_collector.engine)
    engine = running_collector.collector.jobs_engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE agent_metrics SET total_executions = -1"))
    hours = sorted(k[3] for k in incremental.agent_metrics if k[2] == "hour")
    since, until = hours[1] + timedelta(minutes=30), hours[-1]  # starts mid-hour: that hour stays as it is
    report = rebuild(engine, since, until)
    assert report.rows["agent_metrics"] > 0
    stored = read_rollups(running_collector.engine)
    for key, values in stored.agent_metrics.items():
        period, start = key[2], key[3]
        inside = period == "hour" and since <= start and start + timedelta(hours=1) <= until
        if inside:
            assert values == incremental.agent_metrics[key]
        else:
            assert values[2] == -1, f"{key} lies outside the range but was rebuilt"


def test_rebuild_refuses_to_lose_rollups_whose_raw_rows_are_gone(
    running_collector: RunningCollector, traffic: list[bytes]
) -> None:
    post_traces(running_collector.http_endpoint, traffic)
    engine = running_collector.collector.jobs_engine
    with engine.begin() as conn:  # as if retention had removed the oldest day's raw rows
        old = datetime.now(UTC) - timedelta(days=40)
        conn.execute(
            text(
                "INSERT INTO agent_metrics (tenant_id, agent_id, period, period_start, date, total_executions)"
                " VALUES ('default', 'support-bot', 'day', :start, :day, 7)"
            ),
            {
                "start": sqlite_ts(floor("day", old)) if engine.dialect.name == "sqlite" else floor("day", old),
                "day": old.date(),
            },
        )
    with pytest.raises(RebuildRefused, match="retention"):
        rebuild(engine)
    with pytest.raises(RebuildRefused):
        rebuild(engine, since=old - timedelta(days=1))
    rebuild(engine, since=datetime.now(UTC) - timedelta(days=2))  # after the gap: allowed
    rebuild(engine, force=True)
    assert_rollups_match_raw(running_collector.engine)


def test_cli_rebuild_shows_progress(running_collector: RunningCollector, traffic: list[bytes]) -> None:
    post_traces(running_collector.http_endpoint, traffic[:4])
    result = subprocess.run(
        [sys.executable, "-m", "agent_otel", "rollups", "rebuild", "--db", running_collector.settings.db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilding rollups [" in result.stderr and "days" in result.stderr
    assert result.stdout.startswith("rollups rebuilt (everything)")
    assert_rollups_match_raw(running_collector.engine)

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_otel",
            "rollups",
            "rebuild",
            "--db",
            running_collector.settings.db_url,
            "--since",
            "yesterday",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "not an ISO 8601 date" in bad.stderr
