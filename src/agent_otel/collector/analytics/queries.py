"""Reads behind the admin API: rollups for anything over time, raw rows only for lists.

Time ranges are answered from ``agent_metrics`` by tiling the range with the coarsest whole
periods that fit (``periods.tile``): a 30-day question reads about 30 day rows per agent, a
24-hour question about 25 hour rows, never the raw executions. Rollup states merge exactly, so
the merged figures (counts, sums, percentiles from the merged sketch) are those of the range.
Raw rows are read only where a list is asked for (executions, errors, a user's activity) or for
data without a rollup (tools, unpriced models), always bounded by time and a limit.

Every function takes the tenant to read (None: every tenant, for the global admin token).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, TypeVar

import orjson
from sqlalchemy import Connection, Select, Text, and_, cast, desc, func, or_, select

from agent_otel.collector.analytics.periods import Period, tile, utc
from agent_otel.collector.analytics.sketch import DenseCounts, DurationSketch
from agent_otel.collector.analytics.state import (
    METRIC_VALUE_COLUMNS,
    USAGE_VALUE_COLUMNS,
    MetricState,
    UsageState,
    micros,
    nanos,
)
from agent_otel.collector.storage.schema import (
    agent_executions,
    agent_metric_users,
    agent_metrics,
    agent_steps,
    agents,
    usage_daily,
    user_agent_interactions,
)

EXECUTION_FIELDS: Final = (
    "tenant_id",
    "execution_id",
    "agent_id",
    "user_id",
    "session_id",
    "status",
    "duration",
    "started_at",
    "completed_at",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "credits_consumed",
    "llm_calls",
    "tool_calls",
    "unpriced_llm_calls",
    "error_code",
    "error_message",
    "http_status",
    "intent",
    "feature",
    "trace_id",
)


class QueryError(ValueError):
    """A request the API answers with 400 (bad cursor, bad range)."""


S = TypeVar("S", bound=Select[Any])


def _scoped(statement: S, table: Any, tenant: str | None) -> S:
    return statement if tenant is None else statement.where(table.c.tenant_id == tenant)


# -- rollups over a range ------------------------------------------------------------------------


@dataclass
class AgentRange:
    """One agent's merged rollups over a range."""

    tenant_id: str
    agent_id: str
    state: MetricState = field(default_factory=MetricState)


_STATE_COLUMNS: Final = (
    "total_executions",
    "successful_executions",
    "failed_executions",
    "timeout_executions",
    "error_executions",
    "sum_duration",
    "min_duration",
    "max_duration",
    "total_credits_consumed",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "llm_calls",
    "tool_calls",
    "unpriced_llm_calls",
)
_MAP_COLUMNS: Final = ("error_counts", "model_counts", "model_costs", "intent_counts")


def range_states(
    conn: Connection,
    tenant: str | None,
    since: datetime,
    until: datetime,
    agent_ids: Sequence[str] | None = None,
    maps: bool = False,
) -> dict[tuple[str, str], AgentRange]:
    """Per (tenant, agent): the merged ``agent_metrics`` states of the tiles covering the range.

    Built for speed (a 24-hour question merges ~25 rows per agent): only the columns needed,
    JSON read as text and parsed by orjson, sketches added as dense arrays. ``maps`` adds the
    per-error, per-model and per-intent counts."""
    by_period: dict[Period, list[datetime]] = {}
    for period, start in tile(since, until):
        by_period.setdefault(period, []).append(start)
    m = agent_metrics
    columns: list[Any] = [m.c.tenant_id, m.c.agent_id, cast(m.c.duration_sketch, Text)]
    columns += [m.c[c] for c in _STATE_COLUMNS]
    if maps:
        columns += [cast(m.c[c], Text) for c in _MAP_COLUMNS]
    out: dict[tuple[str, str], AgentRange] = {}
    sketches: dict[tuple[str, str], DenseCounts] = {}
    loads = orjson.loads
    for period, starts in by_period.items():
        statement = select(*columns).where(m.c.period == period, m.c.period_start.in_(starts))
        statement = _scoped(statement, m, tenant)
        if agent_ids is not None:
            statement = statement.where(m.c.agent_id.in_(list(agent_ids)))
        for row in conn.execute(statement):
            key = (row[0], row[1])
            found = out.get(key)
            if found is None:
                found = out[key] = AgentRange(row[0], row[1])
                sketches[key] = DenseCounts()
            if row[2] is not None:
                sketches[key].add_json(loads(row[2]))
            s = found.state
            total, successful, failed, timeout, error, sum_duration, low, high = row[3:11]
            credits, tokens_in, tokens_out, cost, llm, tool, unpriced = row[11:18]
            s.total += total
            s.statuses[0] += successful
            s.statuses[1] += failed
            s.statuses[2] += timeout
            s.statuses[3] += error
            s.sum_duration += sum_duration
            if low is not None and (s.min_duration is None or low < s.min_duration):
                s.min_duration = low
            if high is not None and (s.max_duration is None or high > s.max_duration):
                s.max_duration = high
            s.credits += micros(credits)
            s.input_tokens += tokens_in
            s.output_tokens += tokens_out
            s.cost += nanos(cost)
            s.llm_calls += llm
            s.tool_calls += tool
            s.unpriced += unpriced
            if maps:
                errors, models, model_costs, intents = (loads(v) if v else None for v in row[18:22])
                s.merge(MetricState(errors=_ints(errors), models=_ints(models), intents=_ints(intents)))
                for model, usd in (model_costs or {}).items():
                    s.model_costs[model] = s.model_costs.get(model, 0) + nanos(usd)
    for key, dense in sketches.items():
        out[key].state.sketch = dense.sketch()
    return out


def _ints(data: dict[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (data or {}).items() if v}


def range_unique_users(
    conn: Connection, tenant: str | None, since: datetime, until: datetime, agent_ids: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Exact distinct users per agent over a range (the tiles partition it; users are stored per tile)."""
    conditions = []
    by_period: dict[Period, list[datetime]] = {}
    for period, start in tile(since, until):
        by_period.setdefault(period, []).append(start)
    for period, starts in by_period.items():
        conditions.append(and_(agent_metric_users.c.period == period, agent_metric_users.c.period_start.in_(starts)))
    if not conditions:
        return {}
    statement = (
        select(
            agent_metric_users.c.tenant_id,
            agent_metric_users.c.agent_id,
            func.count(func.distinct(agent_metric_users.c.user_id)),
        )
        .where(or_(*conditions), agent_metric_users.c.agent_id.in_(list(agent_ids)))
        .group_by(agent_metric_users.c.tenant_id, agent_metric_users.c.agent_id)
    )
    statement = _scoped(statement, agent_metric_users, tenant)
    return {(r[0], r[1]): int(r[2]) for r in conn.execute(statement)}


def state_summary(state: MetricState) -> dict[str, Any]:
    """The figures of a merged state, in the API's names."""
    total = state.total
    p50, p95, p99 = state.sketch.quantiles((0.5, 0.95, 0.99), state.min_duration, state.max_duration)
    successful, failed, timeout, error = state.statuses
    return {
        "executions": total,
        "successful": successful,
        "failed": failed,
        "timeout": timeout,
        "error": error,
        "success_rate": successful / total if total else None,
        "avg_duration_ms": state.sum_duration / total if total else None,
        "min_duration_ms": state.min_duration,
        "max_duration_ms": state.max_duration,
        "p50_duration_ms": p50,
        "p95_duration_ms": p95,
        "p99_duration_ms": p99,
        "input_tokens": state.input_tokens,
        "output_tokens": state.output_tokens,
        "total_tokens": state.input_tokens + state.output_tokens,
        "cost_usd": state.cost / 1e9,
        "credits": state.credits / 1e6,
        "llm_calls": state.llm_calls,
        "tool_calls": state.tool_calls,
        "unpriced_llm_calls": state.unpriced,
    }


def top(counts: dict[str, int], limit: int = 10) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit])


def agent_info(
    conn: Connection, tenant: str | None, agent_ids: Iterable[str] | None = None
) -> dict[tuple[str, str], Any]:
    """Name and computed fields of agents (all of them, or those named)."""
    statement = select(
        agents.c.tenant_id,
        agents.c.id,
        agents.c.name,
        agents.c.avg_rating,
        agents.c.rating_count,
        agents.c.total_executions,
        agents.c.total_users,
        agents.c.last_executed_at,
        agents.c.first_seen_at,
    )
    statement = _scoped(statement, agents, tenant)
    if agent_ids is not None:
        statement = statement.where(agents.c.id.in_(list(agent_ids)))
    return {(r[0], r[1]): r for r in conn.execute(statement)}


def series(
    conn: Connection, tenant: str | None, agent_id: str, period: Period, since: datetime, until: datetime
) -> list[tuple[datetime, MetricState]]:
    """One agent's rows of one period, oldest first (states merged across tenants if unscoped)."""
    columns = [agent_metrics.c.period_start, *(agent_metrics.c[c] for c in METRIC_VALUE_COLUMNS)]
    statement = (
        select(*columns)
        .where(
            agent_metrics.c.agent_id == agent_id,
            agent_metrics.c.period == period,
            agent_metrics.c.period_start >= since,
            agent_metrics.c.period_start < until,
        )
        .order_by(agent_metrics.c.period_start)
    )
    statement = _scoped(statement, agent_metrics, tenant)
    points: dict[datetime, MetricState] = {}
    for row in conn.execute(statement):
        start = utc(row[0])
        state = MetricState.from_values(row[1:])
        state.unique_users = int(row[1 + METRIC_VALUE_COLUMNS.index("unique_users")] or 0)
        if start in points:
            points[start].merge(state)
        else:
            points[start] = state
    return sorted(points.items())


# -- raw lists ----------------------------------------------------------------------------------


def _record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    for key in ("started_at", "completed_at"):
        if record.get(key) is not None:
            record[key] = utc(record[key])
    return record


def encode_cursor(started_at: datetime, execution_id: str) -> str:
    raw = orjson.dumps([utc(started_at).isoformat(), execution_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, execution_id = orjson.loads(raw)
        return utc(datetime.fromisoformat(started)), str(execution_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise QueryError("cursor is not one this API returned") from None


@dataclass
class ExecutionFilter:
    tenant: str | None
    since: datetime | None = None
    until: datetime | None = None
    agent_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    status: Sequence[str] = ()
    model: str | None = None


def search_executions(
    conn: Connection, f: ExecutionFilter, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, ``limit`` per page; the cursor is the last row's (started_at, execution_id)."""
    t = agent_executions
    statement = select(*(t.c[c] for c in EXECUTION_FIELDS), agents.c.name.label("agent_name")).outerjoin(
        agents, and_(agents.c.tenant_id == t.c.tenant_id, agents.c.id == t.c.agent_id)
    )
    statement = _scoped(statement, t, f.tenant)
    if f.since is not None:
        statement = statement.where(t.c.started_at >= f.since)
    if f.until is not None:
        statement = statement.where(t.c.started_at < f.until)
    for column, value in (("agent_id", f.agent_id), ("user_id", f.user_id), ("session_id", f.session_id)):
        if value is not None:
            statement = statement.where(t.c[column] == value)
    if f.model is not None:
        statement = statement.where(t.c.model == f.model)
    if f.status:
        statement = statement.where(t.c.status.in_(list(f.status)))
    if cursor is not None:
        started, execution_id = decode_cursor(cursor)
        statement = statement.where(
            or_(t.c.started_at < started, and_(t.c.started_at == started, t.c.execution_id < execution_id))
        )
    statement = statement.order_by(desc(t.c.started_at), desc(t.c.execution_id)).limit(limit + 1)
    rows = [_record(r) for r in conn.execute(statement)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["started_at"], rows[-1]["execution_id"])
    return rows, next_cursor


def recent_errors(conn: Connection, tenant: str | None, limit: int, since: datetime | None) -> list[dict[str, Any]]:
    """The newest executions that did not succeed (one index range per status, merged)."""
    rows: list[dict[str, Any]] = []
    for status in ("failed", "timeout", "error"):
        found, _ = search_executions(conn, ExecutionFilter(tenant, since=since, status=(status,)), limit)
        rows += found
    rows.sort(key=lambda r: (r["started_at"], r["execution_id"]), reverse=True)
    return rows[:limit]


def user_interactions(conn: Connection, tenant: str | None, user_id: str) -> list[dict[str, Any]]:
    t = user_agent_interactions
    statement = select(t, agents.c.name.label("agent_name")).outerjoin(
        agents, and_(agents.c.tenant_id == t.c.tenant_id, agents.c.id == t.c.agent_id)
    )
    statement = _scoped(statement.where(t.c.user_id == user_id), t, tenant).order_by(desc(t.c.total_executions))
    out = []
    for row in conn.execute(statement):
        record = dict(row._mapping)
        for key in ("first_executed_at", "last_executed_at", "created_at", "updated_at"):
            if record.get(key) is not None:
                record[key] = utc(record[key])
        out.append(record)
    return out


# -- tools and unpriced models (raw steps, bounded by time) -------------------------------------


def tool_stats(conn: Connection, tenant: str | None, since: datetime, until: datetime) -> list[dict[str, Any]]:
    s = agent_steps
    statement = select(s.c.tool_name, s.c.name, s.c.status, s.c.duration, s.c.agent_id).where(
        s.c.kind == "tool", s.c.started_at >= since, s.c.started_at < until
    )
    statement = _scoped(statement, s, tenant)
    tools: dict[str, dict[str, Any]] = {}
    for row in conn.execute(statement):
        tool_name, name, status, duration, agent_id = row
        key: str = tool_name or name
        entry = tools.get(key)
        if entry is None:
            entry = tools[key] = {
                "calls": 0,
                "successful": 0,
                "sum": 0,
                "max": 0,
                "sketch": DurationSketch(),
                "agents": set(),
                "errors": {},
            }
        entry["calls"] += 1
        if status == "success":
            entry["successful"] += 1
        else:
            entry["errors"][status] = entry["errors"].get(status, 0) + 1
        entry["sum"] += duration
        entry["max"] = max(entry["max"], duration)
        entry["sketch"].add(duration)
        if agent_id:
            entry["agents"].add(agent_id)
    out = []
    for tool_name, entry in tools.items():
        calls = entry["calls"]
        p50, p95, p99 = entry["sketch"].quantiles((0.5, 0.95, 0.99), None, entry["max"])
        out.append(
            {
                "tool": tool_name,
                "calls": calls,
                "successful": entry["successful"],
                "failed": calls - entry["successful"],
                "success_rate": entry["successful"] / calls,
                "avg_duration_ms": entry["sum"] / calls,
                "p50_duration_ms": p50,
                "p95_duration_ms": p95,
                "p99_duration_ms": p99,
                "max_duration_ms": entry["max"],
                "agents": len(entry["agents"]),
                "failures_by_status": entry["errors"],
            }
        )
    out.sort(key=lambda r: (-r["calls"], r["tool"]))
    return out


def unpriced_models(conn: Connection, tenant: str | None, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """LLM calls stored with tokens and no cost, per model (steps, and executions without steps)."""
    s, e = agent_steps, agent_executions
    found: dict[tuple[str | None, str | None], dict[str, Any]] = {}

    def add(model: str | None, provider: str | None, calls: int, tin: int, tout: int, last: datetime) -> None:
        entry = found.setdefault(
            (model, provider),
            {
                "model": model,
                "provider": provider,
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "last_seen": last,
            },
        )
        entry["calls"] += int(calls)
        entry["input_tokens"] += int(tin or 0)
        entry["output_tokens"] += int(tout or 0)
        entry["last_seen"] = max(entry["last_seen"], utc(last))

    steps = (
        select(s.c.model, s.c.provider, func.count(), func.sum(s.c.input_tokens), func.sum(s.c.output_tokens))
        .add_columns(func.max(s.c.started_at))
        .where(
            s.c.kind == "llm",
            s.c.cost_usd.is_(None),
            (s.c.input_tokens + s.c.output_tokens) > 0,
            s.c.started_at >= since,
            s.c.started_at < until,
        )
        .group_by(s.c.model, s.c.provider)
    )
    for model, provider, calls, tin, tout, last in conn.execute(_scoped(steps, s, tenant)):
        add(model, provider, calls, tin, tout, utc(last))
    own = (
        select(e.c.model, e.c.provider, func.sum(e.c.unpriced_llm_calls), func.sum(e.c.input_tokens))
        .add_columns(func.sum(e.c.output_tokens), func.max(e.c.started_at))
        .where(e.c.llm_calls == 0, e.c.unpriced_llm_calls > 0, e.c.started_at >= since, e.c.started_at < until)
        .group_by(e.c.model, e.c.provider)
    )
    for model, provider, calls, tin, tout, last in conn.execute(_scoped(own, e, tenant)):
        add(model, provider, calls, tin, tout, utc(last))
    for entry in found.values():
        entry["last_seen"] = utc(entry["last_seen"])
    return sorted(found.values(), key=lambda r: (-r["calls"], r["model"] or ""))


# -- usage (usage_daily) -------------------------------------------------------------------------


def usage_rows(
    conn: Connection, tenant: str | None, since: date, until: date, user_id: str | None = None
) -> list[tuple[str, str, date, UsageState]]:
    u = usage_daily
    statement = select(u.c.tenant_id, u.c.user_id, u.c.date, *(u.c[c] for c in USAGE_VALUE_COLUMNS)).where(
        u.c.date >= since, u.c.date < until
    )
    statement = _scoped(statement, u, tenant)
    if user_id is not None:
        statement = statement.where(u.c.user_id == user_id)
    return [(r[0], r[1], r[2], UsageState.from_values(r[3:])) for r in conn.execute(statement.order_by(u.c.date))]


def usage_summary(state: UsageState) -> dict[str, Any]:
    return {
        "interactions": state.interactions,
        "successful": state.successful,
        "duration_ms": state.duration_ms,
        "input_tokens": state.input_tokens,
        "output_tokens": state.output_tokens,
        "total_tokens": state.input_tokens + state.output_tokens,
        "cost_usd": state.cost / 1e9,
        "credits": state.credits / 1e6,
        "avg_satisfaction": state.ratings_sum / state.ratings_count if state.ratings_count else None,
        "ratings": state.ratings_count,
    }


def breakdown(usage: dict[str, list[int]]) -> dict[str, dict[str, float | int]]:
    return {
        name: {"interactions": n, "input_tokens": tin, "output_tokens": tout, "cost_usd": cost / 1e9}
        for name, (n, tin, tout, cost) in sorted(usage.items(), key=lambda item: (-item[1][3], item[0]))
    }
