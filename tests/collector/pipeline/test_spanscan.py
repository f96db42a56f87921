"""The C span scanner (``_spanscan.c``) against the protobuf-object walk it replaces.

The object walk (``Normalizer(compiled=False)``) is the reference: for every request protobuf
accepts, both must give the same batch (records, rejections) and the same redaction counts, or the
scanner must decline (return None) so the normalizer falls back to the object walk. The scanner
also builds the records of plain spans itself ("records" in the C file); the comparisons cover
those, and the last tests check that it does build them.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from bench.loadgen import build_bodies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agent_otel.collector.pipeline import normalize
from agent_otel.collector.pipeline.model import NormalizedBatch, SpanRecord
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.decode import decode_traces
from agent_otel.collector.receiver.errors import ReceiverError
from agent_otel.sanitize import RedactionCounts, text_type
from agent_otel.settings import SanitizerSettings
from tests.conftest import TESTDATA
from tests.hostile.strategies import NOW_NS, mutated_bodies, seed_bodies, trace_requests

LIMITS = Limits(NOW_NS, 86_400 * 10**9, 3650 * 86_400 * 10**9, 32)
OBJECTS = Normalizer(SpanSanitizer(SanitizerSettings()), compiled=False)
COMPILED = Normalizer(SpanSanitizer(SanitizerSettings()))
SEEDS = seed_bodies()

pytestmark = pytest.mark.skipif(
    not normalize.COMPILED_SCAN and os.environ.get("CI") != "true", reason="the C scanner is not built"
)


def both(body: bytes, limits: Limits = LIMITS) -> tuple[NormalizedBatch, NormalizedBatch] | None:
    """(object walk, compiled walk) of a body, with equal redaction counts; None if refused."""
    try:
        request = decode_traces(body, "protobuf")
    except ReceiverError:
        return None
    objects_counts, compiled_counts = RedactionCounts(), RedactionCounts()
    expected = OBJECTS.traces(request, "default", limits, objects_counts)
    got = COMPILED.traces(request, "default", limits, compiled_counts, body)
    assert got == expected
    assert +compiled_counts == +objects_counts
    return expected, got


def scanned(body: bytes) -> list[tuple[object, ...]] | None:
    scan = COMPILED._scan
    assert scan is not None
    return scan(body, {}, COMPILED._classify, text_type)


def test_the_scanner_is_built_under_ci() -> None:
    # under CI=true a missing compiler must fail the suite, not quietly test the fallback twice
    assert normalize.COMPILED_SCAN


def test_golden_fixtures_give_the_same_records() -> None:
    bodies = sorted(TESTDATA.glob("otlp/*/*/*-traces.binpb"))
    assert len(bodies) >= 20
    now = Limits(time.time_ns(), 10 * 365 * 86_400 * 10**9, 10 * 365 * 86_400 * 10**9, 32)
    spans = 0
    for path in bodies:
        body = path.read_bytes()
        assert scanned(body) is not None, path  # real instrumentation never needs the fallback
        result = both(body, now)
        assert result is not None
        spans += len(result[1].spans)
    assert spans > 50


def test_load_generator_traffic_gives_the_same_records() -> None:
    for body, count in build_bodies(3_000, 256, 7):
        result = both(body, Limits(time.time_ns(), 86_400 * 10**9, 86_400 * 10**9, 32))
        assert result is not None
        assert len(result[1].spans) == count


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trace_requests())
def test_hostile_requests_give_the_same_records(request: ExportTraceServiceRequest) -> None:
    both(request.SerializeToString())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies(SEEDS), st.randoms(use_true_random=False))
def test_mutated_bytes_give_the_same_records_or_are_refused(item: tuple[str, bytes], rng: random.Random) -> None:
    signal, body = item
    if signal != "traces":
        return
    both(body)
    for _ in range(20):  # cheap extra mutations of the same body: flipped, cut and repeated bytes
        data = bytearray(body)
        if data:
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
            if rng.random() < 0.3:
                del data[rng.randrange(len(data)) :]
        both(bytes(data))


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def _request(*attributes: KeyValue, service: AnyValue | None = None, **span: object) -> ExportTraceServiceRequest:
    fields: dict[str, object] = {
        "trace_id": b"\x01" * 16,
        "span_id": b"\x02" * 8,
        "name": "chat gpt-4.1",
        "start_time_unix_nano": NOW_NS - 10**9,
        "end_time_unix_nano": NOW_NS,
        **span,
    }
    resource = Resource(attributes=[KeyValue(key="service.name", value=service)] if service else [])
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[ScopeSpans(spans=[Span(attributes=list(attributes), **fields)])],  # type: ignore[arg-type]
            )
        ]
    )


def test_ranks_empty_values_and_value_kinds_match() -> None:
    body = _request(
        _kv("llm.model_name", string_value="late-rank"),
        _kv("gen_ai.request.model", string_value=""),  # empty: never wins
        _kv("gen_ai.response.model", string_value="best"),
        _kv("gen_ai.response.finish_reasons", array_value=ArrayValue(values=[AnyValue(string_value="stop")])),
        _kv("llm.finish_reason", array_value=ArrayValue()),  # empty list: skipped
        _kv("gen_ai.usage.input_tokens", int_value=-5),
        _kv("gen_ai.usage.output_tokens", double_value=12.0),
        _kv("gen_ai.request.stream", bool_value=True),
        _kv("gen_ai.conversation.id", kvlist_value=KeyValueList(values=[_kv("a", int_value=1)])),
        _kv("user.id", bytes_value=b"\x00\xff"),
        _kv("gen_ai.agent.name"),  # no value at all
        _kv("gen_ai.input.messages", string_value=' [{"role": "user"}] '),
        _kv("gen_ai.input.messages", string_value="é" * 200),  # later values: size only
        _kv("gen_ai.output.messages", double_value=float("inf")),
        _kv("gen_ai.output.messages", array_value=ArrayValue(values=[AnyValue(int_value=1)] * 100)),
        service=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="svc")])),
        status=Status(code=Status.STATUS_CODE_ERROR, message="Error code: 429 - slow down"),
    ).SerializeToString()
    result = both(body)
    assert result is not None
    record = result[1].spans[0]
    assert record.model == "best"
    assert record.finish_reason == "stop"
    assert record.streaming is True
    assert record.output_tokens == 12
    assert record.input_type == "json" and record.input_size == len(' [{"role": "user"}] ') + 400
    assert record.output_type == "number"
    assert record.service_name == "svc"
    assert record.status == "failed" and record.http_status == 429


def test_spans_with_events_are_read_through_protobuf() -> None:
    request = _request(_kv("gen_ai.operation.name", string_value="chat"))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    event = span.events.add(name="exception", time_unix_nano=NOW_NS - 5)
    event.attributes.append(_kv("exception.type", string_value="openai.RateLimitError"))
    span.status.code = Status.STATUS_CODE_ERROR
    result = both(request.SerializeToString())
    assert result is not None
    assert result[1].spans[0].error_type == "RateLimitError"
    assert result[1].spans[0].events[0].name == "exception"


def test_irregular_wire_encodings_are_left_to_protobuf() -> None:
    span = _request(_kv("gen_ai.request.model", string_value="first")).resource_spans[0].scope_spans[0].spans[0]
    again = Span(name="second").SerializeToString()  # a singular field twice: protobuf keeps the last
    wire = span.SerializeToString() + again
    scope = ScopeSpans().SerializeToString() + b"\x12" + bytes([len(wire)]) + wire
    resource_spans = b"\x12" + bytes([len(scope)]) + scope
    body = b"\x0a" + bytes([len(resource_spans)]) + resource_spans
    assert scanned(body) is None
    result = both(body)
    assert result is not None
    assert result[1].spans[0].name == "second"
    assert result[1].spans[0].model == "first"


# -- records built in C (``_spanscan.c``, "records") ----------------------------------------------


def built_in_c(body: bytes, limits: Limits = LIMITS) -> tuple[int, int]:
    """(records the scanner built itself, spans it handed back to ``_record``)."""
    items = COMPILED._scan(
        body,
        COMPILED._key_kinds,
        COMPILED._classify,
        text_type,
        COMPILED._recipe,
        COMPILED,
        "default",
        limits.now_ns,
        limits.max_future_ns,
        limits.max_age_ns,
        RedactionCounts(),
    )
    assert items is not None
    records = sum(1 for item in items if isinstance(item, SpanRecord))
    tuples = sum(1 for item in items if isinstance(item, tuple) and len(item) > 2)
    return records, tuples


def test_plain_spans_are_built_in_c() -> None:
    # the comparisons above test the C records only if the scanner builds them: load-generator
    # traffic is plain (no events), and so are most spans real instrumentation sends
    limits = Limits(time.time_ns(), 86_400 * 10**9, 86_400 * 10**9, 32)
    records = tuples = 0
    for body, _ in build_bodies(3_000, 256, 7):
        built, left = built_in_c(body, limits)
        records, tuples = records + built, tuples + left
    assert records >= 3_000 and tuples == 0
    now = Limits(time.time_ns(), 10 * 365 * 86_400 * 10**9, 10 * 365 * 86_400 * 10**9, 32)
    records = tuples = 0
    for path in sorted(TESTDATA.glob("otlp/*/*/*-traces.binpb")):
        built, left = built_in_c(path.read_bytes(), now)
        records, tuples = records + built, tuples + left
    assert records > 2 * tuples > 0  # spans with events are still built in Python


PLAIN_TEXTS = st.one_of(
    st.sampled_from(
        [
            "chat",
            "invoke_agent",
            "execute_tool",
            "embeddings",
            "AGENT",
            "llm",
            "tool",
            "workflow",
            "agent",
            "openai",
            "OpenAI",
            "gpt-4.1",
            "sk-proj-" + "a" * 30,
            "bob@example.com",
            "10.1.2.3",
            "4111 1111 1111 1111",
            "Bearer abc.def.ghi",
            "invoke_agent ",
            "x.agent",
            "x.tool",
            "<class 'openai.RateLimitError'>",
            "RateLimitError",
            "timeout",
            "text/plain",
            "application/json",
            '{"model": "gpt-4o", "stream": true}',
            "[1, 2]",
            "not json",
            "success",
            "failed",
            "12",
            "1e3",
        ]
    ),
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
)
PLAIN_VALUES = st.one_of(
    PLAIN_TEXTS.map(lambda s: AnyValue(string_value=s)),
    st.integers(min_value=-5, max_value=2**41).map(lambda i: AnyValue(int_value=i)),
    st.sampled_from([-(2**63), 2**63 - 1, 2**40, 2**40 + 1]).map(lambda i: AnyValue(int_value=i)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
)
PLAIN_KEYS = [*sorted(normalize.cv.READ_KEYS), "gen_ai.input.messages", "gen_ai.output.messages", "other.key"]
SPAN_NAMES = st.sampled_from(
    ["", "chat gpt-4.1", "invoke_agent triage", "invoke_agent", "execute_tool search", "x.tool"]
)


@st.composite
def plain_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """Valid spans without events whose attributes are the keys the normalizer reads, with
    values mostly of the kinds the C records take (and some they leave to Python)."""
    resource_spans = []
    for _ in range(draw(st.integers(1, 2))):
        service = draw(st.one_of(st.none(), PLAIN_TEXTS))
        resource = Resource(
            attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))] if service else []
        )
        spans = []
        for index in range(draw(st.integers(1, 4))):
            attributes = draw(
                st.lists(st.builds(KeyValue, key=st.sampled_from(PLAIN_KEYS), value=PLAIN_VALUES), max_size=10)
            )
            spans.append(
                Span(
                    trace_id=b"\x01" * 15 + bytes([index + 1]),
                    span_id=bytes([index + 1]) * 8,
                    parent_span_id=draw(st.sampled_from([b"", b"\x09" * 8])),
                    name=draw(SPAN_NAMES),
                    start_time_unix_nano=NOW_NS - 10**9,
                    end_time_unix_nano=NOW_NS - draw(st.integers(0, 10**9)),
                    attributes=attributes,
                    status=Status(code=draw(st.sampled_from([0, 1, 2])), message=draw(PLAIN_TEXTS)),
                )
            )
        resource_spans.append(ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)]))
    return ExportTraceServiceRequest(resource_spans=resource_spans)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_requests())
def test_plain_requests_give_the_same_records(request: ExportTraceServiceRequest) -> None:
    both(request.SerializeToString())


def test_plain_requests_are_mostly_built_in_c() -> None:
    # the property above compares records built in C, not only the fallback
    records = tuples = 0
    for seed in range(60):
        body = _seeded_plain(seed)
        assert both(body) is not None
        built, left = built_in_c(body)
        records, tuples = records + built, tuples + left
    assert records > tuples


def _seeded_plain(seed: int) -> bytes:
    rng = random.Random(seed)
    texts = ["chat", "invoke_agent", "execute_tool", "gpt-4.1", "openai", "bob@example.com", "sk-proj-" + "a" * 30]
    attributes = [_kv(rng.choice(PLAIN_KEYS[:-3]), string_value=rng.choice(texts)) for _ in range(rng.randrange(1, 8))]
    code = rng.choice([0, 0, 2])
    return _request(*attributes, status=Status(code=code, message="boom")).SerializeToString()
