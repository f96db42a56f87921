"""The write transaction on a real database: traces split across requests, late steps,
duplicates, and the change set that rollups and metrics consume."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import Engine, text

from agent_otel.collector.pipeline.model import NormalizedBatch
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.pipeline.pricing import PriceBook, Pricer, builtin_prices
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.decode import decode_traces
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.transaction import ChangeSet, write_group
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import SanitizerSettings
from tests.otlp_helpers import encode, finished_spans

NORMALIZER = Normalizer(SpanSanitizer(SanitizerSettings()))
PRICER = Pricer(PriceBook(builtin_prices()))


def batch_of(spans: Sequence[ReadableSpan]) -> NormalizedBatch:
    limits = Limits(time.time_ns(), 86_400 * 10**9, 3650 * 86_400 * 10**9, 32)
    batch = NORMALIZER.traces(decode_traces(encode(spans), "protobuf"), "default", limits, RedactionCounts())
    PRICER.apply(batch)
    return batch


def write(engine: Engine, spans: Sequence[ReadableSpan]) -> ChangeSet:
    with engine.begin() as conn:
        return write_group(conn, [batch_of(spans)], [])


def execution_totals(engine: Engine) -> list[tuple[int, int, int, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                text("SELECT input_tokens, output_tokens, llm_calls, tool_calls FROM agent_executions")
            )
        ]


def test_children_first_then_agent_span(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(1)  # children end (and are exported) before the agent span
    agent = [s for s in spans if s.parent is None]
    children = [s for s in spans if s.parent is not None]

    first = write(engine, children)
    assert len(first.steps) == 3 and all(step.execution_id is None for step in first.steps)
    assert first.executions == []

    second = write(engine, agent)
    assert len(second.executions) == 1
    row = second.executions[0]
    assert (row.input_tokens, row.output_tokens, row.llm_calls, row.tool_calls) == (2500, 500, 2, 1)
    assert len(second.adopted_steps) == 3
    with engine.connect() as conn:
        orphans = conn.execute(text("SELECT count(*) FROM agent_steps WHERE execution_id IS NULL")).scalar_one()
    assert orphans == 0
    assert execution_totals(engine) == [(2500, 500, 2, 1)]


def test_late_step_updates_totals_and_reports_a_delta(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(1)
    late = next(s for s in spans if s.parent is not None and s.name.startswith("chat"))
    early = [s for s in spans if s is not late]

    write(engine, early)
    assert execution_totals(engine) == [(1500, 300, 1, 1)] or execution_totals(engine) == [(1000, 200, 1, 1)]
    before = execution_totals(engine)[0]

    changes = write(engine, [late])
    assert changes.executions == [] and len(changes.steps) == 1
    assert len(changes.deltas) == 1
    delta = changes.deltas[0]
    assert (delta.before.input_tokens, delta.before.llm_calls) == (before[0], 1)
    assert (delta.after.input_tokens, delta.after.output_tokens, delta.after.llm_calls) == (2500, 500, 2)
    assert delta.after.cost_usd is not None and delta.before.cost_usd is not None
    assert delta.after.cost_usd > delta.before.cost_usd
    assert execution_totals(engine) == [(2500, 500, 2, 1)]


def test_duplicates_across_and_within_groups_insert_once(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(2, fail_tool=True)
    with engine.begin() as conn:
        changes = write_group(conn, [batch_of(spans), batch_of(spans)], [])  # the same request twice in a group
    assert len(changes.executions) == 2 and len(changes.steps) == 6 and len(changes.logs) == 2
    again = write(engine, spans)
    assert again.executions == [] and again.steps == [] and again.logs == [] and again.deltas == []
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM agent_executions), (SELECT count(*) FROM agent_steps),"
                " (SELECT count(*) FROM agent_logs)"
            )
        ).one()
    assert tuple(counts) == (2, 6, 2)


def test_a_group_of_stored_and_new_spans_returns_only_the_new_rows(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """Nearly every insert is all new; when some keys are stored already, the change set (what
    rollups and metrics count) holds the new rows alone, each once."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    first, second = finished_spans(1), finished_spans(2, fail_tool=True)
    write(engine, first)
    with engine.begin() as conn:  # a retried request next to a new one, the new one twice
        changes = write_group(conn, [batch_of(first), batch_of(second), batch_of(second)], [])
    new_ids = {format(s.context.span_id, "016x") for s in second}
    assert len(changes.executions) == 2 and len(changes.steps) == 6
    assert {r.span_id for r in changes.executions} | {r.span_id for r in changes.steps} == new_ids
    with engine.connect() as conn:
        counts = conn.execute(
            text("SELECT (SELECT count(*) FROM agent_executions), (SELECT count(*) FROM agent_steps)")
        ).one()
    assert tuple(counts) == (3, 9)


def test_rows_given_out_of_key_order_are_all_stored_and_returned_as_given(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """SQLite inserts a group in key order (fewer page writes); what the caller gets back is
    still its own rows in its own order, a stored one left out, a new one not."""
    from agent_otel.collector.pipeline.rows import STEP_COLUMNS, STEP_KEY
    from agent_otel.collector.storage.store import store_for

    engine = engine_for(db_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        steps = write_group(conn, [batch_of(finished_spans(4))], []).steps
        conn.rollback()
    positions = [STEP_COLUMNS.index(k) for k in STEP_KEY]
    given = sorted(steps, key=lambda r: tuple(str(r[i]) for i in positions), reverse=True)
    with engine.begin() as conn:
        assert store_for(conn).insert_new("agent_steps", STEP_COLUMNS, STEP_KEY, given[1:2]) == given[1:2]
    with engine.begin() as conn:
        assert store_for(conn).insert_new("agent_steps", STEP_COLUMNS, STEP_KEY, given) == given[:1] + given[2:]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_steps")).scalar() == len(given) == 12


def test_a_row_the_database_refuses_fails_the_insert_not_only_a_conflict(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """Skipping stored keys must not skip a row that breaks another constraint (NOT NULL): that
    fails the write, so the writer isolates the request instead of acknowledging a lost row."""
    from agent_otel.collector.pipeline.rows import STEP_COLUMNS, STEP_KEY
    from agent_otel.collector.storage.store import store_for

    engine = engine_for(db_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        good = write_group(conn, [batch_of(finished_spans(1))], []).steps[0]
        conn.rollback()
    bad = good._replace(name=None)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=r"(?i)null"), engine.begin() as conn:
        store_for(conn).insert_new("agent_steps", STEP_COLUMNS, STEP_KEY, [good, bad])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_steps")).scalar() == 0


def test_orphan_sweep_adopts_what_a_concurrent_writer_left(
    db_url: str, engine_for: Callable[[str], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers commit one trace's children and its agent span at once: neither sees the
    other's rows. Reproduced by writing the agent span through a store whose lookup sees nothing
    (what the racing transaction saw), then swept."""
    from datetime import UTC, datetime, timedelta

    from agent_otel.collector.pipeline.assemble import StoredState
    from agent_otel.collector.storage import transaction
    from agent_otel.collector.storage.orphans import sweep_orphans
    from agent_otel.collector.storage.store import store_for

    engine = engine_for(db_url)
    migrate.upgrade(engine)
    spans = finished_spans(1)
    write(engine, [s for s in spans if s.parent is not None])  # children: orphans

    def blind_store(conn: object) -> object:
        store = store_for(conn)  # type: ignore[arg-type]
        store.stored_state = lambda *_args: StoredState()  # type: ignore[method-assign]
        return store

    monkeypatch.setattr(transaction, "store_for", blind_store)
    racing = write(engine, [s for s in spans if s.parent is None])
    monkeypatch.undo()
    assert racing.adopted_steps == [] and len(racing.executions) == 1
    assert execution_totals(engine) == [(0, 0, 0, 0)]  # the execution does not know its steps

    assert sweep_orphans(engine, []).adopted_steps == []  # too recent: within the grace period
    swept = sweep_orphans(engine, [], now=datetime.now(UTC) + timedelta(minutes=5))
    assert len(swept.adopted_steps) == 3
    assert [(d.before.llm_calls, d.after.llm_calls, d.after.input_tokens) for d in swept.deltas] == [(0, 2, 2500)]
    assert execution_totals(engine) == [(2500, 500, 2, 1)]
    again = sweep_orphans(engine, [], now=datetime.now(UTC) + timedelta(minutes=5))
    assert again.adopted_steps == [] and again.deltas == []


def test_a_group_mixing_stored_and_new_spans_inserts_only_the_new(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """PostgreSQL copies a group straight into the tables and falls back to the key-checking
    path when a key exists; either way the change set holds exactly the new rows, and the rows
    written earlier in the same transaction survive the fallback."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    stored = finished_spans(1)
    write(engine, stored)
    fresh = finished_spans(2)
    with engine.begin() as conn:
        changes = write_group(conn, [batch_of(fresh), batch_of(stored)], [])
    assert len(changes.executions) == 2 and len(changes.steps) == 6
    assert {row.trace_id for row in changes.executions} == {f"{s.context.trace_id:032x}" for s in fresh}
    later = finished_spans(1)
    after = write(engine, later)  # the next group on the same connection takes the fast path again
    assert len(after.executions) == 1 and len(after.steps) == 3
    with engine.connect() as conn:
        counts = conn.execute(
            text("SELECT (SELECT count(*) FROM agent_executions), (SELECT count(*) FROM agent_steps)")
        ).one()
    assert tuple(counts) == (4, 12)


def test_trace_lookups_probe_indexes_without_statistics(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    """A group's lookups of stored traces must not depend on planner statistics: a day's partition
    that was never analyzed (a new day, or autovacuum off) made PostgreSQL filter the whole window
    per trace. Each lookup must probe an index by trace."""
    from agent_otel.collector.storage import store as pg
    from agent_otel.collector.storage.partitions import ensure_partitions

    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    ensure_partitions(engine, 1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agent_executions (tenant_id, execution_id, started_at, agent_id, status, duration,"
                " trace_id, span_id) SELECT 'default', 'e' || i, now() - (i || ' ms')::interval, 'bot', 'success',"
                " 1, md5(i::text), 's' || i FROM generate_series(1, 20000) AS i"
            )
        )
        traces = [f"{i:032x}" for i in range(500)]
        params = {"tenants": ["default"] * 500, "traces": traces, "spans": traces}
        window = conn.execute(text("SELECT now() - interval '1 day', now() + interval '1 day'")).one()
        params |= {"low": window[0], "high": window[1]}
        days = pg.existing_partitions(conn)["agent_executions"]
        names = [pg.partition_name("agent_executions", day) for day in sorted(days)]
        raw = conn.connection.driver_connection
        for sql in (pg._executions_by_trace(names), pg._ORPHAN_STEPS, pg._STEPS_BY_KEY, pg._ORPHAN_LOGS):
            with raw.cursor() as cur:  # type: ignore[union-attr]
                cur.execute("EXPLAIN " + sql, params)
                plan = "\n".join(row[0] for row in cur.fetchall())
            assert "Seq Scan on agent_" not in plan, plan
            assert "Nested Loop" in plan, plan
        # the partition holding the 20,000 rows is probed by trace, not scanned over the window
        today = pg.partition_name("agent_executions", (window[0] + timedelta(days=1)).astimezone(UTC).date())
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute("EXPLAIN " + pg._executions_by_trace(names), params)
            probe = next(row[0] for row in cur.fetchall() if f" on {today} " in row[0])
        assert "trace_id" in probe.split(" using ")[1].split(" on ")[0], probe


def test_a_late_step_of_a_nested_agent_counts_for_that_execution_alone(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """Both executions of a nested agent share one trace, and an execution's stored steps are
    looked up through the trace (there is no index on the steps' execution id): the late step
    must change the inner execution's totals, and the outer one's must stay as they were."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.otlp_helpers import sdk_provider

    def agent(name: str) -> dict[str, str]:
        return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name, "gen_ai.agent.id": name}

    def chat(tokens: int) -> dict[str, str | int]:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": tokens,
            "gen_ai.usage.output_tokens": tokens // 10,
        }

    memory = InMemorySpanExporter()
    with sdk_provider(memory) as tracer:
        with tracer.start_as_current_span("invoke_agent outer", attributes=agent("outer")):
            with tracer.start_as_current_span("chat", attributes=chat(1000)):
                pass
            with (
                tracer.start_as_current_span("invoke_agent inner", attributes=agent("inner")),
                tracer.start_as_current_span("chat", attributes=chat(300)),
            ):
                pass
        spans = list(memory.get_finished_spans())
    late = next(s for s in spans if s.name == "chat" and (s.attributes or {}).get("gen_ai.usage.input_tokens") == 300)

    engine = engine_for(db_url)
    migrate.upgrade(engine)
    write(engine, [s for s in spans if s is not late])
    changes = write(engine, [late])
    assert [(d.agent_id, d.before.input_tokens, d.after.input_tokens) for d in changes.deltas] == [("inner", 0, 300)]
    with engine.connect() as conn:
        totals: dict[str, int] = dict(
            conn.execute(text("SELECT agent_id, input_tokens FROM agent_executions ORDER BY agent_id")).all()
        )
    assert totals == {"inner": 300, "outer": 1000}
