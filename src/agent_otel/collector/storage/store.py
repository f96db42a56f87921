"""Dialect primitives the write transaction is built from, on one open connection.

PostgreSQL: a group's rows are copied straight into their table by binary COPY, inside a
savepoint. If a key exists already (a retried request), the savepoint is rolled back and the rows
go into a session temp table instead, from which one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING RETURNING`` in primary-key order moves the new ones and says which they were.
SQLite: one writer at a time (``BEGIN IMMEDIATE``); rows are inserted with ``executemany`` inside
a savepoint, and on a conflict the stored keys are looked up first and only new rows inserted.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, event

from agent_otel.collector.pipeline.assemble import Adoption, StoredExecution, StoredState, StoredStep
from agent_otel.collector.pipeline.rows import AgentRow
from agent_otel.collector.storage.partitions import existing_partitions, partition_name

Row = tuple[Any, ...]
# (tenant, log id, timestamp, execution id, agent id, user id)
LogAdoption = tuple[str, str, datetime, str, str, str | None]
R = TypeVar("R", bound=tuple[Any, ...])

# A trace's spans are looked up within this window around the group's own time range, so
# PostgreSQL can prune partitions (spans of one trace further apart are not joined).
TRACE_WINDOW: Final = timedelta(days=1)

_PG_TYPES: Final[dict[str, dict[str, str]]] = {
    "agent_executions": {
        "tenant_id": "text",
        "execution_id": "text",
        "started_at": "timestamptz",
        "agent_id": "text",
        "user_id": "text",
        "status": "text",
        "duration": "int4",
        "credits_consumed": "float8",
        "http_status": "int4",
        "error_code": "text",
        "error_message": "text",
        "input_size": "int8",
        "output_size": "int8",
        "input_type": "text",
        "output_type": "text",
        "response_time": "int4",
        "processing_time": "int4",
        "queue_time": "int4",
        "session_id": "text",
        "user_agent": "text",
        "ip_address": "text",
        "completed_at": "timestamptz",
        "model": "text",
        "provider": "text",
        "input_tokens": "int8",
        "output_tokens": "int8",
        "cost_usd": "float8",
        "unpriced_llm_calls": "int4",
        "llm_calls": "int4",
        "tool_calls": "int4",
        "trace_id": "text",
        "span_id": "text",
        "parent_execution_id": "text",
        "service_name": "text",
        "intent": "text",
        "feature": "text",
        "source": "text",
    },
    "agent_steps": {
        "tenant_id": "text",
        "trace_id": "text",
        "span_id": "text",
        "started_at": "timestamptz",
        "parent_span_id": "text",
        "execution_id": "text",
        "agent_id": "text",
        "kind": "text",
        "name": "text",
        "operation": "text",
        "tool_name": "text",
        "model": "text",
        "provider": "text",
        "status": "text",
        "duration": "int4",
        "completed_at": "timestamptz",
        "input_tokens": "int8",
        "output_tokens": "int8",
        "cost_usd": "float8",
        "error_type": "text",
        "error_message": "text",
        "input_size": "int8",
        "output_size": "int8",
        "input_type": "text",
        "output_type": "text",
        "streaming": "bool",
        "finish_reason": "text",
    },
    "agent_logs": {
        "tenant_id": "text",
        "log_id": "text",
        "timestamp": "timestamptz",
        "execution_id": "text",
        "agent_id": "text",
        "user_id": "text",
        "trace_id": "text",
        "span_id": "text",
        "category": "text",
        "level": "text",
        "event_name": "text",
        "message": "text",
        "context": "jsonb",
        "metadata": "jsonb",
    },
    "agent_feedback": {
        "tenant_id": "text",
        "feedback_id": "text",
        "timestamp": "timestamptz",
        "execution_id": "text",
        "agent_id": "text",
        "user_id": "text",
        "rating": "int4",
        "is_favorite": "bool",
        "comment": "text",
    },
}


def _q(name: str) -> str:
    return f'"{name}"' if name in ("timestamp", "metadata", "date", "hour") else name


class Store(ABC):
    """The write transaction's primitives. ``conn`` is inside an open transaction."""

    dialect: str

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @abstractmethod
    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[R]) -> list[R]:
        """Insert rows whose key is not yet present; return exactly the rows inserted."""

    @abstractmethod
    def stored_state(
        self,
        orphan_traces: set[tuple[str, str]],
        external: set[tuple[str, str, str]],
        exec_traces: set[tuple[str, str]],
        window: tuple[datetime, datetime],
    ) -> StoredState:
        """What the database holds that assembly needs (see ``assemble.needs_lookup``)."""

    @abstractmethod
    def adopt(self, adoptions: list[Adoption]) -> None:
        """Set ``execution_id`` and ``agent_id`` on stored orphan steps."""

    @abstractmethod
    def adopt_logs(self, updates: list[LogAdoption]) -> None:
        """Set execution, agent and (if missing) user on stored orphan log rows."""

    @abstractmethod
    def upsert_agents(self, rows: list[AgentRow]) -> None:
        """Insert agents not seen before; move first/last seen of the others."""

    @abstractmethod
    def execution_totals(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        """Current rows of executions (by tenant, execution id) with the columns the totals touch:
        (started_at, agent_id, user_id, input_tokens, output_tokens, cost_usd,
        unpriced_llm_calls, llm_calls, tool_calls, model, provider, trace_id)."""

    @abstractmethod
    def step_facts(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], list[Row]]:
        """Per execution, by (tenant, trace id, execution id): (kind, model, provider, input
        tokens, output tokens, cost, priced) of each of its steps. An execution's steps are all in
        its trace, so they are found through the primary key, which begins with the trace: no
        index on the steps' execution id is kept up at every insert for this (issue 7)."""

    @abstractmethod
    def update_totals(self, updates: list[Row]) -> None:
        """Rows of (tenant, execution id, started_at, input_tokens, output_tokens, cost_usd,
        unpriced_llm_calls, llm_calls, tool_calls, model, provider)."""


_TOTAL_COLUMNS: Final = (
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_llm_calls",
    "llm_calls",
    "tool_calls",
    "model",
    "provider",
)
_STORED_STEP_SQL: Final = (
    "tenant_id, trace_id, span_id, parent_span_id, execution_id, agent_id, kind, started_at, model, provider,"
    " input_tokens, output_tokens, cost_usd"
)


def _stored_step(row: Row) -> tuple[tuple[str, str, str], StoredStep]:
    tenant, trace, span, parent, execution, agent, kind, started, model, provider, tin, tout, cost = row
    priced = cost is not None or kind != "llm" or (tin == 0 and tout == 0)
    step = StoredStep(span, parent, execution, agent, kind, started, model, provider, tin, tout, cost, priced)
    return (tenant, trace, span), step


# -- PostgreSQL -------------------------------------------------------------------------------

# What a write group needs to know of stored traces is looked up key by key: each key of the
# unnest arrays probes one index that matches every condition of its subquery (the orphan steps'
# and logs' partial indexes, the steps' primary key; executions: see ``_executions_by_trace``).
# ``CROSS JOIN LATERAL (... OFFSET 0)`` keeps the planner from flattening the probes into a join,
# which it had planned as a scan of the whole time window: a cost that grew with the day's
# partition (65 ms per group at 150,000 rows of the day, and linearly beyond), whatever the
# statistics said (issue 7).
_ORPHAN_STEPS: Final = f"""SELECT s.* FROM unnest(%(tenants)s::text[], %(traces)s::text[]) AS k(tenant_id, trace_id)
CROSS JOIN LATERAL (
  SELECT {_STORED_STEP_SQL} FROM agent_steps s
  WHERE s.execution_id IS NULL AND s.tenant_id = k.tenant_id AND s.trace_id = k.trace_id
    AND s.started_at BETWEEN %(low)s AND %(high)s OFFSET 0) s"""
_STEPS_BY_KEY: Final = f"""SELECT s.* FROM unnest(%(tenants)s::text[], %(traces)s::text[], %(spans)s::text[])
  AS k(tenant_id, trace_id, span_id)
CROSS JOIN LATERAL (
  SELECT {_STORED_STEP_SQL} FROM agent_steps s
  WHERE s.tenant_id = k.tenant_id AND s.trace_id = k.trace_id AND s.span_id = k.span_id
    AND s.started_at BETWEEN %(low)s AND %(high)s OFFSET 0) s"""
_ORPHAN_LOGS: Final = """SELECT g.* FROM unnest(%(tenants)s::text[], %(traces)s::text[]) AS k(tenant_id, trace_id)
CROSS JOIN LATERAL (
  SELECT tenant_id, trace_id, span_id, log_id, "timestamp" FROM agent_logs g
  WHERE g.execution_id IS NULL AND g.tenant_id = k.tenant_id AND g.trace_id = k.trace_id
    AND g."timestamp" BETWEEN %(low)s AND %(high)s AND g.span_id IS NOT NULL OFFSET 0) g"""
_STEPS_OF_EXECUTIONS: Final = """SELECT s.* FROM unnest(%s::text[], %s::text[], %s::text[])
  AS k(tenant_id, trace_id, execution_id)
CROSS JOIN LATERAL (
  SELECT tenant_id, execution_id, kind, model, provider, input_tokens, output_tokens, cost_usd FROM agent_steps s
  WHERE s.tenant_id = k.tenant_id AND s.trace_id = k.trace_id AND s.execution_id = k.execution_id OFFSET 0) s"""
_EXECUTION_COLUMNS_BY_TRACE: Final = "tenant_id, trace_id, execution_id, agent_id, span_id, started_at"


def _executions_by_trace(partitions: Sequence[str]) -> str:
    """Executions of the given traces, probing each day's partition by name.

    Naming the partitions lets the probes leave out the time window: with it, a partition without
    statistics (a new day's, or any when autovacuum is off) gave the (tenant, started_at) index
    the same estimate as the (tenant, trace, started_at) one, and PostgreSQL took the smaller
    index and filtered every row of the window, per trace (58 s for a group of 2,500 traces over
    50,000 executions). Without the window only the trace index narrows the scan. A day at the
    edge of the window may add executions of the same traces from just outside it: harmless. The
    DEFAULT partition (far past and future) keeps the window."""
    match = "e.tenant_id = k.tenant_id AND e.trace_id = k.trace_id"
    probes = [f"SELECT {_EXECUTION_COLUMNS_BY_TRACE} FROM {name} e WHERE {match}" for name in partitions]
    probes.append(
        f"SELECT {_EXECUTION_COLUMNS_BY_TRACE} FROM agent_executions_default e"
        f" WHERE {match} AND e.started_at BETWEEN %(low)s AND %(high)s"
    )
    return (
        "SELECT e.* FROM unnest(%(tenants)s::text[], %(traces)s::text[]) AS k(tenant_id, trace_id)"
        f" CROSS JOIN LATERAL ({' UNION ALL '.join(probes)} OFFSET 0) e"
    )


def _forget_temp_tables(conn: Connection, *_args: Any) -> None:
    """A rolled-back transaction or savepoint takes the temp tables it created with it: forget
    them, so the next write on this connection creates them again (IF NOT EXISTS)."""
    try:
        ready = getattr(conn.connection.driver_connection, "_agent_otel_temp", None)
    except Exception:  # an invalidated connection: it will be replaced, with a fresh cache
        return
    if ready is not None:
        ready.clear()


def _watch_rollbacks(engine: Engine) -> None:
    if not event.contains(engine, "rollback", _forget_temp_tables):
        event.listen(engine, "rollback", _forget_temp_tables)
        event.listen(engine, "rollback_savepoint", _forget_temp_tables)


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw = conn.connection.driver_connection
        _watch_rollbacks(conn.engine)
        self._temp_ready: set[str] = getattr(self.raw, "_agent_otel_temp", set())

    def _cursor(self) -> Any:
        return self.raw.cursor()  # type: ignore[union-attr]

    def _temp(self, table: str) -> str:
        name = f"_new_{table}"
        if table not in self._temp_ready:
            with self._cursor() as cur:
                cur.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
            self._temp_ready.add(table)
            self.raw._agent_otel_temp = self._temp_ready  # type: ignore[union-attr]
        return name

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[R]) -> list[R]:
        """Nearly every row of a write group is new, so the rows are first copied straight into
        ``table`` inside a savepoint: one binary COPY, the database's own limit (issue 7). A key
        that exists already (a client retry, a duplicate within the group) makes that COPY fail
        with a unique violation; the savepoint is rolled back and the rows take the general path,
        which inserts only the new keys and says which they were. Two collectors copying the
        same keys in different orders at the same moment can deadlock: PostgreSQL aborts one,
        and the writer retries its group, which then finds the keys and takes that path."""
        if not rows:
            return []
        cols = ", ".join(_q(c) for c in columns)
        with self._cursor() as cur:
            cur.execute("SAVEPOINT agent_otel_copy")
            try:
                self._copy(cur, f"{table} ({cols})", table, columns, rows)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT agent_otel_copy")
                return self._insert_missing(cur, table, columns, key, rows)
            cur.execute("RELEASE SAVEPOINT agent_otel_copy")
        return rows

    @staticmethod
    def _copy(cur: Any, target: str, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        types = [_PG_TYPES[table][c] for c in columns]
        json_positions = [i for i, t in enumerate(types) if t == "jsonb"]
        with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            write = copy.write_row
            if json_positions:
                for row in rows:
                    values = list(row)
                    for i in json_positions:
                        if values[i] is not None:
                            values[i] = Jsonb(values[i], dumps=orjson.dumps)  # an object, not a JSON string
                    write(values)
            else:
                for row in rows:
                    write(row)

    def _insert_missing(
        self, cur: Any, table: str, columns: Sequence[str], key: Sequence[str], rows: list[R]
    ) -> list[R]:
        """Rows into a temp table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``
        in key order (concurrent collectors lock rows in the same order)."""
        temp = self._temp(table)
        cols = ", ".join(_q(c) for c in columns)
        self._copy(cur, f"{temp} ({cols})", table, columns, rows)
        keys = ", ".join(_q(k) for k in key)
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ORDER BY {keys}"
            f" ON CONFLICT DO NOTHING RETURNING {keys}"
        )
        inserted = {tuple(r) for r in cur.fetchall()}
        cur.execute(f"TRUNCATE {temp}")
        if len(inserted) == len(rows):
            return rows
        positions = [columns.index(k) for k in key]
        out = []
        for row in rows:
            k = tuple(row[i] for i in positions)
            if k in inserted:
                inserted.discard(k)  # a key twice in one group is inserted once
                out.append(row)
        return out

    def stored_state(
        self,
        orphan_traces: set[tuple[str, str]],
        external: set[tuple[str, str, str]],
        exec_traces: set[tuple[str, str]],
        window: tuple[datetime, datetime],
    ) -> StoredState:
        state = StoredState()
        window_params = {"low": window[0] - TRACE_WINDOW, "high": window[1] + TRACE_WINDOW}
        with self._cursor() as cur:
            if orphan_traces:
                tenants, traces = _unzip2(orphan_traces)
                params = {**window_params, "tenants": text_array(tenants), "traces": text_array(traces)}
                cur.execute(_ORPHAN_STEPS, params)
                state.steps.update(map(_stored_step, cur.fetchall()))
                cur.execute(_ORPHAN_LOGS, params)
                state.orphan_logs = [tuple(r) for r in cur.fetchall()]
            if external:
                tenants, traces, spans = _unzip3(external)
                keys = {"tenants": text_array(tenants), "traces": text_array(traces), "spans": text_array(spans)}
                cur.execute(_STEPS_BY_KEY, {**window_params, **keys})
                state.steps.update(map(_stored_step, cur.fetchall()))
            if exec_traces:
                tenants, traces = _unzip2(exec_traces)
                days = existing_partitions(self.conn)["agent_executions"]
                first, last = window_params["low"].date(), window_params["high"].date()
                names = [partition_name("agent_executions", day) for day in sorted(days) if first <= day <= last]
                keys = {"tenants": text_array(tenants), "traces": text_array(traces)}
                cur.execute(_executions_by_trace(names), {**window_params, **keys})
                for tenant, trace, execution, agent, span, started in cur.fetchall():
                    state.executions.setdefault((tenant, trace), []).append(
                        StoredExecution(execution, agent, span, started)
                    )
        return state

    def adopt(self, adoptions: list[Adoption]) -> None:
        if not adoptions:
            return
        with self._cursor() as cur:
            cur.execute(
                """UPDATE agent_steps s SET execution_id = a.execution_id, agent_id = a.agent_id
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])
                  AS a(tenant_id, trace_id, span_id, started_at, execution_id, agent_id)
                WHERE s.tenant_id = a.tenant_id AND s.trace_id = a.trace_id AND s.span_id = a.span_id
                  AND s.started_at = a.started_at AND s.execution_id IS NULL""",
                [
                    list(col)
                    for col in zip(*[_adoption_row(a) for a in sorted(adoptions, key=_adoption_key)], strict=True)
                ],
            )

    def adopt_logs(self, updates: list[LogAdoption]) -> None:
        if not updates:
            return
        with self._cursor() as cur:
            cur.execute(
                """UPDATE agent_logs l SET execution_id = u.execution_id,
                    agent_id = COALESCE(l.agent_id, u.agent_id), user_id = COALESCE(l.user_id, u.user_id)
                FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[])
                  AS u(tenant_id, log_id, ts, execution_id, agent_id, user_id)
                WHERE l.tenant_id = u.tenant_id AND l.log_id = u.log_id AND l."timestamp" = u.ts
                  AND l.execution_id IS NULL""",
                [list(col) for col in zip(*sorted(updates), strict=True)],
            )

    def upsert_agents(self, rows: list[AgentRow]) -> None:
        if not rows:
            return
        rows = sorted(_merge_agents(rows), key=_agent_key)
        with self._cursor() as cur:
            cur.executemany(
                """INSERT INTO agents (tenant_id, id, name, description, version, service_name,
                    first_seen_at, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (tenant_id, id) DO UPDATE SET
                    name = EXCLUDED.name,
                    description = COALESCE(EXCLUDED.description, agents.description),
                    version = COALESCE(EXCLUDED.version, agents.version),
                    service_name = COALESCE(EXCLUDED.service_name, agents.service_name),
                    first_seen_at = LEAST(agents.first_seen_at, EXCLUDED.first_seen_at),
                    last_seen_at = GREATEST(agents.last_seen_at, EXCLUDED.last_seen_at),
                    updated_at = now()
                WHERE agents.last_seen_at < EXCLUDED.last_seen_at
                   OR agents.first_seen_at > EXCLUDED.first_seen_at""",
                rows,
            )

    def execution_totals(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        tenants, ids = _unzip2(set(keys))
        if not ids:
            return {}
        with self._cursor() as cur:
            cur.execute(
                f"""SELECT tenant_id, execution_id, started_at, agent_id, user_id, {", ".join(_TOTAL_COLUMNS)},
                  trace_id
                FROM agent_executions WHERE (tenant_id, execution_id) IN
                  (SELECT * FROM unnest(%s::text[], %s::text[]))
                ORDER BY tenant_id, execution_id, started_at FOR UPDATE""",
                (tenants, ids),
            )
            return {(r[0], r[1]): tuple(r[2:]) for r in cur.fetchall()}

    def step_facts(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], list[Row]]:
        tenants, traces, ids = _unzip3(set(keys))
        out: dict[tuple[str, str], list[Row]] = {}
        if not ids:
            return out
        with self._cursor() as cur:
            cur.execute(_STEPS_OF_EXECUTIONS, (text_array(tenants), text_array(traces), text_array(ids)))
            for tenant, execution, kind, model, provider, tin, tout, cost in cur.fetchall():
                priced = cost is not None or kind != "llm" or (tin == 0 and tout == 0)
                out.setdefault((tenant, execution), []).append((kind, model, provider, tin, tout, cost, priced))
        return out

    def update_totals(self, updates: list[Row]) -> None:
        if not updates:
            return
        with self._cursor() as cur:
            cur.executemany(
                """UPDATE agent_executions SET input_tokens = %s, output_tokens = %s, cost_usd = %s,
                    unpriced_llm_calls = %s, llm_calls = %s, tool_calls = %s, model = %s, provider = %s
                WHERE tenant_id = %s AND execution_id = %s AND started_at = %s""",
                [(*u[3:], u[0], u[1], u[2]) for u in sorted(updates, key=lambda u: (u[0], u[1], u[2]))],
            )


def _unzip2(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    ordered = sorted(pairs)
    return [p[0] for p in ordered], [p[1] for p in ordered]


def _unzip3(triples: Iterable[tuple[str, str, str]]) -> tuple[list[str], list[str], list[str]]:
    ordered = sorted(triples)
    return [t[0] for t in ordered], [t[1] for t in ordered], [t[2] for t in ordered]


# Elements a text[] literal holds without quotes or escapes; NULL (any case) unquoted means NULL.
_PLAIN_ELEMENTS: Final = re.compile(r"[0-9A-Za-z_.:-]+(?:,[0-9A-Za-z_.:-]+)*")
_NULL_ELEMENT: Final = re.compile(r"(?:^|,)null(?:,|$)", re.IGNORECASE)


def text_array(values: list[str]) -> str | list[str]:
    """``values`` for a ``%s::text[]`` parameter: a literal made in one ``join`` when every element
    is a plain word (hex trace and span ids, tenant names), else the list itself. psycopg dumps a
    list element by element in Python, and the lookups of every write group pass thousands of ids
    (issue 7)."""
    joined = ",".join(values)
    plain = values and _PLAIN_ELEMENTS.fullmatch(joined) and joined.count(",") == len(values) - 1  # no comma inside
    if plain and not _NULL_ELEMENT.search(joined):
        return "{" + joined + "}"
    return values


def _adoption_key(a: Adoption) -> tuple[str, str, str]:
    return (a.tenant_id, a.trace_id, a.span_id)


def _adoption_row(a: Adoption) -> Row:
    return (a.tenant_id, a.trace_id, a.span_id, a.started_at, a.execution_id, a.agent_id)


def _agent_key(row: AgentRow) -> tuple[str, str]:
    return (row.tenant_id, row.id)


def _merge_agents(rows: list[AgentRow]) -> list[AgentRow]:
    merged: dict[tuple[str, str], AgentRow] = {}
    for row in rows:
        key = (row.tenant_id, row.id)
        seen = merged.get(key)
        if seen is None:
            merged[key] = row
        else:
            merged[key] = row._replace(
                first_seen_at=min(seen.first_seen_at, row.first_seen_at),
                last_seen_at=max(seen.last_seen_at, row.last_seen_at),
                description=row.description or seen.description,
                version=row.version or seen.version,
                service_name=row.service_name or seen.service_name,
            )
    return list(merged.values())


# -- SQLite -----------------------------------------------------------------------------------


def _sqlite_ts(value: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text form (naive UTC, always with microseconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _compiled_sqlite_ts() -> Callable[[datetime], str]:
    """The same in C, five times faster (``_spanscan.c``; test_rows.py compares them), or
    ``_sqlite_ts`` when the extension is not built."""
    try:
        from agent_otel.collector.pipeline._spanscan import sqlite_ts as compiled
    except ImportError:  # pragma: no cover - built wherever tests run
        return _sqlite_ts
    return compiled


sqlite_ts: Final = _compiled_sqlite_ts()


def sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def parse_sqlite_ts(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]

    def _convert(self, rows: Iterable[Row]) -> list[Row]:
        return [tuple(sqlite_value(v) for v in row) for row in rows]

    def _lookup(
        self,
        select: str,
        table: str,
        match: Sequence[str],
        keys: Iterable[Row],
        where: str = "",
        params: Sequence[Any] = (),
    ) -> list[Row]:
        """Rows of ``table`` whose ``match`` columns equal one of ``keys``.

        The keys go into a temp table first, and ``CROSS JOIN`` makes SQLite loop over them and
        probe ``table``'s index once per key (``(a, b) IN (VALUES ...)`` scanned the whole index
        per chunk, so ingest slowed down as the tables grew)."""
        ordered = sorted(set(keys))
        if not ordered:
            return []
        width = len(ordered[0])
        temp = f"_agent_otel_keys{width}"
        columns = ", ".join(f"k{i}" for i in range(width))
        self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} ({columns})")
        self.raw.execute(f"DELETE FROM {temp}")
        self.raw.executemany(f"INSERT INTO {temp} VALUES ({', '.join('?' * width)})", ordered)
        on = " AND ".join(f"t.{_q(column)} = k.k{i}" for i, column in enumerate(match))
        sql = f"SELECT {select} FROM {temp} k CROSS JOIN {table} t WHERE {on}" + (f" AND {where}" if where else "")
        return [tuple(r) for r in self.raw.execute(sql, params).fetchall()]

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[R]) -> list[R]:
        """As on PostgreSQL, nearly every row is new, so the rows are inserted at once; a key that
        is stored already is skipped (``ON CONFLICT DO NOTHING``: a uniqueness conflict only, a
        NOT NULL or type error still fails the write). When fewer rows went in than were given,
        the new ones are told by their rowid: above the table's largest before the insert (rowids
        only grow within the write transaction, which holds the database's one write lock).

        No savepoint, unlike PostgreSQL: SQLite copies every page first changed inside a savepoint
        to a statement journal (a temporary file, a write per page), and the write needs no
        rollback point short of the transaction: any error fails the whole transaction, which the
        writer rolls back before it isolates the request."""
        if not rows:
            return []
        converted = self._convert_for(table, columns, rows)
        insert = (
            f"INSERT INTO {table} ({', '.join(_q(c) for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT DO NOTHING"
        )
        before_rowid = self.raw.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]
        before_changes = self.raw.total_changes
        # In key order: the primary key's index is then filled front to back, each leaf page
        # changed once while it is in SQLite's cache, not spilled and read back for a later row of
        # the same transaction. Trace-keyed indexes follow the same order (derived execution ids
        # begin with the trace id). Measured: +10% at the writer's group size under load, about
        # 8,000 spans (docs/performance.md).
        positions = [columns.index(k) for k in key]
        ordered = sorted(converted, key=lambda r: tuple("" if r[i] is None else r[i] for i in positions))
        self.raw.executemany(insert, ordered)  # a NULL key still fails in the insert, as NOT NULL
        if self.raw.total_changes - before_changes == len(rows):
            return rows
        return self._inserted(table, key, positions, rows, converted, before_rowid)

    def _inserted(
        self, table: str, key: Sequence[str], positions: list[int], rows: list[R], converted: list[Row], rowid: int
    ) -> list[R]:
        """The rows of ``rows`` that the insert stored: those whose key is on a row above
        ``rowid``, each key once (a key twice in one group is stored once, the first row).
        ``positions``: where the key's columns are in a row."""
        new = {
            tuple(r)
            for r in self.raw.execute(f"SELECT {', '.join(_q(k) for k in key)} FROM {table} WHERE rowid > ?", (rowid,))
        }
        out: list[R] = []
        for original, row in zip(rows, converted, strict=True):
            k = tuple(row[i] for i in positions)
            if k in new:
                new.discard(k)
                out.append(original)
        return out

    @staticmethod
    def _convert_for(table: str, columns: Sequence[str], rows: Sequence[R]) -> list[Row]:
        """Rows as SQLite takes them: only timestamp and JSON columns need converting."""
        types = _PG_TYPES[table]
        special = [i for i, c in enumerate(columns) if types[c] in ("timestamptz", "jsonb")]
        if not special:
            return list(rows)
        out: list[Row] = []
        for row in rows:
            values = list(row)
            for i in special:
                if values[i] is not None:
                    values[i] = sqlite_value(values[i])
            out.append(tuple(values))
        return out

    def stored_state(
        self,
        orphan_traces: set[tuple[str, str]],
        external: set[tuple[str, str, str]],
        exec_traces: set[tuple[str, str]],
        window: tuple[datetime, datetime],
    ) -> StoredState:
        state = StoredState()
        low, high = sqlite_ts(window[0] - TRACE_WINDOW), sqlite_ts(window[1] + TRACE_WINDOW)
        step_columns = ", ".join(f"t.{c.strip()}" for c in _STORED_STEP_SQL.split(","))
        rows = self._lookup(
            step_columns,
            "agent_steps",
            ("tenant_id", "trace_id"),
            orphan_traces,
            "t.execution_id IS NULL AND t.started_at BETWEEN ? AND ?",
            (low, high),
        )
        rows += self._lookup(
            step_columns,
            "agent_steps",
            ("tenant_id", "trace_id", "span_id"),
            external,
            "t.started_at BETWEEN ? AND ?",
            (low, high),
        )
        for row in rows:
            key, step = _stored_step(row)
            state.steps[key] = StoredStep(
                step.span_id,
                step.parent_span_id,
                step.execution_id,
                step.agent_id,
                step.kind,
                parse_sqlite_ts(step.started_at),
                step.model,
                step.provider,
                step.input_tokens,
                step.output_tokens,
                step.cost_usd,
                step.priced,
            )
        state.orphan_logs = [
            (tenant, trace, span, log_id, parse_sqlite_ts(at))
            for tenant, trace, span, log_id, at in self._lookup(
                't.tenant_id, t.trace_id, t.span_id, t.log_id, t."timestamp"',
                "agent_logs",
                ("tenant_id", "trace_id"),
                orphan_traces,
                't.execution_id IS NULL AND t."timestamp" BETWEEN ? AND ? AND t.span_id IS NOT NULL',
                (low, high),
            )
        ]
        for tenant, trace, execution, agent, span, started in self._lookup(
            "t.tenant_id, t.trace_id, t.execution_id, t.agent_id, t.span_id, t.started_at",
            "agent_executions",
            ("tenant_id", "trace_id"),
            exec_traces,
            "t.started_at BETWEEN ? AND ?",
            (low, high),
        ):
            state.executions.setdefault((tenant, trace), []).append(
                StoredExecution(execution, agent, span, parse_sqlite_ts(started))
            )
        return state

    def adopt(self, adoptions: list[Adoption]) -> None:
        self.raw.executemany(
            "UPDATE agent_steps SET execution_id = ?, agent_id = ? WHERE tenant_id = ? AND trace_id = ?"
            " AND span_id = ? AND started_at = ? AND execution_id IS NULL",
            [
                (a.execution_id, a.agent_id, a.tenant_id, a.trace_id, a.span_id, sqlite_ts(a.started_at))
                for a in sorted(adoptions, key=_adoption_key)
            ],
        )

    def adopt_logs(self, updates: list[LogAdoption]) -> None:
        self.raw.executemany(
            "UPDATE agent_logs SET execution_id = ?, agent_id = COALESCE(agent_id, ?), user_id = COALESCE(user_id, ?)"
            ' WHERE tenant_id = ? AND log_id = ? AND "timestamp" = ? AND execution_id IS NULL',
            [(e, a, u, t, log_id, sqlite_ts(at)) for t, log_id, at, e, a, u in sorted(updates)],
        )

    def upsert_agents(self, rows: list[AgentRow]) -> None:
        ordered = sorted(_merge_agents(rows), key=_agent_key)
        self.raw.executemany(
            """INSERT INTO agents (tenant_id, id, name, description, version, service_name,
                first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (tenant_id, id) DO UPDATE SET
                name = excluded.name,
                description = COALESCE(excluded.description, agents.description),
                version = COALESCE(excluded.version, agents.version),
                service_name = COALESCE(excluded.service_name, agents.service_name),
                first_seen_at = MIN(agents.first_seen_at, excluded.first_seen_at),
                last_seen_at = MAX(agents.last_seen_at, excluded.last_seen_at),
                updated_at = CURRENT_TIMESTAMP
            WHERE agents.last_seen_at < excluded.last_seen_at OR agents.first_seen_at > excluded.first_seen_at""",
            self._convert(ordered),
        )

    def execution_totals(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        select = ", ".join(
            f"t.{c}"
            for c in ("tenant_id", "execution_id", "started_at", "agent_id", "user_id", *_TOTAL_COLUMNS, "trace_id")
        )
        rows = self._lookup(select, "agent_executions", ("tenant_id", "execution_id"), keys)
        return {(r[0], r[1]): (parse_sqlite_ts(r[2]), *r[3:]) for r in rows}

    def step_facts(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], list[Row]]:
        out: dict[tuple[str, str], list[Row]] = {}
        for tenant, execution, kind, model, provider, tin, tout, cost in self._lookup(
            "t.tenant_id, t.execution_id, t.kind, t.model, t.provider, t.input_tokens, t.output_tokens, t.cost_usd",
            "agent_steps",
            ("tenant_id", "trace_id", "execution_id"),
            keys,
        ):
            priced = cost is not None or kind != "llm" or (tin == 0 and tout == 0)
            out.setdefault((tenant, execution), []).append((kind, model, provider, tin, tout, cost, priced))
        return out

    def update_totals(self, updates: list[Row]) -> None:
        self.raw.executemany(
            "UPDATE agent_executions SET input_tokens = ?, output_tokens = ?, cost_usd = ?, unpriced_llm_calls = ?,"
            " llm_calls = ?, tool_calls = ?, model = ?, provider = ?"
            " WHERE tenant_id = ? AND execution_id = ? AND started_at = ?",
            [(*u[3:], u[0], u[1], sqlite_ts(u[2])) for u in sorted(updates, key=lambda u: (u[0], u[1], u[2]))],
        )


def store_for(conn: Connection) -> Store:
    return PostgresStore(conn) if conn.dialect.name == "postgresql" else SqliteStore(conn)
