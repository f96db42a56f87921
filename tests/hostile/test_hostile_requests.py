"""Hostile requests against a real running collector. Each gets a clear error or a safe row, and
the collector keeps serving: after every case a normal request is still accepted and stored.

Cases: gzip and deflate bombs (HTTP) and a compressed oversize gRPC message, bodies far over the
limit (declared and chunked), deeply nested and huge attribute values, a million attributes on
one span, invalid UTF-8, NaN/infinite numbers and negative durations, timestamps far in the
future, SQL and JSON injection strings in every field, and 100,000 distinct agent names
(Prometheus label cardinality and process memory stay bounded).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import psutil
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from sqlalchemy import text

from tests.conftest import RunningCollector
from tests.durability.support import Traffic
from tests.redaction.planting import read_keys_with

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NOW = time.time_ns()


@pytest.fixture
def collector(sqlite_url: str, collector_factory: Callable[..., RunningCollector]) -> RunningCollector:
    return collector_factory(sqlite_url)


def still_serving(running: RunningCollector) -> None:
    body, ids = Traffic(uuid.uuid4().hex, executions_per_request=1).request(1)
    response = httpx.post(f"{running.http_endpoint}/v1/traces", content=body, headers=PROTOBUF, timeout=60)
    assert response.status_code == 200, response.text
    with running.engine.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM agent_executions WHERE execution_id = :e"), {"e": ids[0]})
        assert found.scalar_one() == 1


def post(running: RunningCollector, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{running.http_endpoint}/v1/traces", content=body, headers=headers or PROTOBUF, timeout=120)


def message_of(response: httpx.Response) -> str:
    return str(status_pb2.Status.FromString(response.content).message)


def one_span(**fields: Any) -> bytes:
    span = Span(
        trace_id=uuid.uuid4().bytes,
        span_id=uuid.uuid4().bytes[:8],
        name="invoke_agent hostile",
        start_time_unix_nano=NOW - 10**9,
        end_time_unix_nano=NOW,
        attributes=[KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="invoke_agent"))],
    )
    for key, value in fields.items():
        if key in ("attributes", "events"):
            getattr(span, key).extend(value)
        elif key == "status":
            span.status.CopyFrom(value)
        else:
            setattr(span, key, value)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return bytes(request.SerializeToString())


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _bomb(wbits: int, size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = b"\x00" * (1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(size >> 20)) + packer.flush()


def test_decompression_bombs_are_refused_without_inflating(collector: RunningCollector) -> None:
    rss = psutil.Process().memory_info().rss
    for encoding, wbits in (("gzip", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS)):
        bomb = _bomb(wbits, 1 << 30)  # 1 GiB of zeros in about 1 MB
        started = time.monotonic()
        response = post(collector, bomb, {**PROTOBUF, "Content-Encoding": encoding})
        assert response.status_code == 413, response.text
        assert "decompressed body exceeds" in message_of(response)
        assert time.monotonic() - started < 10
    assert psutil.Process().memory_info().rss - rss < 300 * 2**20  # never holds the gigabyte
    still_serving(collector)


def test_grpc_message_over_the_limit_even_when_compressed(collector: RunningCollector) -> None:
    huge = one_span(attributes=[kv("x", AnyValue(string_value="a" * (20 << 20)))])  # 20 MiB > 16 MiB
    with (
        grpc.insecure_channel(collector.grpc_endpoint, compression=grpc.Compression.Gzip) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(EXPORT)(huge, timeout=60)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    still_serving(collector)


def _raw_http(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request by hand while a reader thread collects the answer (so a connection closed
    by the server right after answering cannot swallow the answer); returns (answer, bytes sent)."""
    answer = bytearray()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:

        def read() -> None:
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
                    answer.extend(data)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                if answer:
                    break
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: expected once it has answered
        reader.join(30)
    return bytes(answer), sent


def test_bodies_far_over_the_limit(collector: RunningCollector) -> None:
    port = collector.collector.ports["otlp-http"]
    chunks = (b"\x00" * 65536 for _ in range(20_000))  # up to 1.3 GB offered, never all sent
    declared = (
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 2000000000\r\n\r\n"
    )
    answer, sent = _raw_http(port, declared, chunks)
    assert answer.startswith(b"HTTP/1.1 413") and sent < 64 << 20  # answered without reading it all
    chunked_head = (
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunked = (b"10000\r\n" + b"\x00" * 65536 + b"\r\n" for _ in range(20_000))
    answer, sent = _raw_http(port, chunked_head, chunked)
    assert answer.startswith(b"HTTP/1.1 413") and sent < 64 << 20
    with grpc.insecure_channel(collector.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(EXPORT)(b"\x0a" + b"\xff" * 5 + b"\x00" * (17 << 20), timeout=60)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    still_serving(collector)


def test_deeply_nested_values(collector: RunningCollector) -> None:
    def nested(depth: int) -> bytes:
        """A span whose content attribute nests ``depth`` maps, encoded by hand (the protobuf
        library itself refuses to build messages deeper than 100 levels)."""
        value = AnyValue(string_value="leaf").SerializeToString()
        for _ in range(depth):
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))  # kvlist_value.values[0]
        attribute = _field(1, b"gen_ai.input.messages") + _field(2, value)
        span = Span(
            trace_id=uuid.uuid4().bytes,
            span_id=uuid.uuid4().bytes[:8],
            name="invoke_agent nested",
            start_time_unix_nano=NOW - 10**9,
            end_time_unix_nano=NOW,
        ).SerializeToString()
        return _field(1, _field(2, _field(2, span + _field(9, attribute))))

    shallow = post(collector, nested(30))
    assert shallow.status_code == 200  # measured as content, never stored
    deep = post(collector, nested(5000))
    assert deep.status_code == 400 and "protobuf" in message_of(deep)
    deep_json = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused = post(collector, deep_json, JSON)
    assert refused.status_code == 400
    still_serving(collector)


def test_huge_values_are_cut(collector: RunningCollector) -> None:
    big = "A" * (5 << 20)
    body = one_span(
        attributes=[kv("gen_ai.agent.name", AnyValue(string_value=big)), kv("user.id", AnyValue(string_value=big))],
        status=Status(code=2, message="E" * (5 << 20)),
    )
    assert len(body) < 16 << 20
    assert post(collector, body).status_code == 200
    with collector.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT length(agent_id), length(user_id), length(error_message) FROM agent_executions"
                " ORDER BY created_at DESC LIMIT 1"
            )
        ).one()
    assert row[0] <= 256 and row[1] <= 256 and row[2] <= 2048
    still_serving(collector)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    key, length = (number << 3) | 2, len(payload)
    varint = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([key]) + bytes(varint) + payload


def test_a_million_attributes_on_one_span(collector: RunningCollector) -> None:
    span = Span(
        trace_id=uuid.uuid4().bytes,
        span_id=uuid.uuid4().bytes[:8],
        name="invoke_agent many-attributes",
        start_time_unix_nano=NOW - 10**9,
        end_time_unix_nano=NOW,
    ).SerializeToString()
    attribute = _field(9, kv("k", AnyValue(int_value=1)).SerializeToString())  # Span.attributes = 9
    span += attribute * 1_000_000
    body = _field(1, _field(2, _field(2, span)))  # request.resource_spans[0].scope_spans[0].spans[0]
    assert len(body) < 16 << 20
    started = time.monotonic()
    response = post(collector, body)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 60
    still_serving(collector)


def test_invalid_utf8_is_a_clear_400(collector: RunningCollector) -> None:
    valid = one_span(name="invoke_agent ok-name")
    broken = valid.replace(b"ok-name", b"ok\xff\xfeme")
    response = post(collector, broken)
    assert response.status_code == 400 and "not a valid" in message_of(response)
    json_body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe"}]}]}]}'
    assert post(collector, json_body, JSON).status_code == 400
    still_serving(collector)


def test_nan_infinity_and_negative_durations(collector: RunningCollector) -> None:
    numbers = [
        kv("gen_ai.usage.input_tokens", AnyValue(double_value=float("nan"))),
        kv("gen_ai.usage.output_tokens", AnyValue(double_value=float("inf"))),
        kv("agent_otel.credits", AnyValue(double_value=float("-inf"))),
        kv("agent_otel.response_time_ms", AnyValue(double_value=float("nan"))),
        kv("http.response.status_code", AnyValue(int_value=-(2**63))),
    ]
    assert post(collector, one_span(attributes=numbers)).status_code == 200
    with collector.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT input_tokens, output_tokens, credits_consumed, response_time, http_status"
                " FROM agent_executions ORDER BY created_at DESC LIMIT 1"
            )
        ).one()
    assert tuple(row) == (0, 0, 0.0, None, None)
    negative = post(collector, one_span(start_time_unix_nano=NOW, end_time_unix_nano=NOW - 10**9))
    assert negative.status_code == 200
    outcome = ExportTraceServiceResponse.FromString(negative.content)
    assert outcome.partial_success.rejected_spans == 1
    assert "negative duration" in outcome.partial_success.error_message
    nan_json = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + uuid.uuid4().hex.encode() + b'",'
        b'"spanId":"00000000000000a1","name":"x","startTimeUnixNano":"1","endTimeUnixNano":"2",'
        b'"attributes":[{"key":"gen_ai.usage.input_tokens","value":{"doubleValue":"NaN"}}]}]}]}]}'
    )
    assert post(collector, nan_json, JSON).status_code == 200  # accepted; the span itself is too old
    still_serving(collector)


def test_timestamps_far_in_the_future(collector: RunningCollector) -> None:
    year_2500 = 16_725_225_600 * 10**9
    for start in (year_2500, 2**64 - 2):
        response = post(collector, one_span(start_time_unix_nano=start, end_time_unix_nano=start + 1))
        assert response.status_code == 200
        outcome = ExportTraceServiceResponse.FromString(response.content)
        assert outcome.partial_success.rejected_spans == 1
        assert "timestamp in future" in outcome.partial_success.error_message
    overflow = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + uuid.uuid4().hex.encode() + b'",'
        b'"spanId":"00000000000000a1","startTimeUnixNano":"99999999999999999999999"}]}]}]}'
    )
    assert post(collector, overflow, JSON).status_code == 400
    still_serving(collector)


INJECTIONS = [
    "'); DROP TABLE agent_executions; --",
    "x' OR '1'='1",
    '"}]}],"resourceSpans":[{"x":1}]',
    "\\'; SELECT pg_sleep(10); --",
    "$(rm -rf /) `id` ${HOME}",
    "%00%27%22\x00NUL\x00inside",
    "\u202egnirts desrever\u200b",
    "{{7*7}} <script>alert(1)</script>",
]


def test_injection_strings_in_every_field_are_stored_as_data(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(db_url)
    for injection in INJECTIONS:
        attributes = [kv(k, AnyValue(string_value=str(v))) for k, v in read_keys_with(injection).items()]
        body = one_span(
            name=f"invoke_agent {injection}",
            attributes=attributes,
            status=Status(code=2, message=injection),
            events=[Span.Event(time_unix_nano=NOW - 10**8, name=injection)],
        )
        response = post(running, body)
        assert response.status_code == 200, response.text
        assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 0
        json_response = post(running, _as_json(body), JSON)
        assert json_response.status_code == 200, json_response.text
    with running.engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT name FROM agents"))}
        messages = {r[0] for r in conn.execute(text("SELECT error_message FROM agent_executions"))}
        tables = conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one()
    # the JSON copy names the same agent_otel.execution.id and start time: the same execution
    assert tables == len(INJECTIONS)
    assert "'); DROP TABLE agent_executions; --" in names  # stored verbatim, as data
    assert "x' OR '1'='1" in messages
    assert any("NUL" in (m or "") and "\x00" not in m for m in messages)
    still_serving(running)


def _as_json(body: bytes) -> bytes:
    from tests.hostile.strategies import otlp_json

    request = ExportTraceServiceRequest.FromString(body)
    for resource in request.resource_spans:  # a new trace id: a distinct execution
        for scope in resource.scope_spans:
            for span in scope.spans:
                span.trace_id = uuid.uuid4().bytes
    return otlp_json(request)


def test_100k_distinct_agent_names_keep_metrics_and_memory_bounded(collector: RunningCollector) -> None:
    process = psutil.Process()
    rss_before = process.memory_info().rss
    per_request = 2000
    with httpx.Client(timeout=120) as client:
        for batch in range(100_000 // per_request):
            spans = []
            for i in range(per_request):
                n = batch * per_request + i
                spans.append(
                    Span(
                        trace_id=uuid.uuid4().bytes,
                        span_id=uuid.uuid4().bytes[:8],
                        name=f"invoke_agent agent-{n}",
                        start_time_unix_nano=NOW - 10**9 - n * 1000,
                        end_time_unix_nano=NOW - n * 1000,
                        attributes=[
                            kv("gen_ai.operation.name", AnyValue(string_value="invoke_agent")),
                            kv("gen_ai.agent.name", AnyValue(string_value=f"agent-{n}")),
                            kv("gen_ai.request.model", AnyValue(string_value=f"model-{n}")),
                        ],
                    )
                )
            body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
            response = client.post(
                f"{collector.http_endpoint}/v1/traces", content=body.SerializeToString(), headers=PROTOBUF
            )
            assert response.status_code == 200
        exposition = client.get(f"{collector.api}/metrics").text
    growth = process.memory_info().rss - rss_before
    agents = {line.split('agent="', 1)[1].split('"', 1)[0] for line in exposition.splitlines() if 'agent="' in line}
    cap = collector.settings.metrics.max_agents
    assert len(agents) <= cap + 2  # the first `cap` names, __other__ and unknown
    assert "__other__" in agents
    assert 'agent_otel_label_overflow_total{label="agent"}' in exposition
    assert len(exposition) < 5 << 20
    print(
        f"\n100k agents: RSS grew {growth >> 20} MiB, /metrics {len(exposition) >> 10} KiB, {len(agents)} agent labels"
    )
    assert growth < 250 * 2**20, f"RSS grew by {growth >> 20} MiB"
    with collector.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agents")).scalar_one() >= 100_000
    still_serving(collector)
