"""Plant each corpus item in every place an OTLP request can carry it.

One trace per item, built directly as OTLP protobuf so nothing is dropped on the client side:

- resource attributes (``service.name``, ``host.name``, ``user.id``...) and the scope name/version;
- every attribute key the collector reads (``conventions.READ_KEYS``: agent, user, session, tool,
  model, provider, workflow, user agent, client address, error type, intent...), on an agent span,
  an LLM span, a tool span and a Traceloop-style span whose identity comes from its name;
- content attributes (``gen_ai.input.messages`` as nested JSON, ``input.value``, tool arguments);
- span names, status messages, ``exception`` events (type, message, stacktrace), other events
  (name and attributes), feedback events (comment, id);
- OTLP log records: string bodies, nested map bodies, attributes, event names, severity text, with
  and without a trace;
- URLs (``url.full``, ``http.url``, ``server.address``) inside attributes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agent_otel.collector.pipeline import conventions as cv
from agent_otel.semconv import FEEDBACK_COMMENT, FEEDBACK_EVENT, FEEDBACK_ID, FEEDBACK_RATING

CLASSIFYING = frozenset({"gen_ai.operation.name", "llm.request.type", cv.OPENINFERENCE_KIND, cv.TRACELOOP_KIND})
NUMERIC = frozenset((*cv.INPUT_TOKENS, *cv.OUTPUT_TOKENS))
URL_KEYS = ("url.full", "http.url", "server.address", "gen_ai.openai.api_base")
STATUS_ERROR = 2


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=value(x)) for k, x in v.items()]))
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    return AnyValue(string_value=str(v))


def attrs(mapping: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in mapping.items()]


def _ids(item_id: str) -> tuple[bytes, list[bytes]]:
    digest = hashlib.sha256(item_id.encode()).digest()
    trace_id = digest[:16]
    spans = [hashlib.sha256(digest + bytes([i])).digest()[:8] for i in range(5)]
    return trace_id, spans


def read_keys_with(text: str) -> dict[str, Any]:
    """Every key the collector reads, carrying the planted text (tokens stay numbers)."""
    out: dict[str, Any] = {}
    for key in sorted(cv.READ_KEYS):
        if key in CLASSIFYING:
            continue
        out[key] = 120 if key in NUMERIC else text
    out["gen_ai.response.finish_reasons"] = [text, "stop"]
    for key in URL_KEYS:
        out[key] = f"https://api.example.com/v1/items?q={text}"
    return out


def content_with(text: str) -> dict[str, Any]:
    nested = {"messages": [{"role": "user", "content": text, "parts": [{"type": "text", "text": text}]}]}
    return {
        "gen_ai.input.messages": json.dumps(nested),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": f"noted: {text}"}]),
        "input.value": text,
        "output.value": json.dumps({"answer": text}),
        "gen_ai.tool.call.arguments": json.dumps({"query": text, "auth": {"token": text}}),
        "gen_ai.tool.call.result": json.dumps({"rows": [text]}),
        "llm.input_messages.0.message.content": text,
        "traceloop.entity.input": json.dumps({"args": [text]}),
        "exception.stacktrace": f'File "/srv/app/agent.py", line 7\n  raise Error({text!r})',
        "custom.unknown.attribute": text,
    }


def trace_for(item: dict[str, Any], now_ns: int) -> ResourceSpans:
    """``now_ns``: this trace's own clock (distinct per item: executions that share an id, such as
    a redacted ``agent_otel.execution.id``, are then still distinct rows)."""
    text = str(item["text"])
    trace_id, (root, llm, tool, legacy, child) = _ids(str(item["id"]))
    start = now_ns - 60_000_000_000
    common = {**read_keys_with(text), **content_with(text)}
    status = Status(code=STATUS_ERROR, message=f"agent failed: {text}")
    events = [
        Span.Event(
            time_unix_nano=start + 1_000,
            name="exception",
            attributes=attrs(
                {
                    "exception.type": text if len(text) < 120 else "ValueError",
                    "exception.message": f"boom: {text}",
                    "exception.stacktrace": f"Traceback: {text}",
                }
            ),
        ),
        Span.Event(time_unix_nano=start + 2_000, name=text[:200], attributes=attrs({"message": text, "detail": text})),
        Span.Event(
            time_unix_nano=start + 3_000,
            name=FEEDBACK_EVENT,
            attributes=attrs(
                {FEEDBACK_RATING: 4, FEEDBACK_COMMENT: f"great, {text}", FEEDBACK_ID: f"{item['id']} {text}"}
            ),
        ),
    ]

    def span(span_id: bytes, parent: bytes, name: str, extra: dict[str, Any], offset: int, drop: bool = False) -> Span:
        attributes = {**common, **extra}
        if drop:  # no identity attributes: the name (and traceloop.entity.name) must be used
            for key in (*cv.AGENT_NAME, *cv.AGENT_ID, *cv.TOOL_NAME):
                attributes.pop(key, None)
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start + offset,
            end_time_unix_nano=start + offset + 5_000_000,
            attributes=attrs(attributes),
            events=events,
            status=status,
        )

    spans = [
        span(root, b"", f"invoke_agent {text}", {"gen_ai.operation.name": "invoke_agent"}, 0),
        span(llm, root, f"chat {text}", {"gen_ai.operation.name": "chat"}, 1_000_000),
        span(tool, root, f"execute_tool {text}", {"gen_ai.operation.name": "execute_tool"}, 2_000_000),
        span(child, root, f"{text}.agent", {cv.TRACELOOP_KIND: "agent"}, 3_000_000, drop=True),
        span(legacy, child, f"{text}.tool", {cv.TRACELOOP_KIND: "tool"}, 4_000_000, drop=True),
    ]
    resource = Resource(
        attributes=attrs({"service.name": text, "host.name": text, "user.id": text, "deployment.environment": text})
    )
    scope = InstrumentationScope(name=text[:200], version=text[:50])
    return ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])


def logs_for(item: dict[str, Any], now_ns: int) -> ResourceLogs:
    text = str(item["text"])
    trace_id, (root, *_rest) = _ids(str(item["id"]))
    at = now_ns - 30_000_000_000
    keys = {**read_keys_with(text), **content_with(text)}
    records = [
        LogRecord(
            time_unix_nano=at,
            severity_number=17,
            severity_text=text[:100],
            body=AnyValue(string_value=f"request failed: {text}"),
            attributes=attrs({**keys, "event.name": text[:200], "exception.message": text, "user.id": text}),
            trace_id=trace_id,
            span_id=root,
        ),
        LogRecord(
            time_unix_nano=at + 1,
            severity_number=9,
            event_name="gen_ai.user.message",
            body=value({"content": text, "nested": {"deeper": [text, {"k": text}]}}),
            attributes=attrs({"gen_ai.agent.name": text}),
            trace_id=trace_id,
            span_id=root,
        ),
        LogRecord(
            time_unix_nano=at + 2,
            severity_number=13,
            event_name=text[:200],
            body=AnyValue(string_value=text),
            attributes=attrs({"agent_otel.execution.id": text, FEEDBACK_COMMENT: text}),
        ),
        LogRecord(
            time_unix_nano=at + 3,
            event_name=FEEDBACK_EVENT,
            body=AnyValue(string_value="feedback"),
            attributes=attrs(
                {FEEDBACK_RATING: 2, FEEDBACK_COMMENT: text, FEEDBACK_ID: f"{item['id']}-log {text}", "user.id": text}
            ),
            trace_id=trace_id,
            span_id=root,
        ),
    ]
    resource = Resource(attributes=attrs({"service.name": text, "host.name": text}))
    return ResourceLogs(
        resource=resource, scope_logs=[ScopeLogs(scope=InstrumentationScope(name=text[:100]), log_records=records)]
    )


def trace_requests(items: list[dict[str, Any]], now_ns: int, per_request: int) -> list[ExportTraceServiceRequest]:
    return [
        ExportTraceServiceRequest(
            resource_spans=[
                trace_for(item, now_ns - (i + j) * 50_000_000) for j, item in enumerate(items[i : i + per_request])
            ]
        )
        for i in range(0, len(items), per_request)
    ]


def log_requests(items: list[dict[str, Any]], now_ns: int, per_request: int) -> list[ExportLogsServiceRequest]:
    return [
        ExportLogsServiceRequest(
            resource_logs=[
                logs_for(item, now_ns - (i + j) * 50_000_000) for j, item in enumerate(items[i : i + per_request])
            ]
        )
        for i in range(0, len(items), per_request)
    ]


def otlp_json(message: Any) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping with hex (not base64) trace and span ids."""
    import base64

    from google.protobuf import json_format

    data = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for key, val in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(val, str):
                    node[key] = base64.b64decode(val).hex()
                else:
                    fix(val)
        elif isinstance(node, list):
            for entry in node:
                fix(entry)

    fix(data)
    return json.dumps(data).encode()
