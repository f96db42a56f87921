"""Read rollup tables and raw rows back as plain Python values, and compare them.

``assert_rollups_match_raw`` is the exactness check of issue 4: every rollup row must equal what
``recompute`` derives from the raw rows alone, value for value.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select

from agent_otel.collector.analytics.aggregate import (
    EXECUTION_FACT_COLUMNS,
    FEEDBACK_FACT_COLUMNS,
    ExecutionFacts,
    FeedbackFacts,
    RollupRows,
    recompute,
)
from agent_otel.collector.analytics.periods import utc
from agent_otel.collector.analytics.state import (
    AGENT_VALUE_COLUMNS,
    INTERACTION_KEY_COLUMNS,
    INTERACTION_VALUE_COLUMNS,
    METRIC_KEY_COLUMNS,
    METRIC_VALUE_COLUMNS,
    USAGE_KEY_COLUMNS,
    USAGE_VALUE_COLUMNS,
)
from agent_otel.collector.storage import schema
from tests.conftest import wait_for_rollups


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value)
    return value


def _rows(engine: Engine, table: Any, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        result = conn.execute(select(*(table.c[c] for c in columns)))
        return [tuple(_norm(v) for v in row) for row in result]


def read_rollups(engine: Engine) -> RollupRows:
    wait_for_rollups(engine)
    out = RollupRows()
    width = len(METRIC_KEY_COLUMNS)
    for row in _rows(engine, schema.agent_metrics, METRIC_KEY_COLUMNS + METRIC_VALUE_COLUMNS):
        out.agent_metrics[row[:width]] = row[width:]  # type: ignore[index]
    out.agent_metric_users = set(
        _rows(engine, schema.agent_metric_users, ("tenant_id", "agent_id", "period", "period_start", "user_id"))  # type: ignore[arg-type]
    )
    width = len(INTERACTION_KEY_COLUMNS)
    for row in _rows(engine, schema.user_agent_interactions, INTERACTION_KEY_COLUMNS + INTERACTION_VALUE_COLUMNS):
        out.user_agent_interactions[row[:width]] = row[width:]  # type: ignore[index]
    width = len(USAGE_KEY_COLUMNS)
    for row in _rows(engine, schema.usage_daily, USAGE_KEY_COLUMNS + USAGE_VALUE_COLUMNS):
        out.usage_daily[row[:width]] = row[width:]  # type: ignore[index]
    for row in _rows(engine, schema.agents, ("tenant_id", "id", *AGENT_VALUE_COLUMNS)):
        if any(row[3:6]) or row[2] is not None:
            out.agents[row[:2]] = row[2:]  # type: ignore[index]
    return out


def read_raw(engine: Engine) -> tuple[list[ExecutionFacts], list[FeedbackFacts]]:
    executions = [ExecutionFacts(*r) for r in _rows(engine, schema.agent_executions, EXECUTION_FACT_COLUMNS)]
    feedback = [FeedbackFacts(*r) for r in _rows(engine, schema.agent_feedback, FEEDBACK_FACT_COLUMNS)]
    return executions, feedback


def diff_rollups(stored: RollupRows, expected: RollupRows) -> list[str]:
    """Human-readable differences (empty when equal)."""
    problems: list[str] = []
    for name in ("agent_metrics", "user_agent_interactions", "usage_daily", "agents"):
        have: dict[Any, Any] = getattr(stored, name)
        want: dict[Any, Any] = getattr(expected, name)
        for key in sorted(have.keys() | want.keys(), key=repr):
            if have.get(key) != want.get(key):
                problems.append(f"{name} {key}: stored {have.get(key)!r} != recomputed {want.get(key)!r}")
    if stored.agent_metric_users != expected.agent_metric_users:
        extra = stored.agent_metric_users - expected.agent_metric_users
        missing = expected.agent_metric_users - stored.agent_metric_users
        problems.append(f"agent_metric_users: {len(extra)} extra, {len(missing)} missing")
    return problems


def assert_rollups_match_raw(engine: Engine) -> RollupRows:
    stored = read_rollups(engine)
    expected = recompute(*read_raw(engine))
    problems = diff_rollups(stored, expected)
    assert not problems, "\n".join(problems[:20])
    return stored


def metric_row(rows: RollupRows, agent: str, period: str, tenant: str = "default") -> dict[str, Any]:
    """The only ``agent_metrics`` row of an agent and period, as a column dict."""
    found = [v for k, v in rows.agent_metrics.items() if k[0] == tenant and k[1] == agent and k[2] == period]
    assert len(found) == 1, f"{len(found)} {period} rows for {agent}"
    return dict(zip(METRIC_VALUE_COLUMNS, found[0], strict=True))


__all__ = ["assert_rollups_match_raw", "date", "diff_rollups", "metric_row", "read_raw", "read_rollups"]
