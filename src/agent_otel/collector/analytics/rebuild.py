"""``agent-otel rollups rebuild``: recompute rollups from raw rows (seed 001's backfill).

Reads the raw executions day by day (bounded memory), aggregates them with the same pure
functions as the rollup hook (``aggregate``), and replaces the rollup rows of the range in one
transaction, so readers see the old rollups until the new ones are committed.

What is rebuilt
- Without ``since``/``until``: everything. Every rollup table is emptied and recomputed, with
  agents' computed fields and ``user_agent_interactions`` (which cover all time).
- With a range: the ``agent_metrics`` (and ``agent_metric_users``) rows of every period lying
  entirely inside [since, until), and the ``usage_daily`` rows of the days inside it. Periods
  that straddle an end are left as they are; interactions and agents are not touched.

Safety: raw rows are kept for fewer days than rollups (retention). Rebuilding a period whose
raw rows were already removed would replace good rollups by emptier ones, so the rebuild
refuses when the range holds day rollups older than the oldest raw execution (``force``
overrides it).

Concurrency: on PostgreSQL the rollup tables are locked against writes (``SHARE ROW EXCLUSIVE``,
taken in the collectors' own lock order) for the rebuild's duration; running collectors keep
accepting data and their rollup updates wait, then apply on top of the rebuilt rows (they were
not visible to the rebuild, so nothing is counted twice or lost). On SQLite the rebuild holds
the database's write lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from agent_otel.collector.analytics.aggregate import (
    EXECUTION_FACT_COLUMNS,
    FEEDBACK_FACT_COLUMNS,
    ExecutionFacts,
    FeedbackFacts,
    aggregate,
    merge_states,
)
from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.outbox import APPLIER_LOCK, drain
from agent_otel.collector.analytics.periods import DAY, PERIODS, Period, ceil, floor, next_start, utc
from agent_otel.collector.analytics.state import AgentState, InteractionState, MetricKey, MetricState, UsageState
from agent_otel.collector.analytics.store import INTERACTIONS, METRICS, USAGE, USERS, rollup_store_for, set_agents
from agent_otel.collector.storage.schema import ROLLUP_TABLES
from agent_otel.collector.storage.store import parse_sqlite_ts, sqlite_ts
from agent_otel.settings import RetentionSettings

Progress = Callable[[int, int], None]


class RebuildRefused(RuntimeError):
    """The rebuild would destroy rollups that raw rows can no longer reproduce."""


@dataclass
class RebuildReport:
    since: datetime | None
    until: datetime | None
    executions: int = 0
    feedback: int = 0
    deltas: int = 0  # pending deferred-rollup deltas applied (ranged) or superseded (full)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        scope = "everything" if self.since is None and self.until is None else f"[{self.since}, {self.until})"
        written = ", ".join(f"{table}={count}" for table, count in self.rows.items())
        return (
            f"rollups rebuilt ({scope}) from {self.executions} executions and {self.feedback} feedback rows"
            f" in {self.seconds:.1f}s: {written}"
        )


def _bounds(period: Period, since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """Starts of the periods lying entirely inside [since, until): [low, high)."""
    return (ceil(period, since) if since else None, floor(period, until) if until else None)


def _inside(period: Period, start: datetime, since: datetime | None, until: datetime | None) -> bool:
    low, high = _bounds(period, since, until)
    return (low is None or start >= low) and (high is None or start < high)


class _Reader:
    """Raw rows of one transaction, in the Python types the aggregation expects."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sqlite = conn.dialect.name != "postgresql"

    def _ts(self, value: datetime) -> Any:
        return sqlite_ts(value) if self.sqlite else value

    def tenants(self) -> list[str]:
        rows = self.conn.execute(text("SELECT DISTINCT tenant_id FROM agents ORDER BY 1")).fetchall()
        return [r[0] for r in rows]

    def execution_range(self) -> tuple[datetime, datetime] | None:
        low, high = self.conn.execute(text("SELECT min(started_at), max(started_at) FROM agent_executions")).one()
        if low is None:
            return None
        return (parse_sqlite_ts(low), parse_sqlite_ts(high)) if self.sqlite else (utc(low), utc(high))

    def feedback_range(self) -> tuple[datetime, datetime] | None:
        low, high = self.conn.execute(text('SELECT min("timestamp"), max("timestamp") FROM agent_feedback')).one()
        if low is None:
            return None
        return (parse_sqlite_ts(low), parse_sqlite_ts(high)) if self.sqlite else (utc(low), utc(high))

    def executions(self, tenant: str, low: datetime, high: datetime) -> Iterator[ExecutionFacts]:
        columns = ", ".join(EXECUTION_FACT_COLUMNS)
        result = self.conn.execute(
            text(
                f"SELECT {columns} FROM agent_executions"
                " WHERE tenant_id = :t AND started_at >= :low AND started_at < :high"
            ),
            {"t": tenant, "low": self._ts(low), "high": self._ts(high)},
        )
        index = EXECUTION_FACT_COLUMNS.index("started_at")
        for row in result:
            values = list(row)
            values[index] = parse_sqlite_ts(values[index]) if self.sqlite else utc(values[index])
            yield ExecutionFacts(*values)

    def feedback(self, low: datetime | None = None, high: datetime | None = None) -> Iterator[FeedbackFacts]:
        columns = ", ".join('"timestamp"' if c == "timestamp" else c for c in FEEDBACK_FACT_COLUMNS)
        where, params = "", {}
        if low is not None and high is not None:
            where = ' WHERE "timestamp" >= :low AND "timestamp" < :high'
            params = {"low": self._ts(low), "high": self._ts(high)}
        for row in self.conn.execute(text(f"SELECT {columns} FROM agent_feedback{where}"), params):
            values = list(row)
            values[2] = parse_sqlite_ts(values[2]) if self.sqlite else utc(values[2])
            if values[6] is not None:
                values[6] = bool(values[6])
            yield FeedbackFacts(*values)


def _lock(conn: Connection, full: bool) -> None:
    if conn.dialect.name != "postgresql":
        return
    # No rollup applier runs meanwhile (it waits for this transaction), then the tables in the
    # writers' lock order (store.py): agents first (a writer upserts agents, then records its
    # rollup delta), then the outbox (writers that reached it commit first; later ones wait, so
    # raw rows this rebuild reads and deltas it drains are the same set), then the rollups.
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (APPLIER_LOCK,))
    tables = "agents, rollup_outbox, user_agent_interactions, agent_metric_users, agent_metrics, usage_daily"
    if not full:
        tables = "agents, rollup_outbox, agent_metric_users, agent_metrics, usage_daily"
    conn.exec_driver_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")


def _check(conn: Connection, reader: _Reader, since: datetime | None, until: datetime | None) -> None:
    """Refuse when the range holds day rollups that predate every raw execution."""
    raw = reader.execution_range()
    oldest = floor("day", raw[0]) if raw else None
    sql = "SELECT min(period_start) FROM agent_metrics WHERE period = 'day'"
    params: dict[str, Any] = {}
    if since is not None:
        sql += " AND period_start >= :low"
        params["low"] = reader._ts(ceil("day", since))
    if until is not None:
        sql += " AND period_start < :high"
        params["high"] = reader._ts(floor("day", until))
    first = conn.execute(text(sql), params).scalar_one()
    if first is None:
        return
    first = parse_sqlite_ts(first) if reader.sqlite else utc(first)
    if oldest is None or first < oldest:
        held = "no raw executions" if oldest is None else f"raw executions only from {oldest.date()}"
        raise RebuildRefused(
            f"the range holds day rollups from {first.date()} but the database holds {held} (older raw rows were "
            "removed by retention): rebuilding would lose them. Pass --since with a later date, or --force."
        )


def _delete(conn: Connection, since: datetime | None, until: datetime | None) -> None:
    if since is None and until is None:
        for table in ROLLUP_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
        return
    sqlite = conn.dialect.name != "postgresql"
    for period in PERIODS:
        low, high = _bounds(period, since, until)
        where, params = "period = :p", {"p": period}
        if low is not None:
            where += " AND period_start >= :low"
            params["low"] = sqlite_ts(low) if sqlite else low  # type: ignore[assignment]
        if high is not None:
            where += " AND period_start < :high"
            params["high"] = sqlite_ts(high) if sqlite else high  # type: ignore[assignment]
        for table in ("agent_metric_users", "agent_metrics"):
            conn.execute(text(f"DELETE FROM {table} WHERE {where}"), params)
    low, high = _bounds("day", since, until)
    clauses, day_params = [], {}
    if low is not None:
        clauses.append('"date" >= :low')
        day_params["low"] = low.date().isoformat() if sqlite else low.date()
    if high is not None:
        clauses.append('"date" < :high')
        day_params["high"] = high.date().isoformat() if sqlite else high.date()
    conn.execute(text("DELETE FROM usage_daily WHERE " + " AND ".join(clauses)), day_params)


def rebuild(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
    retention: RetentionSettings | None = None,
) -> RebuildReport:
    """Recompute rollups from raw rows (see the module docstring); one transaction."""
    started = time.perf_counter()
    since = utc(since) if since is not None else None
    until = utc(until) if until is not None else None
    if since is not None and until is not None and since >= until:
        raise ValueError("--since must be before --until")
    full = since is None and until is None
    report = RebuildReport(since, until)
    with engine.begin() as conn:
        _lock(conn, full)
        reader = _Reader(conn)
        if not force:
            _check(conn, reader, since, until)
        # deferred rollups not applied yet: a full rebuild recomputes what they hold from the raw
        # rows; a ranged one applies them first (they may lie outside the range)
        report.deltas = drain(conn, RollupHook(retention), discard=full)
        _delete(conn, since, until)
        spans = [r for r in (reader.execution_range(), reader.feedback_range()) if r is not None]
        first = min(r[0] for r in spans) if spans else None
        last = max(r[1] for r in spans) + timedelta(microseconds=1) if spans else None
        # only days holding raw rows are read: nothing exists outside [first, last]
        low = floor("day", first) if first else None
        high = last
        if since is not None and low is not None:
            low = max(low, ceil("hour", since))
        if until is not None and high is not None:
            high = min(high, floor("hour", until))
        _Builder(conn, reader, since, until, full, report).run(low, high, progress)
    report.seconds = time.perf_counter() - started
    return report


class _Builder:
    def __init__(
        self,
        conn: Connection,
        reader: _Reader,
        since: datetime | None,
        until: datetime | None,
        full: bool,
        report: RebuildReport,
    ) -> None:
        self.conn, self.reader, self.since, self.until, self.full, self.report = (
            conn,
            reader,
            since,
            until,
            full,
            report,
        )
        self.store = rollup_store_for(conn)
        self.pending: dict[MetricKey, MetricState] = {}  # weeks and months not complete yet
        self.interactions: dict[tuple[str, str, str], InteractionState] = {}
        self.agents: dict[tuple[str, str], AgentState] = {}

    def _count(self, table: str, n: int) -> None:
        self.report.rows[table] = self.report.rows.get(table, 0) + n

    def _write_metrics(self, states: dict[MetricKey, MetricState]) -> None:
        rows: list[tuple[Any, ...]] = []
        users: list[tuple[str, str, str, datetime, str]] = []
        for key in sorted(states):
            tenant, agent, period, start = key
            if not _inside(period, start, self.since, self.until):  # type: ignore[arg-type]
                continue
            state = states[key]
            state.unique_users = len(state.users)
            rows.append((*key, *state.values(period, start)))  # type: ignore[arg-type]
            users.extend((tenant, agent, period, start, user) for user in sorted(state.users))
        self.store.insert_rows(METRICS, rows)
        self.store.insert_rows(USERS, users)
        self._count("agent_metrics", len(rows))
        self._count("agent_metric_users", len(users))

    def run(self, low: datetime | None, high: datetime | None, progress: Progress | None) -> None:
        tenants = self.reader.tenants()
        if low is not None and high is not None and low < high:
            self._days(tenants, low, high, progress)
        elif progress:
            progress(0, 0)
        self._flush(None)
        if self.full:
            self._finish_full()

    def _days(self, tenants: list[str], low: datetime, high: datetime, progress: Progress | None) -> None:
        days: list[datetime] = []
        cursor = floor("day", low)
        while cursor < high:
            days.append(cursor)
            cursor += DAY
        if progress:
            progress(0, len(days))
        for done, day in enumerate(days, 1):
            a, b = max(day, low), min(day + DAY, high)
            executions = [e for tenant in tenants for e in self.reader.executions(tenant, a, b)]
            feedback = list(self.reader.feedback(a, b))
            self.report.executions += len(executions)
            if not self.full:
                self.report.feedback += len(feedback)
            self._day(executions, feedback)
            self._flush(day + DAY)
            if progress:
                progress(done, len(days))

    def _day(self, executions: list[ExecutionFacts], feedback: list[FeedbackFacts]) -> None:
        agg = aggregate(executions, (), feedback, periods=PERIODS)
        now = {k: v for k, v in agg.metrics.items() if k[2] in ("hour", "day")}
        self._write_metrics(now)
        later = ((key, state) for key, state in agg.metrics.items() if key[2] in ("week", "month"))
        merge_states(self.pending, later, MetricState.merge)
        usage_rows = []
        for usage_key in sorted(agg.usage):
            day_start = datetime.combine(usage_key[2], datetime.min.time(), tzinfo=UTC)
            if _inside("day", day_start, self.since, self.until):
                usage_rows.append((*usage_key, *agg.usage[usage_key].values()))
        self.store.insert_rows(USAGE, usage_rows)
        self._count("usage_daily", len(usage_rows))
        if self.full:
            merge_states(self.interactions, agg.interactions.items(), InteractionState.merge_executions)
            for agent_key, agent_state in agg.agents.items():
                if agent_state.executions:
                    total = self.agents.setdefault(agent_key, AgentState())
                    total.executions += agent_state.executions
                    if total.last_executed_at is None or (
                        agent_state.last_executed_at is not None
                        and agent_state.last_executed_at > total.last_executed_at
                    ):
                        total.last_executed_at = agent_state.last_executed_at

    def _flush(self, before: datetime | None) -> None:
        """Write the weeks and months that end at or before ``before`` (all of them if None)."""
        done = {
            k: v
            for k, v in self.pending.items()
            if before is None or next_start(k[2], k[3]) <= before  # type: ignore[arg-type]
        }
        for key in done:
            del self.pending[key]
        self._write_metrics(done)

    def _finish_full(self) -> None:
        feedback: dict[tuple[str, str, str], list[FeedbackFacts]] = {}
        first_feedback: dict[tuple[str, str], datetime] = {}
        for f in self.reader.feedback():
            self.report.feedback += 1
            if f.user_id is None:
                continue
            feedback.setdefault((f.tenant_id, f.user_id, f.agent_id), []).append(f)
            seen = first_feedback.get((f.tenant_id, f.agent_id))
            if seen is None or f.timestamp < seen:
                first_feedback[(f.tenant_id, f.agent_id)] = f.timestamp
        rows = []
        for pair in sorted(self.interactions.keys() | feedback.keys()):
            state = self.interactions.get(pair) or InteractionState()
            for f in feedback.get(pair, ()):
                state.add_feedback(f)
            rows.append((*pair, *state.values()))
            tenant, _user, agent = pair
            totals = self.agents.setdefault((tenant, agent), AgentState())
            if state.total:
                totals.users += 1
            rating = state.current_rating
            if rating is not None:
                totals.rating_count += 1
                totals.rating_sum += rating
        self.store.insert_rows(INTERACTIONS, rows)
        self._count("user_agent_interactions", len(rows))
        agents = [
            (tenant, agent, first_feedback.get((tenant, agent)) or state.last_executed_at, state.values())
            for (tenant, agent), state in self.agents.items()
            if not state.empty
        ]
        set_agents(self.conn, agents)  # type: ignore[arg-type]
        self._count("agents", len(agents))


__all__ = ["RebuildRefused", "RebuildReport", "UsageState", "rebuild"]
