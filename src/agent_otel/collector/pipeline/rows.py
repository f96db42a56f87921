"""Pure mapping from assembled records to table rows.

Rows are NamedTuples whose fields are the table's columns, in order. Tuples rather than dicts:
the writer streams them straight into COPY (PostgreSQL) or ``executemany`` (SQLite), and a
tuple per row is the cheapest shape for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from agent_otel.collector.pipeline.assemble import ExecutionPlan, StepPlan, Totals
from agent_otel.collector.pipeline.model import EventRecord, Feedback, LogRecordIn, SpanRecord

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ExecutionRow(NamedTuple):
    tenant_id: str
    execution_id: str
    started_at: datetime
    agent_id: str
    user_id: str | None
    status: str
    duration: int
    credits_consumed: float
    http_status: int | None
    error_code: str | None
    error_message: str | None
    input_size: int | None
    output_size: int | None
    input_type: str | None
    output_type: str | None
    response_time: int | None
    processing_time: int | None
    queue_time: int | None
    session_id: str | None
    user_agent: str | None
    ip_address: str | None
    completed_at: datetime
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    unpriced_llm_calls: int
    llm_calls: int
    tool_calls: int
    trace_id: str
    span_id: str
    parent_execution_id: str | None
    service_name: str | None
    intent: str | None
    feature: str | None
    source: str


EXECUTION_COLUMNS: Final = ExecutionRow._fields
EXECUTION_KEY: Final = ("tenant_id", "execution_id", "started_at")


class StepRow(NamedTuple):
    tenant_id: str
    trace_id: str
    span_id: str
    started_at: datetime
    parent_span_id: str | None
    execution_id: str | None
    agent_id: str | None
    kind: str
    name: str
    operation: str | None
    tool_name: str | None
    model: str | None
    provider: str | None
    status: str
    duration: int
    completed_at: datetime
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    error_type: str | None
    error_message: str | None
    input_size: int | None
    output_size: int | None
    input_type: str | None
    output_type: str | None
    streaming: bool | None
    finish_reason: str | None


STEP_COLUMNS: Final = StepRow._fields
STEP_KEY: Final = ("tenant_id", "trace_id", "span_id", "started_at")


class LogRow(NamedTuple):
    tenant_id: str
    log_id: str
    timestamp: datetime
    execution_id: str | None
    agent_id: str | None
    user_id: str | None
    trace_id: str | None
    span_id: str | None
    category: str
    level: str
    event_name: str | None
    message: str
    context: dict[str, Any] | None
    metadata: dict[str, Any] | None


LOG_COLUMNS: Final = LogRow._fields
LOG_KEY: Final = ("tenant_id", "log_id", "timestamp")


class FeedbackRow(NamedTuple):
    tenant_id: str
    feedback_id: str
    timestamp: datetime
    execution_id: str | None
    agent_id: str
    user_id: str | None
    rating: int | None
    is_favorite: bool | None
    comment: str | None


FEEDBACK_COLUMNS: Final = FeedbackRow._fields
FEEDBACK_KEY: Final = ("tenant_id", "feedback_id")


class AgentRow(NamedTuple):
    tenant_id: str
    id: str
    name: str
    description: str | None
    version: str | None
    service_name: str | None
    first_seen_at: datetime
    last_seen_at: datetime


AGENT_COLUMNS: Final = AgentRow._fields


def _ts(ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime (microsecond precision)."""
    return EPOCH + timedelta(0, 0, ns // 1000)  # positional: a fifth faster than microseconds=


def _compiled_ts() -> Callable[[int], datetime]:
    """The same in C, ten times faster (``_spanscan.c``, "timestamps"; test_rows.py compares them),
    or ``_ts`` when the extension is not built."""
    try:
        from agent_otel.collector.pipeline._spanscan import utc_datetime
    except ImportError:  # pragma: no cover - built wherever tests run
        return _ts
    return utc_datetime


ts: Final = _compiled_ts()


# Rows are built with ``tuple.__new__`` and a tuple display: a NamedTuple's own constructor is a
# Python function taking every column as an argument, which cost more than the rest of the row
# (issue 7). The displays below list every column in the class's order.
_new = tuple.__new__


def execution_row(plan: ExecutionPlan, totals: Totals) -> ExecutionRow:
    rec = plan.record
    return _new(
        ExecutionRow,
        (
            rec.tenant_id,
            plan.execution_id,
            ts(rec.start_ns),
            plan.agent_id,
            plan.user_id,
            rec.status,
            rec.duration_ms,
            rec.credits,
            rec.http_status,
            rec.error_type,
            rec.error_message,
            rec.input_size,
            rec.output_size,
            rec.input_type,
            rec.output_type,
            rec.response_time,
            rec.processing_time,
            rec.queue_time,
            plan.session_id,
            rec.user_agent,
            rec.ip_address,
            ts(rec.end_ns),
            totals.model,
            totals.provider,
            totals.input_tokens,
            totals.output_tokens,
            totals.cost_usd,
            totals.unpriced_llm_calls,
            totals.llm_calls,
            totals.tool_calls,
            rec.trace_id,
            rec.span_id,
            plan.parent_execution_id,
            rec.service_name,
            rec.intent,
            rec.feature,
            rec.source,
        ),
    )


def step_row(plan: StepPlan) -> StepRow:
    rec = plan.record
    llm = plan.kind == "llm"
    return _new(
        StepRow,
        (
            rec.tenant_id,
            rec.trace_id,
            rec.span_id,
            ts(rec.start_ns),
            rec.parent_span_id,
            plan.execution_id,
            plan.agent_id,
            plan.kind,
            rec.name,
            rec.operation,
            rec.tool_name,
            rec.model,
            rec.provider,
            rec.status,
            rec.duration_ms,
            ts(rec.end_ns),
            rec.input_tokens if llm else 0,
            rec.output_tokens if llm else 0,
            rec.cost_usd if llm else None,
            rec.error_type,
            rec.error_message,
            rec.input_size,
            rec.output_size,
            rec.input_type,
            rec.output_type,
            rec.streaming,
            rec.finish_reason,
        ),
    )


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def event_log_row(
    span: SpanRecord, index: int, event: EventRecord, execution_id: str | None, agent_id: str | None, user: str | None
) -> LogRow:
    return LogRow(
        span.tenant_id,
        _digest(span.trace_id, span.span_id, index, event.name, event.time_ns),
        ts(event.time_ns),
        execution_id,
        agent_id or span.agent_id,
        user,
        span.trace_id,
        span.span_id,
        event.category,
        event.level,
        event.name,
        event.message,
        event.context,
        {"span_name": span.name, "span_kind": span.category.value},
    )


def log_row(log: LogRecordIn, execution_id: str | None, agent_id: str | None, user: str | None) -> LogRow:
    return LogRow(
        log.tenant_id,
        log.log_id,
        ts(log.time_ns),
        execution_id,
        agent_id,
        user,
        log.trace_id,
        log.span_id,
        log.category,
        log.level,
        log.event_name,
        log.message,
        log.context,
        {"service_name": log.service_name} if log.service_name else None,
    )


def feedback_row(
    tenant_id: str,
    feedback: Feedback,
    time_ns: int,
    origin: str,
    execution_id: str | None,
    agent_id: str,
    user: str | None,
) -> FeedbackRow:
    return FeedbackRow(
        tenant_id,
        feedback.feedback_id or _digest(origin, time_ns),
        ts(time_ns),
        execution_id,
        agent_id,
        user,
        feedback.rating,
        feedback.favorite,
        feedback.comment,
    )


def agent_row(plan: ExecutionPlan) -> AgentRow:
    rec = plan.record
    seen = ts(rec.start_ns)
    return AgentRow(
        rec.tenant_id,
        plan.agent_id,
        plan.agent_name,
        rec.agent_description,
        rec.agent_version,
        rec.service_name,
        seen,
        seen,
    )


def agent_rows(plans: Iterable[ExecutionPlan]) -> list[AgentRow]:
    """One ``agent_row`` per agent for a group's executions, merged as the store merges them
    (first and last seen widened; name, description, version and service from the latest
    execution that has them), without building a row per execution: a group holds about a
    thousand executions of a few dozen agents (issue 7)."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for plan in plans:
        rec = plan.record
        key = (rec.tenant_id, plan.agent_id)
        seen = merged.get(key)
        start = rec.start_ns
        if seen is None:
            merged[key] = [
                start,
                start,
                plan.agent_name,
                rec.agent_description,
                rec.agent_version,
                rec.service_name,
            ]
            continue
        if start < seen[0]:
            seen[0] = start
        elif start > seen[1]:
            seen[1] = start
        seen[2] = plan.agent_name
        seen[3] = rec.agent_description or seen[3]
        seen[4] = rec.agent_version or seen[4]
        seen[5] = rec.service_name or seen[5]
    return [
        AgentRow(tenant, agent, name, description, version, service, ts(first), ts(last))
        for (tenant, agent), (first, last, name, description, version, service) in merged.items()
    ]
