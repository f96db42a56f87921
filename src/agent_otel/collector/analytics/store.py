"""Rollup reads and writes on one open connection, per dialect.

Concurrency (PostgreSQL). Every transaction takes rollup locks in one global order, table by
table and key by key in sorted order, so concurrent writers (writer threads, collectors) never
deadlock on them; ``agent-otel rollups rebuild`` locks the tables in the same order:
1. ``user_agent_interactions``: one additive upsert (``INSERT ... SELECT ... ORDER BY key ON
   CONFLICT DO UPDATE``) sums each pair's executions; it locks every touched pair.
2. ``agent_metric_users``: a user row belongs to one pair, so the pair locks of step 1 make
   this transaction the only writer of the rows it checks: rows found missing are inserted by
   binary COPY (no ON CONFLICT; a savepoint falls back to ``ON CONFLICT DO NOTHING RETURNING`` if
   a row appeared anyway, e.g. one written by hand), and exactly the inserted rows are counted.
3. ``agent_metrics`` and 4. ``usage_daily``: read, merged in Python and written back, so they
   are locked between the read and the write: missing rows are created empty (``INSERT ... ON
   CONFLICT DO NOTHING``), then every row is locked with ``SELECT ... FOR UPDATE``, both in key
   order; the merged rows are written by an upsert on the primary key.
5. ``agents``: additive upserts (applied to the latest committed row).

Plans. Statements must not depend on planner statistics (a rollup table grows from nothing
under load, long before autovacuum analyzes it; a stale plan once cost 700 ms per group):
key lookups are ``unnest(keys) CROSS JOIN LATERAL (... WHERE key = k LIMIT 1)``, which can only
run as one index probe per key, and every secondary index of a rollup table holds the whole
primary key (0002_analytics), so whichever index is picked the probe is exact; writes go
through ``ON CONFLICT`` on the primary key.

Statements per group: interactions 2 (COPY, upsert; +3 with feedback), unique users 1 to 3 probes
and 3 for the COPY (savepoint, COPY, release), agent_metrics 3 and usage_daily 3 (create missing,
lock, COPY) + 1 upsert each, agents 1, all set-based (never one per execution).

SQLite has one writer at a time (``BEGIN IMMEDIATE``): rows are read and upserted, and lookups
join a temp table of keys (index probes).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Final

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection

from agent_otel.collector.analytics.aggregate import FeedbackFacts, PairExecution
from agent_otel.collector.analytics.periods import utc
from agent_otel.collector.analytics.state import (
    AGENT_VALUE_COLUMNS,
    HOUR_COLUMNS,
    INTERACTION_KEY_COLUMNS,
    INTERACTION_VALUE_COLUMNS,
    JSON_COLUMNS,
    METRIC_KEY_COLUMNS,
    METRIC_VALUE_COLUMNS,
    USAGE_KEY_COLUMNS,
    USAGE_VALUE_COLUMNS,
    WEEKDAY_COLUMNS,
    AgentKey,
    AgentState,
    PairKey,
    UsageKey,
    UsageState,
    merge_usage_row,
)
from agent_otel.collector.storage.store import parse_sqlite_ts, sqlite_ts

UserRow = tuple[str, str, str, datetime, str]  # tenant, agent, period, period start, user
# tenant, agent, first seen (an agent known only from feedback is created), the change
AgentBump = tuple[str, str, datetime, AgentState]
Row = tuple[Any, ...]
Key = tuple[Any, ...]

USER_COLUMNS: Final = ("tenant_id", "agent_id", "period", "period_start", "user_id")

# PostgreSQL types of every column the rollups write (binary COPY needs them).
PG_TYPES: Final[dict[str, str]] = {
    "tenant_id": "text",
    "agent_id": "text",
    "user_id": "text",
    "period": "text",
    "period_start": "timestamptz",
    "date": "date",
    "hour": "int4",
    "total_executions": "int8",
    "successful_executions": "int8",
    "failed_executions": "int8",
    "timeout_executions": "int8",
    "error_executions": "int8",
    "sum_duration": "int8",
    "avg_duration": "float8",
    "min_duration": "int4",
    "max_duration": "int4",
    "p50_duration": "float8",
    "p95_duration": "float8",
    "p99_duration": "float8",
    "duration_sketch": "json",
    "unique_users": "int4",
    "total_credits_consumed": "float8",
    "avg_credits_per_execution": "float8",
    "input_tokens": "int8",
    "output_tokens": "int8",
    "cost_usd": "float8",
    "llm_calls": "int8",
    "tool_calls": "int8",
    "unpriced_llm_calls": "int8",
    "error_counts": "jsonb",
    "model_counts": "jsonb",
    "model_costs": "jsonb",
    "intent_counts": "jsonb",
    "first_executed_at": "timestamptz",
    "last_executed_at": "timestamptz",
    "is_favorite": "bool",
    "rating": "int4",
    "feedback": "text",
    "avg_executions_per_day": "float8",
    "preferred_time_of_day": "int4",
    "preferred_day_of_week": "int4",
    "hour_counts": "json",
    "weekday_counts": "json",
    "total_interactions": "int8",
    "successful_interactions": "int8",
    "unique_agents_used": "int4",
    "total_duration_ms": "int8",
    "total_duration_minutes": "float8",
    "total_input_tokens": "int8",
    "total_output_tokens": "int8",
    "total_cost": "float8",
    "total_credits": "float8",
    "agent_usage": "jsonb",
    "feature_usage": "jsonb",
    "vendor_usage": "jsonb",
    "model_usage": "jsonb",
    "ratings_count": "int4",
    "ratings_sum": "int4",
    "avg_satisfaction": "float8",
    **{c: "int4" for c in (*HOUR_COLUMNS, *WEEKDAY_COLUMNS)},
}


class Table:
    """A rollup table: its key and value columns (in the states' order)."""

    def __init__(self, name: str, key: Sequence[str], values: Sequence[str]) -> None:
        self.name = name
        self.key = tuple(key)
        self.values = tuple(values)
        self.columns = self.key + self.values
        self.json_positions = [i for i, c in enumerate(self.columns) if c in JSON_COLUMNS]


METRICS: Final = Table("agent_metrics", METRIC_KEY_COLUMNS, METRIC_VALUE_COLUMNS)
INTERACTIONS: Final = Table("user_agent_interactions", INTERACTION_KEY_COLUMNS, INTERACTION_VALUE_COLUMNS)
USAGE: Final = Table("usage_daily", USAGE_KEY_COLUMNS, USAGE_VALUE_COLUMNS)
USERS: Final = Table("agent_metric_users", USER_COLUMNS, ())
_FEEDBACK_SQL: Final = (
    'SELECT tenant_id, feedback_id, "timestamp", agent_id, user_id, rating, is_favorite, comment FROM agent_feedback'
)


def _q(name: str) -> str:
    return f'"{name}"' if name in ("date", "hour", "timestamp") else name


def _cols(columns: Iterable[str]) -> str:
    return ", ".join(_q(c) for c in columns)


class RollupStore(ABC):
    """Rollup primitives on a connection inside an open write transaction."""

    dialect: str

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # incremental (the hook), in its lock order
    @abstractmethod
    def upsert_interactions(self, rows: list[PairExecution]) -> dict[PairKey, int]:
        """Add executions (and create rows of feedback-only pairs, ``PairExecution`` with None
        facts) to ``user_agent_interactions``: one additive upsert summing each pair's executions,
        in key order (it locks the pairs); return each pair's total executions afterwards."""

    @abstractmethod
    def feedback_fields(self, pairs: list[PairKey]) -> dict[PairKey, tuple[bool, int | None, str | None]]:
        """(is_favorite, rating, feedback) of rows this transaction has locked already."""

    @abstractmethod
    def set_feedback_fields(self, rows: list[tuple[str, str, str, bool, int | None, str | None]]) -> None:
        """Write (tenant, user, agent, is_favorite, rating, feedback)."""

    @abstractmethod
    def feedback_of(self, pairs: list[PairKey]) -> dict[PairKey, list[FeedbackFacts]]:
        """Every stored feedback row of these (tenant, user, agent) pairs."""

    @abstractmethod
    def missing_users(self, rows: list[UserRow]) -> list[UserRow]:
        """The rows of ``rows`` that ``agent_metric_users`` does not hold (their pairs are locked)."""

    @abstractmethod
    def add_users(self, rows: list[UserRow]) -> list[UserRow]:
        """Insert rows found missing (distinct; in key order, the index's); return exactly those
        inserted (all of them, unless a row was written outside the hook)."""

    @abstractmethod
    def lock_rows(
        self, table: Table, keys: list[tuple[Any, ...]], placeholders: list[Row]
    ) -> dict[tuple[Any, ...], Row]:
        """Lock (creating them empty if missing) the rows of ``keys``; return their value columns.
        ``placeholders`` are the full key rows to create (``agent_metrics`` needs date and hour)."""

    @abstractmethod
    def write_rows(self, table: Table, rows: list[Row]) -> None:
        """Write full rows (key + values) over the rows locked by ``lock_rows``."""

    @abstractmethod
    def merge_usage(self, deltas: dict[UsageKey, UsageState]) -> None:
        """Add a transaction's ``usage_daily`` states to the stored rows (creating missing ones)."""

    @abstractmethod
    def bump_agents(self, rows: list[AgentBump]) -> None:
        """Add executions, users and ratings to agents (creating agents known only from feedback)."""

    # rebuild
    @abstractmethod
    def insert_rows(self, table: Table, rows: list[Row]) -> None:
        """Bulk insert rows known to be absent."""

    # both: exact insertion without the pair locks (rows may exist)
    @abstractmethod
    def insert_users(self, rows: list[UserRow]) -> list[UserRow]:
        """Insert (agent, period, user) rows not present yet; return exactly those inserted."""


def _load_json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    return orjson.loads(value)


# -- user_agent_interactions: one additive upsert ---------------------------------------------------

DELTA_COLUMNS: Final = (
    "tenant_id",
    "user_id",
    "agent_id",
    "total_executions",
    "successful_executions",
    "first_executed_at",
    "last_executed_at",
    *HOUR_COLUMNS,
    *WEEKDAY_COLUMNS,
)
_COUNTS: Final = (*HOUR_COLUMNS, *WEEKDAY_COLUMNS)
# the temp table of ``PairExecution`` rows: ok = succeeded, at = started_at, h/wd = UTC hour/weekday
PAIR_EXECUTION_COLUMNS: Final = ("tenant_id", "user_id", "agent_id", "ok", "at", "h", "wd")
_PAIR_EXECUTION_TYPES: Final = ("text", "text", "text", "bool", "timestamptz", "int4", "int4")


def pair_deltas_sql(source: str) -> str:
    """Each pair's delta (``DELTA_COLUMNS``) summed from ``PairExecution`` rows in ``source``:
    the database adds up the executions, Python only lists them. A feedback-only pair's row
    (facts NULL) yields zeros and NULL first/last."""
    counts = [f"count(*) FILTER (WHERE e.h = {h}) AS {c}" for h, c in enumerate(HOUR_COLUMNS)]
    counts += [f"count(*) FILTER (WHERE e.wd = {d}) AS {c}" for d, c in enumerate(WEEKDAY_COLUMNS)]
    return (
        "SELECT e.tenant_id, e.user_id, e.agent_id, count(e.at) AS total_executions,"
        " count(*) FILTER (WHERE e.ok) AS successful_executions, min(e.at) AS first_executed_at,"
        f" max(e.at) AS last_executed_at, {', '.join(counts)},"
        " min(e.h) AS only_h, min(e.wd) AS only_wd"  # the hour and weekday of a pair's only execution
        f" FROM {source} e GROUP BY e.tenant_id, e.user_id, e.agent_id"
    )


# -- usage_daily on PostgreSQL: one additive upsert, the JSON maps merged in SQL ------------------

# the temp table of a transaction's usage deltas (money as integers; maps as ``UsageState.values``)
USAGE_DELTA_COLUMNS: Final = (
    ("tenant_id", "text"),
    ("user_id", "text"),
    ("date", "date"),
    ("interactions", "int8"),
    ("successful", "int8"),
    ("agents_used", "int4"),
    ("duration_ms", "int8"),
    ("tokens_in", "int8"),
    ("tokens_out", "int8"),
    ("nanos", "int8"),
    ("micros", "int8"),
    ("agent_usage", "jsonb"),
    ("feature_usage", "jsonb"),
    ("vendor_usage", "jsonb"),
    ("model_usage", "jsonb"),
    ("ratings_count", "int4"),
    ("ratings_sum", "int4"),
)
_USAGE_FIELDS: Final = ("interactions", "input_tokens", "output_tokens")


def _add_counts_sql(column: str, new_keys: str = "") -> str:
    """``{name: n}`` maps: a subquery of the stored map with each of the delta's keys added (and,
    with ``new_keys``, that plus the number of the delta's keys the stored map did not have).
    Only executions add to these maps (one interaction each), so a count never drops to zero."""
    stored = f"coalesce(m.{column}, '{{}}')"
    added = f"e.value::int8 + coalesce(({stored} ->> e.key)::int8, 0)"
    merged = f"{stored} || coalesce(jsonb_object_agg(e.key, {added}), '{{}}')"
    if new_keys:
        merged += f", {new_keys} + count(*) FILTER (WHERE NOT {stored} ? e.key)"
    return f"SELECT {merged} FROM jsonb_each_text(EXCLUDED.{column}) e"


def _add_usage_sql(column: str) -> str:
    """``{name: {interactions, input_tokens, output_tokens, cost_usd}}`` maps: a subquery adding
    each field; cost_usd is a decimal (the JSON number of a float of nano-dollars / 1e9, exact
    below a million dollars) and numeric addition keeps it exact, as ``state._bump_json_usage``
    does with integers. Late steps subtract: an entry whose fields all reach zero is removed."""
    stored = f"coalesce(m.{column}, '{{}}')"
    sums = [
        f"(e.value ->> '{f}')::int8 + coalesce(({stored} -> e.key ->> '{f}')::int8, 0) AS {f}" for f in _USAGE_FIELDS
    ]
    sums.append(f"(e.value ->> 'cost_usd')::numeric + coalesce(({stored} -> e.key ->> 'cost_usd')::numeric, 0) AS cost")
    fields = ", ".join(f"'{f}', v.{f}" for f in _USAGE_FIELDS)
    zero = "v.interactions = 0 AND v.input_tokens = 0 AND v.output_tokens = 0 AND v.cost = 0"
    entry = f"jsonb_build_object({fields}, 'cost_usd', trim_scale(v.cost))"
    entries = f"coalesce(jsonb_object_agg(e.key, {entry}) FILTER (WHERE NOT ({zero})), '{{}}')"
    gone = f"coalesce(array_agg(e.key) FILTER (WHERE {zero}), '{{}}')"  # deleting no key copies nothing
    return (
        f"SELECT ({stored} || {entries}) - {gone}"
        f" FROM jsonb_each(EXCLUDED.{column}) e CROSS JOIN LATERAL (SELECT {', '.join(sums)}) v"
    )


def usage_upsert_sql(source: str) -> str:
    """Add a transaction's usage deltas to ``usage_daily``, in key order (it locks the rows):
    counters are added; money is summed as integers (a stored float read back as
    ``round(usd * 1e9)``, as ``state.nanos`` does); float columns are one IEEE division of
    integers, as in ``UsageState.values``; the JSON maps are merged as ``state.merge_usage_row``
    merges them, and ``unique_agents_used`` grows by the delta's agents the row did not have."""
    added = (
        "total_interactions",
        "successful_interactions",
        "total_duration_ms",
        "total_input_tokens",
        "total_output_tokens",
        "ratings_count",
        "ratings_sum",
    )
    sets = [f"{c} = m.{c} + EXCLUDED.{c}" for c in added]
    sets.append("total_duration_minutes = (m.total_duration_ms + EXCLUDED.total_duration_ms)::float8 / 60000")
    for column, scale in (("total_cost", "1e9"), ("total_credits", "1e6")):
        whole = f"round(m.{column} * {scale}::float8) + round(EXCLUDED.{column} * {scale}::float8)"
        sets.append(f"{column} = ({whole}) / {scale}::float8")
    count, total = "(m.ratings_count + EXCLUDED.ratings_count)", "(m.ratings_sum + EXCLUDED.ratings_sum)"
    sets.append(f"avg_satisfaction = CASE WHEN {count} > 0 THEN {total}::float8 / {count} END")
    agents = _add_counts_sql("agent_usage", new_keys="m.unique_agents_used")
    sets.append(f"(agent_usage, unique_agents_used) = ({agents})")
    # a transaction without features (providers, models) leaves that map as it is
    merges = (("feature_usage", _add_counts_sql), ("vendor_usage", _add_usage_sql), ("model_usage", _add_usage_sql))
    for column, merge in merges:
        sets.append(f"{column} = CASE WHEN EXCLUDED.{column} = '{{}}' THEN m.{column} ELSE ({merge(column)}) END")
    sets.append("updated_at = now()")
    return (
        f"INSERT INTO usage_daily AS m ({_cols(USAGE.columns)})"
        ' SELECT tenant_id, user_id, "date", interactions, successful, agents_used, duration_ms,'
        " duration_ms::float8 / 60000, tokens_in, tokens_out, nanos::float8 / 1e9::float8,"
        " micros::float8 / 1e6::float8, agent_usage, feature_usage, vendor_usage, model_usage, ratings_count,"
        " ratings_sum, CASE WHEN ratings_count > 0 THEN ratings_sum::float8 / ratings_count END"
        f" FROM {source} ORDER BY 1, 2, 3"
        f' ON CONFLICT (tenant_id, user_id, "date") DO UPDATE SET {", ".join(sets)}'
    )


def interaction_upsert_sql(pg: bool, source: str) -> str:
    """``INSERT ... SELECT FROM source ... ON CONFLICT DO UPDATE`` adding a delta to each row and
    recomputing the derived columns in SQL: the JSON histograms, the preferred hour and day (the
    first largest count, like ``state._argmax``) and executions per calendar day. Float results are
    one IEEE division of two integers, as in ``InteractionState.values``, so they are identical."""
    table = "user_agent_interactions"
    old = "m." if pg else f"{table}."
    new = "EXCLUDED." if pg else "excluded."

    def array(values: list[str]) -> str:
        return f"array_to_json(ARRAY[{', '.join(values)}]::int8[])" if pg else f"json_array({', '.join(values)})"

    greatest = "GREATEST" if pg else "MAX"

    def argmax(counts: list[str]) -> str:
        cases = " ".join(f"WHEN {c} THEN {i}" for i, c in enumerate(counts))
        return f"CASE {greatest}({', '.join(counts)}) {cases} END"

    def days(first: str, last: str) -> str:
        if pg:
            return f"(({last} AT TIME ZONE 'UTC')::date - ({first} AT TIME ZONE 'UTC')::date + 1)"
        return f"(CAST(julianday(substr({last}, 1, 10)) - julianday(substr({first}, 1, 10)) AS INTEGER) + 1)"

    def per_day(total: str, first: str, last: str) -> str:
        numerator = f"{total}::float8" if pg else f"CAST({total} AS REAL)"
        return f"CASE WHEN {total} > 0 THEN {numerator} / {days(first, last)} END"

    def derived(value: dict[str, str], total: str, first: str, last: str) -> list[str]:
        hours = [value[c] for c in HOUR_COLUMNS]
        weekdays = [value[c] for c in WEEKDAY_COLUMNS]
        return [
            array(hours),
            array(weekdays),
            f"CASE WHEN {total} > 0 THEN {argmax(hours)} END",
            f"CASE WHEN {total} > 0 THEN {argmax(weekdays)} END",
            per_day(total, first, last),
        ]

    derived_columns = [
        "hour_counts",
        "weekday_counts",
        "preferred_time_of_day",
        "preferred_day_of_week",
        "avg_executions_per_day",
    ]
    fresh = {c: f"t.{c}" for c in DELTA_COLUMNS}
    select = [fresh[c] for c in DELTA_COLUMNS]
    inserted = derived(fresh, "t.total_executions", "t.first_executed_at", "t.last_executed_at")
    if pg:
        # Most pairs have one execution in a transaction: their inserted histograms are one-hot
        # arrays (constants) and the rest follows. The SELECT computes a row for every pair,
        # existing or not, so this halves what pairs that only get updated cost.
        def one_hot(size: int) -> str:
            arrays = ("[" + ", ".join("1" if j == i else "0" for j in range(size)) + "]" for i in range(size))
            return ", ".join(f"'{a}'::json" for a in arrays)

        single = [
            f"(ARRAY[{one_hot(24)}])[t.only_h + 1]",
            f"(ARRAY[{one_hot(7)}])[t.only_wd + 1]",
            "t.only_h",
            "t.only_wd",
            "1.0::float8",
        ]
        inserted = [
            f"CASE WHEN t.total_executions = 1 THEN {a} ELSE {b} END" for a, b in zip(single, inserted, strict=True)
        ]
    select += inserted

    summed = {c: f"({old}{c} + {new}{c})" for c in ("total_executions", "successful_executions", *_COUNTS)}
    if pg:
        first = f"LEAST({old}first_executed_at, {new}first_executed_at)"
        last = f"GREATEST({old}last_executed_at, {new}last_executed_at)"
    else:
        first = (
            f"CASE WHEN {old}first_executed_at IS NULL THEN {new}first_executed_at"
            f" WHEN {new}first_executed_at IS NULL OR {old}first_executed_at < {new}first_executed_at"
            f" THEN {old}first_executed_at ELSE {new}first_executed_at END"
        )
        last = (
            f"CASE WHEN {old}last_executed_at IS NULL THEN {new}last_executed_at"
            f" WHEN {new}last_executed_at IS NULL OR {old}last_executed_at > {new}last_executed_at"
            f" THEN {old}last_executed_at ELSE {new}last_executed_at END"
        )
    sets = [f"{c} = {summed[c]}" for c in ("total_executions", "successful_executions", *_COUNTS)]
    sets += [f"first_executed_at = {first}", f"last_executed_at = {last}"]
    values = derived(summed, summed["total_executions"], f"({first})", f"({last})")
    sets += [f"{c} = {v}" for c, v in zip(derived_columns, values, strict=True)]
    sets.append("updated_at = " + ("now()" if pg else "CURRENT_TIMESTAMP"))
    alias = " AS m" if pg else ""
    where = "" if pg else " WHERE true"  # SQLite: an upsert after SELECT needs a WHERE clause
    return (
        f"INSERT INTO {table}{alias} ({', '.join([*DELTA_COLUMNS, *derived_columns])})"
        f" SELECT {', '.join(select)} FROM {source} t{where} ORDER BY 1, 2, 3"
        f" ON CONFLICT (tenant_id, user_id, agent_id) DO UPDATE SET {', '.join(sets)}"
        " RETURNING tenant_id, user_id, agent_id, total_executions"
    )


# -- PostgreSQL -------------------------------------------------------------------------------------


class PostgresRollupStore(RollupStore):
    dialect = "postgresql"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw: Any = conn.connection.driver_connection

    def _temp(self, name: str, columns: str) -> None:
        # Created (if missing) on every use, never remembered: a temp table created inside a
        # savepoint that rolls back (the writer isolating a bad span) disappears with it. Rows are
        # removed by the statement that reads them (and at commit).
        with self.raw.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS")

    def _copy(self, target: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[Row]) -> None:
        with (
            self.raw.cursor() as cur,
            cur.copy(f"COPY {target} ({_cols(columns)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            if "jsonb" in types or "json" in types:
                set_json_dumps(orjson.dumps, cur)  # JSON values are dicts and lists, dumped by orjson
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def _copy_table(self, target: str, table: Table, rows: Iterable[Row]) -> None:
        self._copy(target, table.columns, [PG_TYPES[c] for c in table.columns], rows)

    @staticmethod
    def _lookup_sql(table: str, key: Sequence[str], selected: str, *, lock: bool = False, missing: bool = False) -> str:
        """One index probe per key, in the order of the key arrays (``%b`` parameters, one per key
        column): a LATERAL subquery with LIMIT cannot become a hash join over the whole table.
        ``missing``: the 1-based positions of the keys without a row instead of the rows."""
        casts = ", ".join(f"%b::{PG_TYPES[c]}[]" for c in key)
        names = ", ".join(f"k{i}" for i in range(len(key)))
        match = " AND ".join(f"m.{_q(c)} = k.k{i}" for i, c in enumerate(key))
        keys = f"unnest({casts}) WITH ORDINALITY AS k({names}, i)"
        if missing:
            probe = f"SELECT 1 AS hit FROM {table} m WHERE {match} LIMIT 1"
            return f"SELECT k.i FROM {keys} LEFT JOIN LATERAL ({probe}) x ON true WHERE x.hit IS NULL"
        probe = f"SELECT {selected} FROM {table} m WHERE {match} LIMIT 1{' FOR UPDATE' if lock else ''}"
        return f"SELECT r.* FROM {keys} CROSS JOIN LATERAL ({probe}) r"

    @staticmethod
    def _columns_of(keys: Sequence[Row]) -> list[list[Any]]:
        return [list(column) for column in zip(*keys, strict=True)]

    # -- interactions ------------------------------------------------------------------------

    def upsert_interactions(self, rows: list[PairExecution]) -> dict[PairKey, int]:
        if not rows:
            return {}
        temp = "_rollup_pair_executions"
        columns = zip(PAIR_EXECUTION_COLUMNS, _PAIR_EXECUTION_TYPES, strict=True)
        self._temp(temp, ", ".join(f"{c} {t}" for c, t in columns))
        self._copy(temp, PAIR_EXECUTION_COLUMNS, _PAIR_EXECUTION_TYPES, rows)
        with self.raw.cursor() as cur:  # the upsert reads and empties the temp table in one statement
            cur.execute(
                f"WITH d AS (DELETE FROM {temp} RETURNING *) "
                + interaction_upsert_sql(True, f"({pair_deltas_sql('d')})")
            )
            return {(t, u, a): int(n) for t, u, a, n in cur.fetchall()}

    def feedback_fields(self, pairs: list[PairKey]) -> dict[PairKey, tuple[bool, int | None, str | None]]:
        if not pairs:
            return {}
        sql = self._lookup_sql(
            "user_agent_interactions",
            INTERACTION_KEY_COLUMNS,
            "m.tenant_id, m.user_id, m.agent_id, m.is_favorite, m.rating, m.feedback",
            lock=True,
        )
        with self.raw.cursor() as cur:
            cur.execute(sql, self._columns_of(sorted(pairs)))
            return {(t, u, a): (bool(f), r, c) for t, u, a, f, r, c in cur.fetchall()}

    def set_feedback_fields(self, rows: list[tuple[str, str, str, bool, int | None, str | None]]) -> None:
        if not rows:
            return
        with self.raw.cursor() as cur:
            cur.execute(
                """UPDATE user_agent_interactions m SET is_favorite = u.f, rating = u.r, feedback = u.c,
                    updated_at = now()
                FROM unnest(%b::text[], %b::text[], %b::text[], %b::bool[], %b::int4[], %b::text[])
                    AS u(t, us, a, f, r, c)
                WHERE m.tenant_id = u.t AND m.user_id = u.us AND m.agent_id = u.a""",
                self._columns_of(sorted(rows, key=lambda r: r[:3])),
            )

    def feedback_of(self, pairs: list[PairKey]) -> dict[PairKey, list[FeedbackFacts]]:
        out: dict[PairKey, list[FeedbackFacts]] = {}
        if not pairs:
            return out
        with self.raw.cursor() as cur:
            cur.execute(
                f"{_FEEDBACK_SQL} WHERE (tenant_id, user_id, agent_id) IN"
                " (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[]))",
                self._columns_of(sorted(pairs)),
            )
            for row in cur.fetchall():
                f = FeedbackFacts(row[0], row[1], utc(row[2]), *row[3:])
                out.setdefault((f.tenant_id, f.user_id, f.agent_id), []).append(f)  # type: ignore[arg-type]
        return out

    # -- unique users ----------------------------------------------------------------------------

    def missing_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        with self.raw.cursor() as cur:
            cur.execute(self._lookup_sql("agent_metric_users", USER_COLUMNS, "", missing=True), self._columns_of(rows))
            return [rows[i - 1] for (i,) in cur.fetchall()]

    def add_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        with self.raw.cursor() as cur:
            cur.execute("SAVEPOINT agent_otel_users")
            try:
                self._copy_table("agent_metric_users", USERS, rows)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT agent_otel_users")
                cur.execute("RELEASE SAVEPOINT agent_otel_users")
                return self.insert_users(rows)
            cur.execute("RELEASE SAVEPOINT agent_otel_users")
        return rows

    def insert_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        casts = ", ".join(f"%b::{PG_TYPES[c]}[]" for c in USER_COLUMNS)
        with self.raw.cursor() as cur:
            cur.execute(
                f"INSERT INTO agent_metric_users ({_cols(USER_COLUMNS)}) SELECT * FROM unnest({casts}) AS u"
                f" ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING RETURNING {_cols(USER_COLUMNS)}",
                self._columns_of(sorted(rows)),
            )
            return [(t, a, p, utc(s), u) for t, a, p, s, u in cur.fetchall()]

    # -- rows read, merged and written back ------------------------------------------------------

    def _create_or_lock(self, table: Table, placeholders: list[Row]) -> set[tuple[Any, ...]]:
        """Create the missing rows (``placeholders``: their leading columns) and lock the others,
        in key order, in one statement (ON CONFLICT DO UPDATE locks a conflicting row even when
        its WHERE clause is false); return the keys of the rows it created."""
        holder_cols = table.columns[: len(placeholders[0])]
        casts = ", ".join(f"%b::{PG_TYPES[c]}[]" for c in holder_cols)
        order = ", ".join(str(i + 1) for i in range(len(table.key)))
        first, key = _q(table.key[0]), _cols(table.key)
        convert = _PgRows(table)
        with self.raw.cursor() as cur:
            cur.execute(
                f"INSERT INTO {table.name} AS m ({_cols(holder_cols)}) SELECT * FROM unnest({casts}) AS u"
                f" ORDER BY {order} ON CONFLICT ({key}) DO UPDATE SET {first} = EXCLUDED.{first} WHERE false"
                f" RETURNING {key}",
                self._columns_of(sorted(placeholders)),
            )
            return {convert.key(r) for r in cur.fetchall()}

    def lock_rows(
        self, table: Table, keys: list[tuple[Any, ...]], placeholders: list[Row]
    ) -> dict[tuple[Any, ...], Row]:
        if not keys:
            return {}
        created = self._create_or_lock(table, placeholders)
        found = self._read(table, table.values, [k for k in keys if k not in created])
        empty = (None,) * len(table.values)
        return {k: found.get(k, empty) for k in keys}

    def _read(self, table: Table, columns: Sequence[str], keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Row]:
        """``columns`` of the rows of ``keys`` (JSON parsed), by key."""
        if not keys:
            return {}
        selected = ", ".join(
            f"m.{_q(c)}::text AS {_q(c)}" if c in JSON_COLUMNS else f"m.{_q(c)}" for c in (*table.key, *columns)
        )
        convert = _PgRows(Table(table.name, table.key, columns))
        with self.raw.cursor() as cur:
            cur.execute(self._lookup_sql(table.name, table.key, selected), self._columns_of(keys))
            return {convert.key(r): convert.values(r) for r in cur.fetchall()}

    def merge_usage(self, deltas: dict[UsageKey, UsageState]) -> None:
        if not deltas:
            return
        rows = []
        for key, d in deltas.items():
            _n, _ok, agents_used, *_rest, agents, features, vendors, models, ratings, rating_sum, _avg = d.values()
            counts = (d.interactions, d.successful, agents_used, d.duration_ms, d.input_tokens, d.output_tokens)
            rows.append((*key, *counts, d.cost, d.credits, agents, features, vendors, models, ratings, rating_sum))
        temp = "_rollup_usage_delta"
        self._temp(temp, ", ".join(f"{_q(c)} {t}" for c, t in USAGE_DELTA_COLUMNS))
        self._copy(temp, [c for c, _t in USAGE_DELTA_COLUMNS], [t for _c, t in USAGE_DELTA_COLUMNS], rows)
        with self.raw.cursor() as cur:  # reads and empties the temp table in one statement
            cur.execute(f"WITH d AS (DELETE FROM {temp} RETURNING *) " + usage_upsert_sql("d"))

    def write_rows(self, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        temp = f"_rollup_{table.name}"
        self._temp(temp, f"LIKE {table.name} INCLUDING DEFAULTS")
        self._copy_table(temp, table, rows)
        columns = _cols(table.columns)
        sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in table.values)
        order = ", ".join(str(i + 1) for i in range(len(table.key)))
        with self.raw.cursor() as cur:  # reads and empties the temp table in one statement
            cur.execute(
                f"WITH d AS (DELETE FROM {temp} RETURNING {columns}) INSERT INTO {table.name} ({columns})"
                f" SELECT {columns} FROM d ORDER BY {order}"
                f" ON CONFLICT ({_cols(table.key)}) DO UPDATE SET {sets}, updated_at = now()"
            )

    def insert_rows(self, table: Table, rows: list[Row]) -> None:
        if rows:
            self._copy_table(table.name, table, rows)

    def bump_agents(self, rows: list[AgentBump]) -> None:
        if not rows:
            return
        ordered = sorted(rows, key=lambda r: (r[0], r[1]))
        columns = [
            [r[0] for r in ordered],
            [r[1] for r in ordered],
            [r[2] for r in ordered],
            [r[3].last_executed_at for r in ordered],
            [r[3].executions for r in ordered],
            [r[3].users for r in ordered],
            [r[3].rating_count for r in ordered],
            [r[3].rating_sum for r in ordered],
        ]
        with self.raw.cursor() as cur:
            cur.execute(
                """INSERT INTO agents AS a (tenant_id, id, name, first_seen_at, last_seen_at, last_executed_at,
                    total_executions, total_users, rating_count, rating_sum, avg_rating)
                SELECT u.t, u.id, u.id, u.seen, u.seen, u.last, u.n, u.users, u.rc, u.rs,
                       CASE WHEN u.rc > 0 THEN u.rs::float8 / u.rc END
                FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::int8[], %s::int8[],
                            %s::int8[], %s::int8[]) AS u(t, id, seen, last, n, users, rc, rs)
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, id) DO UPDATE SET
                    last_executed_at = GREATEST(a.last_executed_at, EXCLUDED.last_executed_at),
                    total_executions = a.total_executions + EXCLUDED.total_executions,
                    total_users = a.total_users + EXCLUDED.total_users,
                    rating_count = a.rating_count + EXCLUDED.rating_count,
                    rating_sum = a.rating_sum + EXCLUDED.rating_sum,
                    avg_rating = CASE WHEN a.rating_count + EXCLUDED.rating_count > 0
                        THEN (a.rating_sum + EXCLUDED.rating_sum)::float8 / (a.rating_count + EXCLUDED.rating_count)
                        END,
                    updated_at = now()""",
                columns,
            )


class _PgRows:
    """Rows read back from PostgreSQL -> the states' values: JSON text parsed, timestamps in UTC
    (they come in the session's zone); only the columns that need it are touched."""

    def __init__(self, table: Table) -> None:
        width = len(table.key)
        self.width = width
        self.times = [i for i, c in enumerate(table.key) if PG_TYPES[c] == "timestamptz"]
        self.json = [i for i, c in enumerate(table.values) if c in JSON_COLUMNS]
        self.value_times = [i for i, c in enumerate(table.values) if PG_TYPES.get(c) == "timestamptz"]

    def key(self, row: Row) -> tuple[Any, ...]:
        key = row[: self.width]
        if not self.times:
            return tuple(key)
        out = list(key)
        for i in self.times:
            out[i] = utc(out[i])
        return tuple(out)

    def values(self, row: Row) -> Row:
        values = list(row[self.width :])
        loads = orjson.loads
        for i in self.json:
            value = values[i]
            if value is not None:
                values[i] = loads(value)
        for i in self.value_times:
            if values[i] is not None:
                values[i] = utc(values[i])
        return tuple(values)


# -- SQLite -------------------------------------------------------------------------------------------


def _sqlite_in(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class _SqliteRows:
    """Converts rows for SQLite touching only the columns that need it (datetimes, dates, JSON),
    with a cache for timestamps: period starts repeat in every row of a group."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.times = [i for i, c in enumerate(columns) if c in _SQLITE_TIMESTAMPS]
        self.dates = [i for i, c in enumerate(columns) if c == "date"]
        self.json = [i for i, c in enumerate(columns) if c in JSON_COLUMNS]
        self._ts: dict[datetime, str] = {}

    def __call__(self, rows: Iterable[Row]) -> list[Row]:
        if not (self.times or self.dates or self.json):
            return [tuple(r) for r in rows]
        out = []
        cache = self._ts
        for row in rows:
            values = list(row)
            for i in self.times:
                value = values[i]
                if value is not None:
                    text_value = cache.get(value)
                    if text_value is None:
                        text_value = cache[value] = sqlite_ts(value)
                    values[i] = text_value
            for i in self.dates:
                if values[i] is not None:
                    values[i] = values[i].isoformat()
            for i in self.json:
                if values[i] is not None:
                    values[i] = orjson.dumps(values[i]).decode()
            out.append(tuple(values))
        return out


_SQLITE_TIMESTAMPS: Final = frozenset({"period_start", "first_executed_at", "last_executed_at", "at"})


class SqliteRollupStore(RollupStore):
    dialect = "sqlite"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]

    def _matching(self, table: str, key: Sequence[str], columns: Sequence[str], keys: list[Key]) -> list[Row]:
        """Rows of ``table`` whose ``key`` columns equal one of ``keys``: the keys go into a temp
        table joined on the primary key (a row-value ``IN (VALUES ...)`` would scan the table)."""
        if not keys:
            return []
        temp = f"_keys_{table}"
        self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} ({_cols(key)})")
        self.raw.execute(f"DELETE FROM {temp}")
        marks = ", ".join("?" * len(key))
        self.raw.executemany(f"INSERT INTO {temp} VALUES ({marks})", _SqliteRows(key)(keys))
        on = " AND ".join(f"m.{_q(c)} = k.{_q(c)}" for c in key)
        selected = ", ".join(f"m.{_q(c)}" for c in columns)
        rows = self.raw.execute(f"SELECT {selected} FROM {temp} k JOIN {table} m ON {on}").fetchall()
        self.raw.execute(f"DELETE FROM {temp}")
        return [tuple(r) for r in rows]

    def missing_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        existing = {
            (t, a, p, parse_sqlite_ts(s), u)
            for t, a, p, s, u in self._matching("agent_metric_users", USER_COLUMNS, USER_COLUMNS, rows)
        }
        return [r for r in rows if r not in existing]

    def add_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        self.raw.execute("SAVEPOINT agent_otel_users")
        try:
            self.insert_rows(USERS, rows)
        except sqlite3.IntegrityError:
            self.raw.execute("ROLLBACK TO SAVEPOINT agent_otel_users")
            self.raw.execute("RELEASE SAVEPOINT agent_otel_users")
            return self.insert_users(rows)
        self.raw.execute("RELEASE SAVEPOINT agent_otel_users")
        return rows

    def insert_users(self, rows: list[UserRow]) -> list[UserRow]:
        if not rows:
            return []
        ordered = sorted(set(rows))
        new = self.missing_users(ordered)
        self.insert_rows(USERS, new)
        return new

    def lock_rows(
        self, table: Table, keys: list[tuple[Any, ...]], placeholders: list[Row]
    ) -> dict[tuple[Any, ...], Row]:
        found: dict[tuple[Any, ...], Row] = {}
        for row in self._matching(table.name, table.key, table.columns, keys):
            key, values = _sqlite_row(table, row)
            found[key] = values
        empty = (None,) * len(table.values)
        for key in keys:
            if key not in found:
                found[key] = empty
        return found

    def write_rows(self, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        marks = ", ".join("?" * len(table.columns))
        sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in table.values)
        self.raw.executemany(
            f"INSERT INTO {table.name} ({_cols(table.columns)}) VALUES ({marks})"
            f" ON CONFLICT ({_cols(table.key)}) DO UPDATE SET {sets}, updated_at = CURRENT_TIMESTAMP",
            _SqliteRows(table.columns)(rows),
        )

    def insert_rows(self, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        marks = ", ".join("?" * len(table.columns))
        self.raw.executemany(
            f"INSERT INTO {table.name} ({_cols(table.columns)}) VALUES ({marks})",
            _SqliteRows(table.columns)(rows),
        )

    def merge_usage(self, deltas: dict[UsageKey, UsageState]) -> None:
        keys = sorted(deltas)
        stored = self.lock_rows(USAGE, list(keys), list(keys))
        self.write_rows(USAGE, [(*k, *merge_usage_row(stored[k], deltas[k])) for k in keys])

    def feedback_of(self, pairs: list[PairKey]) -> dict[PairKey, list[FeedbackFacts]]:
        out: dict[PairKey, list[FeedbackFacts]] = {}
        columns = ("tenant_id", "feedback_id", "timestamp", "agent_id", "user_id", "rating", "is_favorite", "comment")
        for row in self._matching("agent_feedback", ("tenant_id", "user_id", "agent_id"), columns, sorted(pairs)):
            favorite = None if row[6] is None else bool(row[6])
            f = FeedbackFacts(row[0], row[1], parse_sqlite_ts(row[2]), row[3], row[4], row[5], favorite, row[7])
            out.setdefault((f.tenant_id, f.user_id, f.agent_id), []).append(f)  # type: ignore[arg-type]
        return out

    def upsert_interactions(self, rows: list[PairExecution]) -> dict[PairKey, int]:
        if not rows:
            return {}
        temp = "_rollup_pair_executions"
        self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} ({_cols(PAIR_EXECUTION_COLUMNS)})")
        self.raw.execute(f"DELETE FROM {temp}")
        marks = ", ".join("?" * len(PAIR_EXECUTION_COLUMNS))
        self.raw.executemany(f"INSERT INTO {temp} VALUES ({marks})", _SqliteRows(PAIR_EXECUTION_COLUMNS)(rows))
        totals = self.raw.execute(interaction_upsert_sql(False, f"({pair_deltas_sql(f'temp.{temp}')})")).fetchall()
        self.raw.execute(f"DELETE FROM {temp}")
        return {(t, u, a): int(n) for t, u, a, n in totals}

    def feedback_fields(self, pairs: list[PairKey]) -> dict[PairKey, tuple[bool, int | None, str | None]]:
        columns = ("tenant_id", "user_id", "agent_id", "is_favorite", "rating", "feedback")
        rows = self._matching("user_agent_interactions", INTERACTION_KEY_COLUMNS, columns, sorted(pairs))
        return {(t, u, a): (bool(f), r, c) for t, u, a, f, r, c in rows}

    def set_feedback_fields(self, rows: list[tuple[str, str, str, bool, int | None, str | None]]) -> None:
        self.raw.executemany(
            "UPDATE user_agent_interactions SET is_favorite = ?, rating = ?, feedback = ?,"
            " updated_at = CURRENT_TIMESTAMP WHERE tenant_id = ? AND user_id = ? AND agent_id = ?",
            [(f, r, c, t, u, a) for t, u, a, f, r, c in sorted(rows, key=lambda r: r[:3])],
        )

    def bump_agents(self, rows: list[AgentBump]) -> None:
        if not rows:
            return
        params = []
        for tenant, agent, seen, s in sorted(rows, key=lambda r: (r[0], r[1])):
            last = sqlite_ts(s.last_executed_at) if s.last_executed_at is not None else None
            avg = s.rating_sum / s.rating_count if s.rating_count else None
            seen_text = sqlite_ts(seen)
            params.append((tenant, agent, agent, seen_text, seen_text, last, s.executions, s.users, *_ratings(s, avg)))
        self.raw.executemany(
            """INSERT INTO agents (tenant_id, id, name, first_seen_at, last_seen_at, last_executed_at,
                total_executions, total_users, rating_count, rating_sum, avg_rating)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (tenant_id, id) DO UPDATE SET
                last_executed_at = CASE
                    WHEN agents.last_executed_at IS NULL THEN excluded.last_executed_at
                    WHEN excluded.last_executed_at IS NULL THEN agents.last_executed_at
                    ELSE MAX(agents.last_executed_at, excluded.last_executed_at) END,
                total_executions = agents.total_executions + excluded.total_executions,
                total_users = agents.total_users + excluded.total_users,
                rating_count = agents.rating_count + excluded.rating_count,
                rating_sum = agents.rating_sum + excluded.rating_sum,
                avg_rating = CASE WHEN agents.rating_count + excluded.rating_count > 0
                    THEN CAST(agents.rating_sum + excluded.rating_sum AS REAL)
                         / (agents.rating_count + excluded.rating_count) END,
                updated_at = CURRENT_TIMESTAMP""",
            params,
        )


def _ratings(state: AgentState, avg: float | None) -> tuple[int, int, float | None]:
    return state.rating_count, state.rating_sum, avg


def _sqlite_row(table: Table, row: Row) -> tuple[tuple[Any, ...], Row]:
    key = list(row[: len(table.key)])
    values = list(row[len(table.key) :])
    for i, column in enumerate(table.key):
        if column in _SQLITE_TIMESTAMPS:
            key[i] = parse_sqlite_ts(key[i])
        elif column == "date":
            key[i] = date.fromisoformat(key[i])
    for i, column in enumerate(table.values):
        value = values[i]
        if value is None:
            continue
        if column in JSON_COLUMNS:
            values[i] = _load_json(value)
        elif column in _SQLITE_TIMESTAMPS:
            values[i] = parse_sqlite_ts(value)
        elif column == "date":
            values[i] = date.fromisoformat(value)
        elif column == "is_favorite":
            values[i] = bool(value)
    return tuple(key), tuple(values)


def rollup_store_for(conn: Connection) -> RollupStore:
    return PostgresRollupStore(conn) if conn.dialect.name == "postgresql" else SqliteRollupStore(conn)


__all__ = [
    "AGENT_VALUE_COLUMNS",
    "INTERACTIONS",
    "METRICS",
    "USAGE",
    "USERS",
    "AgentKey",
    "RollupStore",
    "Table",
    "rollup_store_for",
]


def set_agents(conn: Connection, rows: list[tuple[str, str, datetime, tuple[Any, ...]]]) -> None:
    """Rebuild: overwrite agents' computed fields (``AGENT_VALUE_COLUMNS`` values), creating
    agents known only from feedback; every other agent's computed fields are reset first."""
    is_pg = conn.dialect.name == "postgresql"
    now = "now()" if is_pg else "CURRENT_TIMESTAMP"
    conn.exec_driver_sql(
        "UPDATE agents SET last_executed_at = NULL, total_executions = 0, total_users = 0, rating_count = 0,"
        f" rating_sum = 0, avg_rating = NULL, updated_at = {now}"
        " WHERE total_executions <> 0 OR total_users <> 0 OR rating_count <> 0 OR last_executed_at IS NOT NULL"
    )
    if not rows:
        return
    mark = "%s" if is_pg else "?"
    marks = ", ".join([mark] * 11)
    excluded = "EXCLUDED" if is_pg else "excluded"
    sets = ", ".join(f"{c} = {excluded}.{c}" for c in AGENT_VALUE_COLUMNS)
    params = []
    for tenant, agent, seen, values in sorted(rows, key=lambda r: (r[0], r[1])):
        row = (tenant, agent, agent, seen, seen, *values)
        params.append(row if is_pg else tuple(_sqlite_in(v) for v in row))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(
            f"INSERT INTO agents (tenant_id, id, name, first_seen_at, last_seen_at, {', '.join(AGENT_VALUE_COLUMNS)})"
            f" VALUES ({marks}) ON CONFLICT (tenant_id, id) DO UPDATE SET {sets}, updated_at = {now}",
            params,
        )
    finally:
        cursor.close()
