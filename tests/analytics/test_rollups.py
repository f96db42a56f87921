"""Rollups kept by the hook on a real collector equal a recomputation from the raw rows, on
SQLite and PostgreSQL, with retried requests, late steps and out-of-order feedback."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, text

from agent_otel.collector.analytics.hook import RollupHook, nested_retention
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.transaction import write_group
from agent_otel.settings import RetentionSettings
from tests.analytics.conftest import post_traces, with_retries
from tests.analytics.helpers import assert_rollups_match_raw, metric_row, read_rollups
from tests.collector.storage.test_write_group import batch_of
from tests.conftest import RunningCollector
from tests.otlp_helpers import agent_trace, finished_spans, sdk_provider


def scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_rollups_equal_recomputation_despite_retries(running_collector: RunningCollector, traffic: list[bytes]) -> None:
    post_traces(running_collector.http_endpoint, with_retries(traffic))
    engine = running_collector.engine
    rollups = assert_rollups_match_raw(engine)

    executions = scalar(engine, "SELECT count(*) FROM agent_executions")
    assert executions >= 120  # the demo's executions plus its sub-agent runs
    for period in ("day", "week", "month"):
        counted = sum(v[2] for k, v in rollups.agent_metrics.items() if k[2] == period)
        assert counted == executions, f"{period} rollups count {counted} executions, raw rows {executions}"
    assert sum(v[1] for v in rollups.agents.values()) == executions
    users = scalar(engine, "SELECT count(DISTINCT user_id) FROM agent_executions WHERE agent_id = 'support-bot'")
    assert metric_row(rollups, "support-bot", "month")["unique_users"] == users
    assert scalar(engine, "SELECT count(*) FROM agent_feedback") > 0
    assert any(v[5] is not None for v in rollups.user_agent_interactions.values()), "no rating reached interactions"


def test_unpriced_calls_are_counted_not_priced_at_zero(
    running_collector: RunningCollector, traffic: list[bytes]
) -> None:
    post_traces(running_collector.http_endpoint, with_retries(traffic))
    engine = running_collector.engine
    unpriced = scalar(
        engine,
        "SELECT count(*) FROM agent_steps WHERE kind = 'llm' AND cost_usd IS NULL AND model = 'llama-3.1-70b-local'",
    )
    assert unpriced > 0
    assert scalar(engine, "SELECT count(*) FROM agent_steps WHERE cost_usd = 0 AND kind = 'llm'") == 0
    exposition = httpx.get(f"{running_collector.api}/metrics").text
    assert f'agent_otel_unpriced_llm_calls_total{{model="llama-3.1-70b-local"}} {float(unpriced)}' in exposition
    month = read_rollups(engine)
    assert metric_row(month, "travel-planner", "month")["unpriced_llm_calls"] == unpriced


def _write(engine: Engine, spans: list[Any]) -> None:
    with engine.begin() as conn:
        write_group(conn, [batch_of(spans)], [RollupHook()])


def test_late_steps_move_tokens_cost_and_model(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(3)
    late = [s for s in spans if s.name.startswith("chat")][::2]  # one LLM step of each trace arrives late
    early = [s for s in spans if s not in late]
    _write(engine, early)
    first = metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")
    _write(engine, late)
    _write(engine, late)  # retried: adds nothing
    after = metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")
    assert after["input_tokens"] == 3 * 2500 and after["llm_calls"] == 6
    assert after["input_tokens"] > first["input_tokens"] and after["cost_usd"] > first["cost_usd"]
    assert after["total_executions"] == first["total_executions"] == 3


def _feedback_spans(events: list[tuple[int, dict[str, Any]]]) -> list[list[Any]]:
    """One feedback span per event (as ``agent_otel.plugin.api.feedback`` emits outside a run)."""
    groups = []
    for at_ns, attributes in events:
        memory = InMemorySpanExporter()
        with sdk_provider(memory) as tracer:
            span = tracer.start_span(
                "agent_otel.feedback",
                start_time=at_ns,
                attributes={"gen_ai.agent.name": "support-bot", "gen_ai.agent.id": "support-bot-id", "user.id": "u9"},
            )
            span.add_event("agent_otel.feedback", attributes, timestamp=at_ns)
            span.end(end_time=at_ns + 1000)
        groups.append(list(memory.get_finished_spans()))
    return groups


def test_latest_feedback_wins_whatever_the_arrival_order(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _write(engine, _runs_of("u9"))
    now = time.time_ns()
    older, newer, favorite = _feedback_spans(
        [
            (now - 3_600 * 10**9, {"agent_otel.feedback.rating": 5, "agent_otel.feedback.comment": "first"}),
            (now - 60 * 10**9, {"agent_otel.feedback.rating": 2}),
            (now - 30 * 10**9, {"agent_otel.feedback.favorite": True}),
        ]
    )
    for group in (newer, favorite, older):  # the older rating arrives last
        _write(engine, group)
    rollups = assert_rollups_match_raw(engine)
    interaction = rollups.user_agent_interactions[("default", "u9", "support-bot-id")]
    assert interaction[4:7] == (True, 2, "first")  # favorite, latest rating, latest comment
    assert rollups.agents[("default", "support-bot-id")][3:] == (1, 2, 2.0)  # one rating: 2
    usage_ratings = sum(v[13] for k, v in rollups.usage_daily.items() if k[1] == "u9")
    assert usage_ratings == 2  # satisfaction counts every rating given


def _runs_of(user: str) -> list[Any]:
    memory = InMemorySpanExporter()
    with sdk_provider(memory) as tracer:
        agent_trace(tracer, user=user)
    return list(memory.get_finished_spans())


def test_retention_keeps_coarser_rollups_at_least_as_long() -> None:
    assert nested_retention(RetentionSettings())
    assert not nested_retention(RetentionSettings(hourly_rollups_days=0, daily_rollups_days=30))
    assert not nested_retention(RetentionSettings(daily_rollups_days=400, monthly_rollups_days=100))


def test_hook_stage_timings_are_recorded(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    hook = RollupHook()
    with engine.begin() as conn:
        write_group(conn, [batch_of(finished_spans(5))], [hook])
    assert hook.timings.calls == 1
    assert set(hook.timings.seconds) >= {"aggregate", "users", "agent_metrics", "interactions", "usage_daily"}


def test_rollup_tables_are_analyzed_once_they_grew(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    from agent_otel.collector.analytics.maintenance import refresh_statistics

    engine = engine_for(pg_url)
    migrate.upgrade(engine)

    def flushed(statement: str) -> None:
        """Run ``statement``, then make its row counts visible to ``pg_stat_user_tables``."""
        with engine.begin() as conn:
            conn.execute(text(statement))
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))

    flushed(
        "INSERT INTO agent_metric_users SELECT 'default', 'a', 'hour', now(), 'u' || g FROM generate_series(1, 1500) g"
    )
    assert "agent_metric_users" in refresh_statistics(engine)
    assert refresh_statistics(engine) == []
    with engine.connect() as conn:
        analyzed = conn.execute(
            text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'agent_metric_users'")
        ).scalar_one()
    assert analyzed

    # rows rewritten in place (what every applier round does) leave the statistics as they are
    flushed("UPDATE agent_metric_users SET period_start = period_start + interval '1 hour'")
    flushed("UPDATE agent_metric_users SET period_start = period_start - interval '1 hour'")
    assert refresh_statistics(engine) == []
    # growth by less than a tenth of the rows the last ANALYZE saw does not either; past it, it does
    flushed(
        "INSERT INTO agent_metric_users SELECT 'default', 'a', 'day', now(), 'u' || g FROM generate_series(1, 100) g"
    )
    assert refresh_statistics(engine) == []
    flushed(
        "INSERT INTO agent_metric_users SELECT 'default', 'a', 'week', now(), 'u' || g FROM generate_series(1, 100) g"
    )
    assert refresh_statistics(engine) == ["agent_metric_users"]


def test_hook_works_after_a_rolled_back_savepoint(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """The writer isolates a bad span in savepoints: rollup temp tables created inside a savepoint
    that rolls back must not be assumed to exist afterwards."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    hook = RollupHook()
    with engine.begin() as conn:
        savepoint = conn.begin_nested()
        write_group(conn, [batch_of(finished_spans(2))], [hook])
        savepoint.rollback()
        write_group(conn, [batch_of(finished_spans(3))], [hook])
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 3


def test_rollups_are_utc_whatever_the_sessions_time_zone(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    """Timestamps read back from PostgreSQL come in the session's zone (here +05:30): periods,
    days and per-day figures must still be UTC."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} SET timezone TO 'Asia/Kolkata'")
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    spans = finished_spans(3)
    late = [s for s in spans if s.name.startswith("chat")][::2]
    _write(engine, [s for s in spans if s not in late])
    _write(engine, late)  # late steps: the change is computed from rows read back in +05:30
    with engine.connect() as conn:
        assert conn.execute(text("SHOW timezone")).scalar_one() == "Asia/Kolkata"
    rollups = assert_rollups_match_raw(engine)
    assert all(k[3].minute == 0 and k[3].utcoffset() == timedelta(0) for k in rollups.agent_metrics)
