"""Normalizer details that the end-to-end and golden tests do not pin down on their own."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_otel.collector.pipeline.model import Category
from agent_otel.collector.pipeline.normalize import Limits, Normalizer, classify_status, normalize_error_type
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import SanitizerSettings

NOW = time.time_ns()
LIMITS = Limits(NOW, 86_400 * 10**9, 30 * 86_400 * 10**9, 32)
NORMALIZER = Normalizer(SpanSanitizer(SanitizerSettings()))


def request(*spans: Span) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.resource_spans.add().scope_spans.add().spans.extend(spans)
    return message


def kv(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def agent_span(**kwargs: object) -> Span:
    return Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="invoke_agent bot",
        start_time_unix_nano=NOW - 10**9,
        end_time_unix_nano=NOW,
        attributes=[kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", "bot")],
        **kwargs,  # type: ignore[arg-type]
    )


def test_event_times_out_of_range_fall_back_to_the_span_start() -> None:
    span = agent_span(
        events=[
            Span.Event(
                name="exception",
                time_unix_nano=NOW + 10 * 365 * 86_400 * 10**9,
                attributes=[kv("exception.type", "ValueError")],
            ),
            Span.Event(name="exception", time_unix_nano=0, attributes=[kv("exception.type", "KeyError")]),
            Span.Event(name="exception", time_unix_nano=NOW - 5, attributes=[kv("exception.type", "OSError")]),
        ]
    )
    batch = NORMALIZER.traces(request(span), "default", LIMITS, RedactionCounts())
    times = [event.time_ns for event in batch.spans[0].events]
    assert times == [span.start_time_unix_nano, span.start_time_unix_nano, NOW - 5]


def test_precedence_reads_current_names_before_deprecated_ones() -> None:
    span = agent_span()
    span.attributes.extend(
        [
            kv("gen_ai.usage.prompt_tokens", 5),  # deprecated, listed first on purpose
            kv("gen_ai.usage.input_tokens", 50),
            kv("gen_ai.system", "old-provider"),
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.response.model", ""),  # empty values never win
        ]
    )
    record = NORMALIZER.traces(request(span), "default", LIMITS, RedactionCounts()).spans[0]
    assert record.category is Category.AGENT
    assert (record.input_tokens, record.provider, record.model) == (50, "openai", "gpt-4o")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<class 'openai.InternalServerError'>", "InternalServerError"),
        ("openai.RateLimitError", "RateLimitError"),
        ("RateLimitError", "RateLimitError"),
        ("500", "500"),
        ("timeout", "timeout"),
    ],
)
def test_error_types_are_normalized(raw: str, expected: str) -> None:
    assert normalize_error_type(raw) == expected


@pytest.mark.parametrize(
    ("is_error", "error_type", "http_status", "override", "status"),
    [
        (False, None, None, None, "success"),
        (True, "RateLimitError", 429, None, "failed"),
        (True, "BadRequestError", None, None, "failed"),
        (True, "TimeoutError", None, None, "timeout"),
        (True, "InternalServerError", 504, None, "timeout"),
        (True, "InternalServerError", 500, None, "error"),
        (True, "ValueError", None, "failed", "failed"),
        (False, None, None, "timeout", "timeout"),
    ],
)
def test_status_classification(
    is_error: bool, error_type: str | None, http_status: int | None, override: str | None, status: str
) -> None:
    assert classify_status(is_error, error_type, http_status, override) == status


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # the plugin's derived id; its span id is also a Luhn-valid Visa number
        ("0123456789abcdef0123456789abcdef-4111111111111111",) * 2,
        ("b844483652072186" + "0" * 16 + "-b844483652072186",) * 2,
        # any other id is scrubbed like a name
        ("run-4111111111111111", "run-[CARD]"),
        ("exec for dana@example.com", "exec for [EMAIL]"),
    ],
)
def test_execution_ids_in_the_derived_form_are_kept_others_are_scrubbed(sent: str, stored: str) -> None:
    span = agent_span()
    span.attributes.append(kv("agent_otel.execution.id", sent))
    record = NORMALIZER.traces(request(span), "default", LIMITS, RedactionCounts()).spans[0]
    assert record.execution_id == stored


@pytest.mark.parametrize("compiled", [True, False])
def test_numbers_sent_as_text_with_non_ascii_digits_are_ignored(compiled: bool) -> None:
    # "²" is a digit to str.isdigit() but not to int(): it used to fail the whole request
    span = agent_span()
    span.attributes.extend([kv("agent_otel.input.size", "²"), kv("gen_ai.usage.input_tokens", "١٢")])
    message = request(span)
    normalizer = Normalizer(SpanSanitizer(SanitizerSettings()), compiled=compiled)
    batch = normalizer.traces(message, "default", LIMITS, RedactionCounts(), message.SerializeToString())
    assert batch.spans[0].input_size is None
    assert batch.spans[0].input_tokens == 0
