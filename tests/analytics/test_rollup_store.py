"""The rollup store's fast paths (issue 7) keep every rollup exact, on SQLite and PostgreSQL.

- ``usage_daily`` on PostgreSQL is one additive upsert whose JSON maps are merged in SQL: it
  must give, value for value, the row the Python merge (``merge_usage_row``) gives, including
  late-step changes that move an execution to another model and empty a map entry.
- Unique users are inserted without ``ON CONFLICT`` (the pair locks make it safe); a row written
  outside the hook must not break a transaction nor be counted twice.
- Key look-ups are index probes whatever the planner statistics say, and rollup updates are HOT
  updates (no index writes): the shape of the indexes is what makes both true.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, text

from agent_otel.collector.analytics.aggregate import ExecutionFacts, aggregate, recompute
from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.state import USAGE_KEY_COLUMNS, USAGE_VALUE_COLUMNS, UsageState, merge_usage_row
from agent_otel.collector.analytics.store import USER_COLUMNS, PostgresRollupStore, rollup_store_for
from agent_otel.collector.pipeline.assemble import Totals
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.store import sqlite_ts
from agent_otel.collector.storage.transaction import ExecutionDelta, write_group
from tests.analytics.helpers import assert_rollups_match_raw, metric_row, read_raw, read_rollups
from tests.collector.storage.test_write_group import batch_of
from tests.otlp_helpers import agent_trace, finished_spans, sdk_provider

DAY = datetime(2026, 3, 2, 9, tzinfo=UTC)
MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1"), (None, None)]


def _execution(rng: random.Random, i: int, user: str) -> ExecutionFacts:
    provider, model = rng.choice(MODELS)
    cost = rng.choice([None, 0.0, 1e-09, 0.000123456, 0.0131, rng.randrange(1, 10**7) / 1e9])
    return ExecutionFacts(
        "default",
        f"e{i}",
        rng.choice(["support-bot", "travel-planner", "coder"]),
        user,
        rng.choice(["success", "success", "failed"]),
        rng.randrange(0, 20_000),
        rng.choice([0.0, 1.0, 2.5, 0.000001]),
        DAY + timedelta(minutes=rng.randrange(0, 600)),
        model,
        provider,
        rng.randrange(0, 5000),
        rng.randrange(0, 900),
        cost,
        0,
        rng.randrange(0, 3),
        rng.randrange(0, 3),
        None,
        None,
        rng.choice([None, "search", "support"]),
    )


def _moved(rng: random.Random, e: ExecutionFacts) -> ExecutionDelta:
    """Late steps moving an execution to another model (or back to none): subtracts its usage."""
    provider, model = rng.choice(MODELS)
    before = Totals(e.input_tokens, e.output_tokens, e.cost_usd, 0, 1, 0, e.model, e.provider)
    cost = rng.choice([None, 0.002])
    after = Totals(e.input_tokens + rng.randrange(0, 50), e.output_tokens, cost, 0, 2, 0, model, provider)
    return ExecutionDelta("default", e.execution_id, e.agent_id, e.user_id, e.started_at, before, after)


def _usage_rows(engine: Engine) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return read_rollups(engine).usage_daily  # type: ignore[return-value]


def test_usage_merged_by_the_database_equals_the_python_merge(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    rng = random.Random(11)
    users = [f"u{i}" for i in range(6)]
    expected: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    executions: list[ExecutionFacts] = []
    for group in range(8):
        new = [_execution(rng, group * 100 + i, rng.choice(users)) for i in range(rng.randrange(1, 15))]
        moved = [_moved(rng, e) for e in rng.sample(executions, min(len(executions), 4))]
        executions += new
        deltas: dict[Any, UsageState] = aggregate(new, moved, interactions=False).usage
        with engine.begin() as conn:
            rollup_store_for(conn).merge_usage(deltas)
        for key, d in deltas.items():
            expected[key] = merge_usage_row(expected.get(key, (None,) * len(USAGE_VALUE_COLUMNS)), d)
    stored = _usage_rows(engine)
    assert stored == expected
    models = [m for v in stored.values() for m in (v[12] or {})]
    assert models and all(isinstance(v[12], dict) for v in stored.values())


def test_usage_entries_that_reach_zero_are_removed(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    rng = random.Random(5)
    e = _execution(rng, 1, "u1")._replace(model="gpt-4.1", provider="openai", cost_usd=0.01316, input_tokens=10)
    gone = ExecutionDelta(
        "default",
        e.execution_id,
        e.agent_id,
        e.user_id,
        e.started_at,
        Totals(10, e.output_tokens, 0.01316, 0, 1, 0, "gpt-4.1", "openai"),
        Totals(10, e.output_tokens, 0.01316, 0, 1, 0, "claude-sonnet-4-5", "anthropic"),
    )
    for changes in ([e], []), ([], [gone]):
        with engine.begin() as conn:
            rollup_store_for(conn).merge_usage(aggregate(*changes, interactions=False).usage)
    (row,) = _usage_rows(engine).values()
    vendor_usage, model_usage = row[11], row[12]
    assert set(model_usage) == {"claude-sonnet-4-5"} and set(vendor_usage) == {"anthropic"}
    assert model_usage["claude-sonnet-4-5"]["cost_usd"] == 0.01316
    assert row[7] == 0.01316 and row[0] == 1


def test_a_user_row_written_outside_the_hook_is_neither_an_error_nor_counted_twice(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(1)  # user-0's first execution: every (period, user) row is new
    started = min(datetime.fromtimestamp(s.start_time / 1e9, UTC) for s in spans)  # type: ignore[operator]
    day = started.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:  # a day row the hook does not know about (by hand, a restore...)
        value = sqlite_ts(day) if engine.dialect.name == "sqlite" else day
        conn.execute(
            text(f"INSERT INTO agent_metric_users ({', '.join(USER_COLUMNS)}) VALUES (:t, :a, 'day', :s, :u)"),
            {"t": "default", "a": "support-bot-id", "s": value, "u": "user-0"},
        )
    with engine.begin() as conn:
        write_group(conn, [batch_of(spans)], [RollupHook()])
    rows = read_rollups(engine)
    assert len(rows.agent_metric_users) == 4  # hour, day (the stray one), week, month: no duplicate
    assert rows.agent_metric_users == recompute(*read_raw(engine)).agent_metric_users
    assert metric_row(rows, "support-bot-id", "hour")["unique_users"] == 1
    assert metric_row(rows, "support-bot-id", "week")["unique_users"] == 1
    assert metric_row(rows, "support-bot-id", "day")["unique_users"] == 0  # counted by whoever wrote it


def _traces(users: list[str], per_user: int) -> list[Any]:
    memory = InMemorySpanExporter()
    with sdk_provider(memory) as tracer:
        for user in users:
            for _ in range(per_user):
                agent_trace(tracer, user=user)
    return list(memory.get_finished_spans())


def test_pairs_with_one_and_with_several_executions(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """The interactions upsert has a shortcut for a pair's single execution in a transaction."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    hook = RollupHook()
    for spans in (_traces(["once", "thrice"], 1), _traces(["thrice"], 2) + _traces(["new"], 1)):
        with engine.begin() as conn:
            write_group(conn, [batch_of(spans)], [hook])
    rows = assert_rollups_match_raw(engine)
    thrice = rows.user_agent_interactions[("default", "thrice", "support-bot-id")]
    assert thrice[0] == 3 and sum(thrice[10]) == 3 and thrice[7] == 3.0


def test_lookups_are_index_probes_whatever_the_statistics(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:  # grown since the last ANALYZE (never, here): no statistics at all
        conn.execute(
            text(
                "INSERT INTO agent_metric_users SELECT 'default', 'a' || (g % 30), 'hour', now(), 'u' || g"
                " FROM generate_series(1, 30000) g"
            )
        )
        conn.execute(
            text(
                'INSERT INTO usage_daily (tenant_id, user_id, "date")'
                " SELECT 'default', 'u' || g, current_date - g % 20 FROM generate_series(1, 20000) g"
            )
        )
    lookups = {
        "agent_metric_users": PostgresRollupStore._lookup_sql("agent_metric_users", USER_COLUMNS, "", missing=True),
        "usage_daily": PostgresRollupStore._lookup_sql("usage_daily", USAGE_KEY_COLUMNS, "m.agent_usage", lock=True),
    }
    keys = {
        "agent_metric_users": [["default"] * 2, ["a1", "a2"], ["hour"] * 2, [DAY, DAY], ["u1", "u2"]],
        "usage_daily": [["default"] * 2, ["u1", "u2"], [DAY.date(), DAY.date()]],
    }
    for analyzed in (False, True):
        with engine.begin() as conn:
            if analyzed:
                conn.exec_driver_sql("ANALYZE agent_metric_users, usage_daily")
            raw: Any = conn.connection.driver_connection
            for table, sql in lookups.items():
                with raw.cursor() as cur:
                    plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql, keys[table]).fetchall())
                assert f"Seq Scan on {table}" not in plan and "Hash" not in plan, plan
                assert "Index" in plan and "Nested Loop" in plan, plan


def test_rollup_updates_are_hot_updates(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    """Secondary indexes hold no column an update changes, and pages keep room (fill factor):
    PostgreSQL then updates rollup rows in place, without writing any index. Each transaction
    touches some of the users, as under load."""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    hook = RollupHook()
    users = [f"user-{i}" for i in range(40)]
    for some in (users, *(users[i::5] for i in range(5))):
        with engine.begin() as conn:
            write_group(conn, [batch_of(_traces(some, 1))], [hook])
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
    with engine.connect() as conn:
        stats = {
            name: (int(updated), int(hot))
            for name, updated, hot in conn.execute(
                text(
                    "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                    " WHERE relname IN ('user_agent_interactions', 'usage_daily')"
                )
            )
        }
    for table in ("user_agent_interactions", "usage_daily"):
        updated, hot = stats[table]
        assert updated >= 40, (table, updated)
        assert hot == updated, f"{table}: {updated - hot} of {updated} updates wrote its indexes"
