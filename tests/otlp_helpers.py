"""Build OTLP traffic with the real OpenTelemetry SDK, for tests.

``sdk_provider`` exports synchronously through the SDK's own OTLP exporters (HTTP or gRPC), so a
test knows the collector answered before it reads the database. ``encode`` turns finished SDK
spans into the exact request bytes the HTTP exporter would send, for tests that need to send the
same request twice or tamper with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

# Content and secrets planted in test spans: none of these may ever reach the database.
PROMPT = "Please summarise the contract for ACME Corp; my API key is sk-proj-PLANTEDplantedPLANTED0123456789abcd"
COMPLETION = "The contract renews on 2027-01-01. Contact legal at counsel@acme-corp.example"
TOOL_ARGS = '{"query": "refund policy", "password": "hunter2-PLANTED", "card": "4111 1111 1111 1111"}'
TOOL_RESULT = '{"answer": "30 days", "owner_email": "owner@acme-corp.example"}'
ERROR_MESSAGE = "upstream failed for postgres://admin:S3cretPLANTED@db.internal:5432/app from 192.168.1.77"
PLANTED = (
    PROMPT,
    COMPLETION,
    TOOL_ARGS,
    TOOL_RESULT,
    "sk-proj-PLANTEDplantedPLANTED0123456789abcd",
    "counsel@acme-corp.example",
    "owner@acme-corp.example",
    "hunter2-PLANTED",
    "4111 1111 1111 1111",
    "S3cretPLANTED",
    "192.168.1.77",
    "refund policy",
    "summarise the contract",
)


@contextmanager
def sdk_provider(exporter: SpanExporter, service: str = "test-service") -> Iterator[Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("tests")
    finally:
        provider.shutdown()


def http_exporter(endpoint: str, **kwargs: Any) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", **kwargs)


def grpc_exporter(endpoint: str, **kwargs: Any) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=True, **kwargs)


class RecordingExporter(SpanExporter):
    """Wraps an exporter and remembers each export's result (to assert on acknowledgement)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def agent_trace(
    tracer: Tracer,
    *,
    agent: str = "support-bot",
    user: str = "user-1",
    session: str = "session-1",
    fail_tool: bool = False,
) -> dict[str, str]:
    """One execution in the OpenTelemetry GenAI conventions: invoke_agent > chat + execute_tool
    + chat, with content and planted secrets on every span. Returns the ids to look for."""
    with tracer.start_as_current_span(
        f"invoke_agent {agent}",
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": f"{agent}-id",
            "gen_ai.provider.name": "openai",
            "user.id": user,
            "gen_ai.conversation.id": session,
            "gen_ai.input.messages": PROMPT,
            "gen_ai.output.messages": COMPLETION,
            "user_agent.original": "pytest-client/1.0",
            "client.address": "192.168.1.77",
            "agent_otel.credits": 3,
        },
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 200,
                "gen_ai.input.messages": PROMPT,
                "gen_ai.output.messages": COMPLETION,
                "gen_ai.response.finish_reasons": ["tool_calls"],
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool search_kb",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search_kb",
                "gen_ai.tool.call.arguments": TOOL_ARGS,
                "gen_ai.tool.call.result": TOOL_RESULT,
            },
        ) as tool_span:
            if fail_tool:
                tool_span.set_status(Status(StatusCode.ERROR, ERROR_MESSAGE))
                tool_span.set_attribute("error.type", "ConnectionError")
                tool_span.add_event(
                    "exception",
                    {
                        "exception.type": "ConnectionError",
                        "exception.message": ERROR_MESSAGE,
                        "exception.stacktrace": 'File "/home/alice/app/agent.py", line 3',
                    },
                )
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1500,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.input.messages": PROMPT,
                "gen_ai.output.messages": COMPLETION,
            },
        ):
            pass
        if fail_tool:
            root.set_status(Status(StatusCode.ERROR, ERROR_MESSAGE))
            root.set_attribute("error.type", "ConnectionError")
        ctx = root.get_span_context()
    trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return {"trace_id": trace_id, "span_id": span_id, "execution_id": f"{trace_id}-{span_id}"}


def finished_spans(count: int = 1, **kwargs: Any) -> list[ReadableSpan]:
    """Spans of ``count`` agent executions, captured in memory (not sent)."""
    memory = InMemorySpanExporter()
    with sdk_provider(memory) as tracer:
        for i in range(count):
            agent_trace(tracer, user=f"user-{i}", **kwargs)
        return list(memory.get_finished_spans())


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())
