"""The pure ingest pipeline, as one function for fuzzing: bytes -> rows, no database.

    body -> decode (protobuf or OTLP/JSON) -> normalize + sanitize -> assemble -> rows

A request may be refused (``ReceiverError``: 400/413...); otherwise every row it yields must be
storable: ids and times well formed, integers within their column types, floats finite,
strings of bounded length and free of NUL (PostgreSQL text cannot hold it) and of lone
surrogates (they cannot be encoded). Any other exception is a bug.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any, Final

from agent_otel.collector.pipeline.assemble import StoredState, assemble, totals_for
from agent_otel.collector.pipeline.model import NormalizedBatch
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.pipeline.rows import agent_row, event_log_row, execution_row, log_row, step_row
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.decode import DECODERS
from agent_otel.collector.receiver.errors import ReceiverError
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import SanitizerSettings

INT32: Final = 2**31 - 1
INT64: Final = 2**63 - 1
MAX_STRING: Final = 4096
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2600, 1, 1, tzinfo=UTC)  # 2**64 ns after 1970 is in 2554

NORMALIZER: Final = Normalizer(SpanSanitizer(SanitizerSettings()))
_LIMITS_NOW = time.time_ns()


def limits() -> Limits:
    return Limits(
        now_ns=_LIMITS_NOW, max_future_ns=86_400 * 10**9, max_age_ns=3650 * 86_400 * 10**9, max_events_per_span=32
    )


def run_pipeline(signal: str, body: bytes, encoding: str) -> list[tuple[Any, ...]] | ReceiverError:
    """Rows for a request body, or the ReceiverError it was refused with."""
    try:
        request = DECODERS[signal](body, encoding)
    except ReceiverError as exc:
        return exc
    counts = RedactionCounts()
    if signal == "traces":
        # the protobuf bytes too, as the receiver passes them: the C scanner reads them
        batch = NORMALIZER.traces(request, "default", limits(), counts, body if encoding == "protobuf" else None)
    elif signal == "logs":
        batch = NORMALIZER.logs(request, "default", limits(), counts, True)
    else:
        return []
    return rows_of(batch)


def rows_of(batch: NormalizedBatch) -> list[tuple[Any, ...]]:
    assert batch.received >= len(batch.spans) + len(batch.logs) + batch.rejected_count - batch.ignored
    asm = assemble(batch.spans, StoredState())
    steps = [step_row(plan) for plan in asm.steps]
    facts: dict[str, list[Any]] = {}
    for row in steps:
        if row.execution_id is not None:
            priced = row.cost_usd is not None or row.kind != "llm"
            facts.setdefault(row.execution_id, []).append(
                (row.kind, row.model, row.provider, row.input_tokens, row.output_tokens, row.cost_usd, priced)
            )
    rows: list[tuple[Any, ...]] = list(steps)
    for plan in asm.executions:
        rows.append(execution_row(plan, totals_for(plan.record, facts.get(plan.execution_id, ()))))
        rows.append(agent_row(plan))
    for span in batch.spans:
        for index, event in enumerate(span.events):
            rows.append(event_log_row(span, index, event, None, None, None))
    for log in batch.logs:
        rows.append(log_row(log, log.execution_id, log.agent_id, log.user_id))
    for row in rows:
        check_row(row)
    return rows


def check_value(name: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        limit = (
            INT32 if name in ("duration", "response_time", "processing_time", "queue_time", "http_status") else INT64
        )
        assert -limit <= value <= limit, (name, value)
    elif isinstance(value, float):
        assert math.isfinite(value), (name, value)
    elif isinstance(value, str):
        assert len(value) <= MAX_STRING, (name, len(value))
        assert "\x00" not in value, (name, "NUL")
        value.encode("utf-8")  # raises on lone surrogates
    elif isinstance(value, datetime):
        assert value.tzinfo is not None and EARLIEST <= value <= LATEST, (name, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_value(f"{name}.{key}", str(key))
            check_value(f"{name}.{key}", item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_value(name, item)
    else:
        raise AssertionError(f"{name}: unexpected type {type(value).__name__}")


def check_row(row: tuple[Any, ...]) -> None:
    fields = getattr(row, "_fields", None) or [str(i) for i in range(len(row))]
    for name, value in zip(fields, row, strict=True):
        check_value(name, value)
    if "trace_id" in fields:
        trace_id = row[fields.index("trace_id")]
        assert trace_id is None or (len(trace_id) == 32 and int(trace_id, 16) >= 0), trace_id
