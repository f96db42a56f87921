"""Hypothesis strategies for hostile OTLP: structured requests with adversarial values, and byte
mutations of real captured requests (tests/testdata/otlp).

Structured requests mix the attribute keys the collector reads (so values reach the parsing and
scrubbing code), content keys, and arbitrary keys; values of every AnyValue type, nested arrays and
maps, extreme integers, NaN and infinities, huge and empty strings, injection strings; ids of every
length; timestamps from 0 to 2**64-1; status codes outside the enum.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agent_otel.collector.pipeline import conventions as cv
from agent_otel.sanitize.keys import INPUT_KEYS, OUTPUT_KEYS
from agent_otel.semconv import FEEDBACK_COMMENT, FEEDBACK_EVENT, FEEDBACK_ID, FEEDBACK_RATING

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "otlp"
NOW_NS = 1_795_000_000 * 10**9  # 2026-11: inside the accepted window of the harness

INJECTIONS = [
    "'); DROP TABLE agent_executions; --",
    '" OR 1=1 --',
    '"}],"x":{"$ne":null}',
    "\\u0000\\\\'",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "%s%s%s%n",
    "../../../../etc/passwd",
    "\x00\x01\x1b[31m",
    "\u202e\u200b\ufeff",
    "invoke_agent ",
    ".agent",
    "<class 'x'>",
    "x" * 5000,
]
KEYS = (
    sorted(cv.READ_KEYS)
    + sorted(INPUT_KEYS)
    + sorted(OUTPUT_KEYS)
    + [
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        FEEDBACK_RATING,
        FEEDBACK_COMMENT,
        FEEDBACK_ID,
        "event.name",
        "llm.input_messages.0.message.content",
    ]
)

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(INJECTIONS),
    st.sampled_from(["invoke_agent", "chat", "execute_tool", "AGENT", "LLM", "TOOL", "agent", "tool", "workflow"]),
    st.sampled_from(["sk-proj-" + "a" * 30, "4111 1111 1111 1111", "bob@example.com", "10.1.2.3", "::1", "NaN", "-1"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**31, 2**40, 2**53 + 1, float("nan"), float("inf"), -0.0, 1e308]),
)


def any_values(depth: int = 3) -> st.SearchStrategy[AnyValue]:
    leaves = st.one_of(
        texts.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=40).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
            st.lists(st.tuples(st.sampled_from(KEYS) | texts, children), max_size=4).map(
                lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
            ),
        ),
        max_leaves=8,
    )


keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=30))
attributes = st.lists(st.builds(KeyValue, key=keys, value=any_values()), max_size=12)
ids16 = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20), st.just(b"\x00" * 16))
ids8 = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=10), st.just(b"\x00" * 8), st.just(b""))
times = st.one_of(
    st.integers(min_value=NOW_NS - 10**13, max_value=NOW_NS + 10**13),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from([0, 1, 2**63, 2**64 - 1]),
)


@st.composite
def spans(draw: st.DrawFn, trace_ids: list[bytes], span_ids: list[bytes]) -> Span:
    start = draw(times)
    end = draw(st.one_of(times, st.integers(min_value=0, max_value=10**12).map(lambda d: min(start + d, 2**64 - 1))))
    span_id = draw(st.one_of(st.sampled_from(span_ids), ids8))
    parent = draw(st.one_of(st.just(b""), st.sampled_from(span_ids), ids8))
    events = draw(
        st.lists(
            st.builds(
                Span.Event,
                time_unix_nano=times,
                name=st.one_of(st.sampled_from(["exception", FEEDBACK_EVENT, "gen_ai.choice", "x.chunk"]), texts),
                attributes=attributes,
            ),
            max_size=4,
        )
    )
    return Span(
        trace_id=draw(st.one_of(st.sampled_from(trace_ids), ids16)),
        span_id=span_id,
        parent_span_id=parent,
        name=draw(texts),
        kind=draw(st.integers(min_value=0, max_value=5)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=draw(attributes),
        events=events,
        status=Status(code=draw(st.integers(min_value=0, max_value=3)), message=draw(texts)),
    )


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    trace_ids = draw(st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=2))
    span_ids = draw(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=4))
    resource_spans = []
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        scope = InstrumentationScope(name=draw(texts), version=draw(texts))
        items = draw(st.lists(spans(trace_ids, span_ids), max_size=5))
        resource = Resource(attributes=draw(attributes))
        resource_spans.append(ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=items)]))
    return ExportTraceServiceRequest(resource_spans=resource_spans)


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    records = draw(
        st.lists(
            st.builds(
                LogRecord,
                time_unix_nano=times,
                observed_time_unix_nano=times,
                severity_number=st.integers(min_value=0, max_value=30),
                severity_text=texts,
                body=any_values(),
                attributes=attributes,
                trace_id=ids16,
                span_id=ids8,
                event_name=st.one_of(st.sampled_from([FEEDBACK_EVENT, "gen_ai.user.message", ""]), texts),
            ),
            max_size=5,
        )
    )
    resource = Resource(attributes=draw(attributes))
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )


def otlp_json(message: Any) -> bytes:
    """OTLP/JSON (hex ids), as an SDK would send it; NaN and infinities as JSON strings."""
    from google.protobuf import json_format

    data = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    fix(data)
    return json.dumps(data).encode()


def seed_bodies() -> list[tuple[str, bytes]]:
    """Real captured requests (signal, protobuf bytes) to mutate."""
    out = []
    for path in sorted(TESTDATA.glob("*/*/*.binpb")):
        signal = "traces" if "traces" in path.name else "logs" if "logs" in path.name else "metrics"
        out.append((signal, path.read_bytes()))
    return out


@st.composite
def mutated_bodies(draw: st.DrawFn, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    signal, body = draw(st.sampled_from(seeds))
    data = bytearray(body)
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "splice", "truncate"]))
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=16))]
        elif op == "splice":
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x80\x80\x80\x80", b"\x00\x00", b"\x0a\xff"])
            )
        else:
            del data[at:]
    return signal, bytes(data)
