"""The sanitizing processor and the counting exporter never raise into the application and
count what they lose; configure is idempotent and reads the standard OTEL_* variables."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agent_otel
from agent_otel.plugin import CountingSpanExporter, PluginOptions, PluginStats, SanitizingSpanProcessor

SECRET = "sk-proj-PLANTEDplantedPLANTED0123456789abcd"


class Exploding(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("downstream broke")


class Refusing(SpanExporter):
    def __init__(self, raise_instead: bool = False) -> None:
        self.raise_instead = raise_instead
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.raise_instead:
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE


def test_a_broken_downstream_is_counted_not_raised() -> None:
    stats = PluginStats()
    provider = TracerProvider()
    provider.add_span_processor(SanitizingSpanProcessor(Exploding(), stats=stats))
    with provider.get_tracer("t").start_as_current_span("work"):
        pass  # would raise at span end if the processor let it through
    assert stats.dropped_spans == 1


@pytest.mark.parametrize("raise_instead", [False, True])
def test_export_failures_are_counted_and_logged_once(raise_instead: bool, caplog: pytest.LogCaptureFixture) -> None:
    stats = PluginStats()
    inner = Refusing(raise_instead)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CountingSpanExporter(inner, stats)))
    tracer = provider.get_tracer("t")
    with caplog.at_level(logging.WARNING, logger="agent_otel.plugin"):
        for _ in range(3):
            tracer.start_span("work").end()
    assert inner.calls == 3
    assert stats.snapshot()["failed_spans"] == 3 and stats.failed_exports == 3 and stats.exported_spans == 0
    warnings = [r for r in caplog.records if "could not export" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert "1 spans lost so far" in warnings[0].getMessage()


def test_successful_exports_are_counted() -> None:
    stats = PluginStats()
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CountingSpanExporter(memory, stats)))
    provider.get_tracer("t").start_span("work").end()
    assert stats.exported_spans == 1 and stats.failed_spans == 0


def test_sanitize_reduces_every_convention_to_sizes() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SanitizingSpanProcessor(SimpleSpanProcessor(memory)))
    with provider.get_tracer("t").start_as_current_span(
        "llm",
        attributes={
            "input.value": f"prompt with {SECRET}",  # OpenInference
            "llm.output_messages.0.message.content": "the answer",
            "traceloop.entity.input": '{"args": [1]}',  # Traceloop
            "gen_ai.headers": f"{{'Authorization': 'Bearer {SECRET}'}}",
            "gen_ai.request.model": "gpt-4o-mini",
            "note": f"free text keeps its place but not {SECRET}",
        },
    ) as span:
        span.add_event("exception", {"exception.message": f"bad {SECRET}", "exception.stacktrace": "File /x.py"})
    (out,) = memory.get_finished_spans()
    attrs = dict(out.attributes)
    assert SECRET not in repr(attrs) and SECRET not in repr([dict(e.attributes) for e in out.events])
    assert "input.value" not in attrs and "gen_ai.headers" not in attrs and "traceloop.entity.input" not in attrs
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["note"].startswith("free text keeps")
    assert attrs["agent_otel.input.size"] > 0 and attrs["agent_otel.output.size"] == len("the answer")
    assert "exception.stacktrace" not in out.events[0].attributes


def test_configure_twice_returns_the_same_provider() -> None:
    agent_otel.shutdown()
    try:
        first = agent_otel.configure(exporter=InMemorySpanExporter(), set_global=False)
        assert agent_otel.configure(exporter=InMemorySpanExporter(), set_global=False) is first
    finally:
        agent_otel.shutdown()
    agent_otel.shutdown()  # and shutting down twice is harmless


def test_options_from_the_environment() -> None:
    options = PluginOptions.resolve(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "AGENT_OTEL_CAPTURE_CONTENT": "true",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    assert options.protocol == "grpc" and options.timeout == 2.5 and options.capture_content and not options.metrics
    assert PluginOptions.resolve({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, protocol="http/protobuf").protocol == (
        "http/protobuf"
    )  # arguments win
    defaults = PluginOptions.resolve({})
    assert defaults.protocol == "http/protobuf" and not defaults.capture_content and defaults.metrics
    with pytest.raises(ValueError, match="unsupported OTLP protocol"):
        PluginOptions.resolve({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ValueError, match="milliseconds"):
        PluginOptions.resolve({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})


def test_public_api() -> None:
    assert sorted(agent_otel.__all__) == sorted(
        [
            "__version__",
            "AgentRun",
            "LlmCall",
            "ToolCall",
            "agent",
            "configure",
            "current_run",
            "feedback",
            "llm",
            "shutdown",
            "stats",
            "tool",
            "user_context",
        ]
    )
    for name in agent_otel.__all__:
        assert getattr(agent_otel, name) is not None
    with pytest.raises(AttributeError):
        _ = agent_otel.not_a_thing  # type: ignore[attr-defined]
