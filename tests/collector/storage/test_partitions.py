"""PostgreSQL daily partitions: created ahead, rows routed by day, DEFAULT rows moved on creation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text

from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.partitions import (
    drop_partitions_before,
    ensure_partitions,
    existing_partitions,
)


def _insert_execution(engine: Engine, execution_id: str, started: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agent_executions (execution_id, agent_id, status, duration, started_at, trace_id, span_id)"
                " VALUES (:e, 'bot', 'success', 5, :s, 't', 's')"
            ),
            {"e": execution_id, "s": started},
        )


def _partition_of(engine: Engine, execution_id: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT tableoid::regclass::text FROM agent_executions WHERE execution_id = :e"),
                {"e": execution_id},
            ).scalar_one()
        )


def test_partitions_route_move_and_drop(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    today = date(2026, 11, 24)
    # a row for a day that has no partition yet lands in DEFAULT
    later = datetime(2026, 11, 28, 12, tzinfo=UTC)
    _insert_execution(engine, "early-bird", later)
    assert _partition_of(engine, "early-bird") == "agent_executions_default"

    created = ensure_partitions(engine, days_ahead=4, today=today)
    assert created == 3 * 6  # yesterday .. today+4, three tables
    with engine.connect() as conn:
        days = existing_partitions(conn)["agent_executions"]
    assert days == {today + timedelta(days=d) for d in range(-1, 5)}
    # the stranded row moved into its day's partition, and new rows route there too
    assert _partition_of(engine, "early-bird") == "agent_executions_p20261128"
    _insert_execution(engine, "on-time", datetime(2026, 11, 24, 9, tzinfo=UTC))
    assert _partition_of(engine, "on-time") == "agent_executions_p20261124"
    assert ensure_partitions(engine, days_ahead=4, today=today) == 0  # idempotent
    assert migrate.check(engine) == []  # partitions are not drift

    dropped = drop_partitions_before(engine, "agent_executions", today + timedelta(days=1))
    assert dropped == ["agent_executions_p20261123", "agent_executions_p20261124"]
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(text("SELECT execution_id FROM agent_executions"))}
    assert ids == {"early-bird"}
