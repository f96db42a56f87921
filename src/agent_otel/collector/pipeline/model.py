"""The records that flow between pipeline stages.

decode (OTLP protobuf) -> normalize (``SpanRecord``, ``LogRecordIn``) -> assemble (resolves
each span's execution across the batch and the database) -> rows (plain tuples for the writer).
Records hold only sanitized values: content is already reduced to size and type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Category(StrEnum):
    """What a span is, read from the conventions (see ``conventions.py``)."""

    AGENT = "agent"
    LLM = "llm"
    TOOL = "tool"
    RETRIEVAL = "retrieval"
    EMBEDDING = "embedding"
    CHAIN = "chain"
    OTHER = "span"


GENAI_CATEGORIES = frozenset(
    {Category.AGENT, Category.LLM, Category.TOOL, Category.RETRIEVAL, Category.EMBEDDING, Category.CHAIN}
)

STATUSES = ("success", "failed", "timeout", "error")


@dataclass(slots=True)
class EventRecord:
    """A span event kept as a log row (exceptions, feedback, GenAI content events as sizes)."""

    name: str
    time_ns: int
    level: str
    category: str
    message: str
    context: dict[str, Any] | None = None
    feedback: Feedback | None = None


@dataclass(slots=True)
class Feedback:
    rating: int | None
    favorite: bool | None
    comment: str | None
    feedback_id: str | None = None


@dataclass(slots=True)
class SpanRecord:
    """One normalized, sanitized span.

    The C scanner builds most records itself, filling these slots directly (``normalize._recipe``
    hands it the fields and their defaults; the normalizer refuses to start if this stops being a
    slots dataclass). A new field takes its default there, so one that ``_record`` sets needs the
    same in ``_spanscan.c``; test_spanscan.py compares the two builds."""

    tenant_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    category: Category
    name: str
    start_ns: int
    end_ns: int
    status: str
    source: str
    service_name: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    agent_description: str | None = None
    agent_version: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    execution_id: str | None = None
    operation: str | None = None
    model: str | None = None
    provider: str | None = None
    tool_name: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    priced: bool = True
    credits: float = 0.0
    queue_time: int | None = None
    processing_time: int | None = None
    response_time: int | None = None
    input_size: int | None = None
    output_size: int | None = None
    input_type: str | None = None
    output_type: str | None = None
    streaming: bool | None = None
    finish_reason: str | None = None
    user_agent: str | None = None
    ip_address: str | None = None
    intent: str | None = None
    feature: str | None = None
    workflow_name: str | None = None
    events: list[EventRecord] = field(default_factory=list)

    @property
    def duration_ms(self) -> int:
        return (self.end_ns - self.start_ns) // 1_000_000

    @property
    def is_root(self) -> bool:
        return self.parent_span_id is None


@dataclass(slots=True)
class LogRecordIn:
    """One OTLP log record, sanitized, not yet tied to an execution."""

    tenant_id: str
    log_id: str
    time_ns: int
    trace_id: str | None
    span_id: str | None
    level: str
    category: str
    event_name: str | None
    message: str
    context: dict[str, Any] | None
    service_name: str | None
    feedback: Feedback | None = None
    # set when the record names them itself (the plugin's feedback records do)
    agent_id: str | None = None
    user_id: str | None = None
    execution_id: str | None = None


@dataclass(slots=True)
class Rejection:
    """A span or record refused on its own; its neighbours go on."""

    reason: str
    count: int = 1


@dataclass(slots=True)
class NormalizedBatch:
    """What one OTLP request became after the pure stages."""

    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecordIn] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    received: int = 0

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())
