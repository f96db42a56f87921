"""One write group -> one database transaction.

The order is fixed so that concurrent collectors writing overlapping data take row locks in the
same order (no deadlocks) and every execution is counted exactly once:

1. read what the database holds for the group's traces (orphans, parents, executions)
2. assemble (pure): executions, steps, adoptions of stored orphans
3. insert steps (only new keys), adopt orphans
4. totals of new executions from their new and adopted steps; insert executions
5. executions that existed already but gained steps ("late") are recomputed from all their steps,
   and the change is recorded as a delta
6. logs and feedback
7. agents and the change hooks (rollups) last, inside the same transaction, with exactly what
   was inserted: those rows are shared by every group, so their locks are held briefly
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from agent_otel.collector.pipeline.assemble import (
    Assembly,
    StepFacts,
    StoredState,
    Totals,
    assemble,
    needs_lookup,
    totals_for,
)
from agent_otel.collector.pipeline.model import LogRecordIn, NormalizedBatch, SpanRecord
from agent_otel.collector.pipeline.rows import (
    EXECUTION_COLUMNS,
    EXECUTION_KEY,
    FEEDBACK_COLUMNS,
    FEEDBACK_KEY,
    LOG_COLUMNS,
    LOG_KEY,
    STEP_COLUMNS,
    STEP_KEY,
    ExecutionRow,
    FeedbackRow,
    LogRow,
    StepRow,
    agent_rows,
    event_log_row,
    execution_row,
    feedback_row,
    log_row,
    step_row,
    ts,
)
from agent_otel.collector.storage.store import LogAdoption, Store, store_for


@dataclass(frozen=True, slots=True)
class ExecutionDelta:
    """A stored execution whose totals changed because steps arrived after it."""

    tenant_id: str
    execution_id: str
    agent_id: str
    user_id: str | None
    started_at: datetime
    before: Totals
    after: Totals


@dataclass(frozen=True, slots=True)
class AdoptedStep:
    """A stored orphan step that this transaction attached to its execution."""

    tenant_id: str
    execution_id: str
    agent_id: str
    kind: str
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass(slots=True)
class ChangeSet:
    """Exactly what one transaction added: the input of rollups and span-derived metrics."""

    executions: list[ExecutionRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)
    deltas: list[ExecutionDelta] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)
    feedback: list[FeedbackRow] = field(default_factory=list)
    adopted_steps: list[AdoptedStep] = field(default_factory=list)
    ignored: int = 0

    def merge(self, other: ChangeSet) -> None:
        self.executions += other.executions
        self.steps += other.steps
        self.deltas += other.deltas
        self.logs += other.logs
        self.feedback += other.feedback
        self.adopted_steps += other.adopted_steps
        self.ignored += other.ignored


class ChangeHook(Protocol):
    """Runs inside the write transaction with what it inserted (rollups are one)."""

    def apply(self, conn: Connection, store: Store, changes: ChangeSet) -> None: ...


def _window(spans: Sequence[SpanRecord], logs: Sequence[LogRecordIn]) -> tuple[datetime, datetime]:
    times = [s.start_ns for s in spans] + [lg.time_ns for lg in logs]
    return ts(min(times)), ts(max(times))


def _facts(row: StepRow) -> StepFacts:
    priced = row.cost_usd is not None or row.kind != "llm" or (row.input_tokens == 0 and row.output_tokens == 0)
    return (row.kind, row.model, row.provider, row.input_tokens, row.output_tokens, row.cost_usd, priced)


def write_group(
    conn: Connection,
    batches: Sequence[NormalizedBatch],
    hooks: Sequence[ChangeHook],
    reconcile: tuple[set[tuple[str, str]], tuple[datetime, datetime]] | None = None,
) -> ChangeSet:
    """Write every span and log record of ``batches`` in the caller's open transaction.

    ``reconcile`` (traces, time window) adds stored traces to look at with no new spans: the
    orphan sweep uses it to adopt steps whose execution was committed by a concurrent writer."""
    store = store_for(conn)
    spans = [span for batch in batches for span in batch.spans]
    logs = [log for batch in batches for log in batch.logs]
    changes = ChangeSet()
    if not spans and not logs and not reconcile:
        return changes

    orphan_traces, external, exec_traces = needs_lookup(spans)
    for log in logs:  # OTLP log records point at spans that are usually stored already
        if log.trace_id and log.span_id:
            external.add((log.tenant_id, log.trace_id, log.span_id))
            exec_traces.add((log.tenant_id, log.trace_id))
    if reconcile is not None:
        orphan_traces |= reconcile[0]
        exec_traces |= reconcile[0]
        window = reconcile[1]
    else:
        window = _window(spans, logs)
    stored = store.stored_state(orphan_traces, external, exec_traces, window)
    asm = assemble(spans, stored)
    changes.ignored = asm.ignored

    # 3. steps and adoptions
    new_steps = store.insert_new("agent_steps", STEP_COLUMNS, STEP_KEY, [step_row(p) for p in asm.steps])
    store.adopt(asm.adoptions)
    changes.steps = new_steps
    gained: dict[tuple[str, str], list[StepFacts]] = {}
    for row in new_steps:
        if row.execution_id is not None:
            key = (row.tenant_id, row.execution_id)
            facts = gained.get(key)
            if facts is None:
                facts = gained[key] = []
            facts.append(_facts(row))
    for adoption in asm.adoptions:
        step = stored.steps[(adoption.tenant_id, adoption.trace_id, adoption.span_id)]
        gained.setdefault((adoption.tenant_id, adoption.execution_id), []).append(
            (step.kind, step.model, step.provider, step.input_tokens, step.output_tokens, step.cost_usd, step.priced)
        )
        changes.adopted_steps.append(
            AdoptedStep(
                adoption.tenant_id,
                adoption.execution_id,
                adoption.agent_id,
                step.kind,
                step.model,
                step.provider,
                step.input_tokens,
                step.output_tokens,
                step.cost_usd,
            )
        )

    # 4. executions
    rows = [
        execution_row(plan, totals_for(plan.record, gained.get((plan.record.tenant_id, plan.execution_id), ())))
        for plan in asm.executions
    ]
    changes.executions = store.insert_new("agent_executions", EXECUTION_COLUMNS, EXECUTION_KEY, rows)

    # 5. late steps: recompute the executions that existed before this transaction
    inserted = {(row.tenant_id, row.execution_id) for row in changes.executions}
    late = [key for key in gained if key not in inserted]
    if late:
        changes.deltas = _recompute(store, late)

    # 6. logs and feedback
    users = {(row.tenant_id, row.execution_id): row.user_id for row in changes.executions}
    users.update({(p.record.tenant_id, p.execution_id): p.user_id for p in asm.executions})
    log_rows, feedback_rows = _log_rows(spans, logs, asm, stored, users)
    changes.logs = store.insert_new("agent_logs", LOG_COLUMNS, LOG_KEY, log_rows)
    changes.feedback = store.insert_new("agent_feedback", FEEDBACK_COLUMNS, FEEDBACK_KEY, feedback_rows)
    log_adoptions: list[LogAdoption] = []
    for tenant, trace, span, log_id, at in stored.orphan_logs:
        execution_id, agent_id = _span_target(tenant, trace, span, asm, stored)
        if execution_id is not None:
            user = users.get((tenant, execution_id))
            log_adoptions.append((tenant, log_id, at, execution_id, agent_id or "", user))
    store.adopt_logs(log_adoptions)

    # 7. rows every group shares (agents, rollups) last: concurrent writers hold those locks only
    # for the end of their transactions
    store.upsert_agents(agent_rows(asm.executions))
    for hook in hooks:
        hook.apply(conn, store, changes)
    return changes


def _recompute(store: Store, late: list[tuple[str, str]]) -> list[ExecutionDelta]:
    current = store.execution_totals(late)
    facts = store.step_facts((tenant, row[-1], execution_id) for (tenant, execution_id), row in current.items())
    deltas: list[ExecutionDelta] = []
    updates = []
    for (tenant, execution_id), row in sorted(current.items()):
        started_at, agent_id, user_id, tin, tout, cost, unpriced, llm_calls, tool_calls, model, provider, _ = row
        before = Totals(tin, tout, cost, unpriced, llm_calls, tool_calls, model, provider)
        after = totals_for(None, facts.get((tenant, execution_id), ()))
        if after.llm_calls == 0:  # no LLM steps: the execution keeps its own figures (rule 5)
            after = Totals(tin, tout, cost, unpriced, 0, after.tool_calls, model, provider)
        if after == before:
            continue
        deltas.append(ExecutionDelta(tenant, execution_id, agent_id, user_id, started_at, before, after))
        updates.append(
            (
                tenant,
                execution_id,
                started_at,
                after.input_tokens,
                after.output_tokens,
                after.cost_usd,
                after.unpriced_llm_calls,
                after.llm_calls,
                after.tool_calls,
                after.model,
                after.provider,
            )
        )
    store.update_totals(updates)
    return deltas


def _span_target(
    tenant: str, trace: str, span: str, asm: Assembly, stored: StoredState
) -> tuple[str | None, str | None]:
    """(execution id, agent id) a span belongs to, if known by now."""
    target = asm.span_execution.get((tenant, trace, span))
    if target is not None:
        return target
    execution = stored.execution_by_span(tenant, trace, span)
    if execution is not None:
        return execution.execution_id, execution.agent_id
    step = stored.steps.get((tenant, trace, span))
    if step is not None and step.execution_id is not None:
        return step.execution_id, step.agent_id
    return None, None


def _log_rows(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecordIn],
    asm: Assembly,
    stored: StoredState,
    users: dict[tuple[str, str], str | None],
) -> tuple[list[LogRow], list[FeedbackRow]]:
    log_rows: list[LogRow] = []
    feedback_rows: list[FeedbackRow] = []
    for span in spans:
        if not span.events:
            continue
        execution_id, agent_id = _span_target(span.tenant_id, span.trace_id, span.span_id, asm, stored)
        execution_id = execution_id or span.execution_id  # e.g. feedback naming its execution
        user = users.get((span.tenant_id, execution_id)) if execution_id else span.user_id
        user = user or span.user_id
        for index, event in enumerate(span.events):
            log_rows.append(event_log_row(span, index, event, execution_id, agent_id, user))
            if event.feedback is not None:
                agent = agent_id or span.agent_id or span.service_name or "unknown"
                origin = f"{span.trace_id}:{span.span_id}:{index}"
                feedback_rows.append(
                    feedback_row(span.tenant_id, event.feedback, event.time_ns, origin, execution_id, agent, user)
                )
    for log in logs:
        execution_id, agent_id = log.execution_id, log.agent_id
        if log.trace_id and log.span_id and execution_id is None:
            execution_id, found_agent = _span_target(log.tenant_id, log.trace_id, log.span_id, asm, stored)
            agent_id = agent_id or found_agent
        user = log.user_id or (users.get((log.tenant_id, execution_id)) if execution_id else None)
        log_rows.append(log_row(log, execution_id, agent_id, user))
        if log.feedback is not None:
            agent = agent_id or log.service_name or "unknown"
            feedback_rows.append(
                feedback_row(log.tenant_id, log.feedback, log.time_ns, log.log_id, execution_id, agent, user)
            )
    return log_rows, feedback_rows
