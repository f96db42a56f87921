"""End to end through real sockets: the SDK's OTLP exporters -> a running collector -> rows,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from sqlalchemy import Engine, inspect, text

from tests.conftest import RunningCollector
from tests.otlp_helpers import (
    PLANTED,
    RecordingExporter,
    agent_trace,
    encode,
    finished_spans,
    grpc_exporter,
    http_exporter,
    sdk_provider,
)


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def dump_database(engine: Engine) -> str:
    """Every value of every column of every table, as one string (for "never stored" checks)."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_sdk_exporter_spans_become_rows(running_collector: RunningCollector, transport: str) -> None:
    endpoint = running_collector.http_endpoint if transport == "http" else running_collector.grpc_endpoint
    exporter = RecordingExporter(http_exporter(endpoint) if transport == "http" else grpc_exporter(endpoint))
    with sdk_provider(exporter) as tracer:
        ok = agent_trace(tracer, agent="support-bot", user="user-7", session="sess-9")
        failed = agent_trace(tracer, agent="support-bot", user="user-8", fail_tool=True)
    assert exporter.results and all(r is SpanExportResult.SUCCESS for r in exporter.results)
    engine = running_collector.engine

    executions = {r["execution_id"]: r for r in rows(engine, "SELECT * FROM agent_executions ORDER BY started_at")}
    assert set(executions) == {ok["execution_id"], failed["execution_id"]}
    good = executions[ok["execution_id"]]
    assert good["agent_id"] == "support-bot-id"
    assert good["user_id"] == "user-7"
    assert good["session_id"] == "sess-9"
    assert good["status"] == "success"
    assert good["trace_id"] == ok["trace_id"] and good["span_id"] == ok["span_id"]
    assert good["input_tokens"] == 2500 and good["output_tokens"] == 500  # sum over its two LLM steps
    assert good["llm_calls"] == 2 and good["tool_calls"] == 1
    assert good["model"] == "gpt-4o-mini-2024-07-18" or good["model"] == "gpt-4o-mini"
    # gpt-4o-mini: $0.15 in / $0.60 out per million tokens
    assert good["cost_usd"] == pytest.approx((2500 * 0.15 + 500 * 0.60) / 1e6)
    assert good["credits_consumed"] == 3
    assert good["input_type"] == "text" and good["input_size"] > 50
    assert good["ip_address"] == "192.168.1.xxx"
    assert good["user_agent"] == "pytest-client/1.0"
    assert good["duration"] >= 0 and good["completed_at"] >= good["started_at"]

    bad = executions[failed["execution_id"]]
    assert bad["status"] == "error"
    assert bad["error_code"] == "ConnectionError"
    assert "[REDACTED]@db.internal" in bad["error_message"] and "192.168.1.xxx" in bad["error_message"]

    steps = rows(engine, "SELECT * FROM agent_steps WHERE execution_id = :e ORDER BY started_at", e=ok["execution_id"])
    assert [s["kind"] for s in steps] == ["llm", "tool", "llm"]
    assert steps[1]["tool_name"] == "search_kb" and steps[1]["status"] == "success"
    assert steps[0]["input_tokens"] == 1000 and steps[0]["model"] == "gpt-4o-mini-2024-07-18"
    assert steps[0]["finish_reason"] == "tool_calls"
    assert all(s["agent_id"] == "support-bot-id" and s["trace_id"] == ok["trace_id"] for s in steps)
    assert steps[1]["input_type"] == "json" and steps[1]["output_type"] == "json"

    logs = rows(engine, "SELECT * FROM agent_logs WHERE execution_id = :e", e=failed["execution_id"])
    assert len(logs) == 1
    assert logs[0]["level"] == "error" and logs[0]["category"] == "error"
    assert logs[0]["message"].startswith("ConnectionError: upstream failed for postgres://[REDACTED]@")
    assert logs[0]["user_id"] == "user-8"

    agents = rows(engine, "SELECT * FROM agents")
    assert [(a["id"], a["name"]) for a in agents] == [("support-bot-id", "support-bot")]

    everything = dump_database(engine)
    leaked = [value for value in PLANTED if value in everything]
    assert leaked == []


def test_same_request_twice_yields_one_set_of_rows(running_collector: RunningCollector) -> None:
    body = encode(finished_spans(count=3))
    headers = {"Content-Type": "application/x-protobuf"}
    url = f"{running_collector.http_endpoint}/v1/traces"
    for _ in range(2):
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 200
    engine = running_collector.engine
    counts = rows(
        engine,
        "SELECT (SELECT count(*) FROM agent_executions) AS e, (SELECT count(*) FROM agent_steps) AS s,"
        " (SELECT sum(input_tokens) FROM agent_executions) AS t",
    )[0]
    assert counts == {"e": 3, "s": 9, "t": 3 * 2500}


def test_json_and_gzip_encodings(running_collector: RunningCollector) -> None:
    """OTLP/JSON (hex ids, not base64) and gzip bodies, as the OTLP/HTTP specification allows."""
    import gzip

    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = finished_spans(count=2)
    message = json_format.MessageToDict(encode_spans(spans[:4]))
    for resource in message["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
    url = f"{running_collector.http_endpoint}/v1/traces"
    response = httpx.post(url, json=message)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    response = httpx.post(
        url,
        content=gzip.compress(encode(spans[4:])),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    executions = rows(running_collector.engine, "SELECT trace_id FROM agent_executions")
    expected = {format(s.context.trace_id, "032x") for s in spans if s.parent is None}
    assert {r["trace_id"] for r in executions} == expected


BAD_INPUTS: list[tuple[str, bytes, dict[str, str], int]] = [
    ("random bytes", bytes(range(256)) * 4, {"Content-Type": "application/x-protobuf"}, 400),
    ("wrong content type", b"hello", {"Content-Type": "text/plain"}, 415),
    ("json that is not OTLP", b'{"resourceSpans": "nope"}', {"Content-Type": "application/json"}, 400),
    ("not json", b"{not json", {"Content-Type": "application/json"}, 400),
    (
        "bad gzip",
        b"\x1f\x8b\x08\x00garbage",
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        400,
    ),
    ("unknown encoding", b"x", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}, 415),
]


@pytest.mark.parametrize(("name", "body", "headers", "status"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_and_service_goes_on(
    running_collector: RunningCollector, name: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    url = f"{running_collector.http_endpoint}/v1/traces"
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == status, (name, response.text)
    if headers["Content-Type"] == "application/json":
        assert response.json()["message"]
    assert rows(running_collector.engine, "SELECT count(*) AS n FROM agent_executions")[0]["n"] == 0
    good = httpx.post(url, content=encode(finished_spans(1)), headers={"Content-Type": "application/x-protobuf"})
    assert good.status_code == 200
    assert rows(running_collector.engine, "SELECT count(*) AS n FROM agent_executions")[0]["n"] == 1


def test_truncated_protobuf_and_body_over_limit(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(db_url, **{"ingest.max_body_bytes": 64 * 1024})
    url = f"{running.http_endpoint}/v1/traces"
    body = encode(finished_spans(2))
    truncated = httpx.post(url, content=body[: len(body) // 2], headers={"Content-Type": "application/x-protobuf"})
    assert truncated.status_code == 400
    huge = httpx.post(url, content=b"\x0a" * (200 * 1024), headers={"Content-Type": "application/x-protobuf"})
    assert huge.status_code == 413
    assert "exceeds the limit" in huge.text
    assert rows(running.engine, "SELECT count(*) AS n FROM agent_executions")[0]["n"] == 0
    assert httpx.post(url, content=body, headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    assert rows(running.engine, "SELECT count(*) AS n FROM agent_executions")[0]["n"] == 2


def test_grpc_rejects_garbage_with_invalid_argument(running_collector: RunningCollector) -> None:
    import grpc

    channel = grpc.insecure_channel(running_collector.grpc_endpoint)
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    with pytest.raises(grpc.RpcError) as info:
        export(b"\xff\xff\xff\xff", timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    response = export(encode(finished_spans(1)), timeout=10)
    assert response == b""  # an empty ExportTraceServiceResponse: no partial success
    channel.close()
    assert rows(running_collector.engine, "SELECT count(*) AS n FROM agent_executions")[0]["n"] == 1


def test_bad_span_is_rejected_alone_with_partial_success(running_collector: RunningCollector) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    request = ExportTraceServiceRequest.FromString(encode(finished_spans(2)))
    spans = request.resource_spans[0].scope_spans[0].spans
    # corrupt one step of the first execution: end before start, and an invalid span id in another
    spans[0].end_time_unix_nano = spans[0].start_time_unix_nano - 1
    spans[1].span_id = b"\x00" * 8
    response = httpx.post(
        f"{running_collector.http_endpoint}/v1/traces",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_spans == 2
    assert "negative duration" in reply.partial_success.error_message
    assert "invalid span id" in reply.partial_success.error_message
    counts = rows(
        running_collector.engine,
        "SELECT (SELECT count(*) FROM agent_executions) AS e, (SELECT count(*) FROM agent_steps) AS s",
    )[0]
    assert counts == {"e": 2, "s": 4}  # 8 spans sent, 2 rejected: 2 executions + 4 steps kept


def test_nul_bytes_and_lone_surrogates_are_stored_cleanly(running_collector: RunningCollector) -> None:
    """PostgreSQL text cannot hold NUL; OTLP/JSON can carry lone surrogates: neither costs a span."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(encode(finished_spans(1)))
    for span in request.resource_spans[0].scope_spans[0].spans:
        if not span.parent_span_id:
            for attribute in span.attributes:
                if attribute.key == "gen_ai.agent.id":
                    attribute.value.string_value = "nul\x00agent"
            span.status.message = "failed \x00 here"
    response = httpx.post(
        f"{running_collector.http_endpoint}/v1/traces",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200 and response.content == b""  # nothing rejected
    message = (
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
        '"spanId":"eee19b7ec3c1b174","name":"invoke_agent x","startTimeUnixNano":"%d","endTimeUnixNano":"%d",'
        '"attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"invoke_agent"}},'
        '{"key":"gen_ai.agent.name","value":{"stringValue":"lone\\ud800surrogate"}}]}]}]}]}'
    )
    import time

    now = time.time_ns()
    response = httpx.post(
        f"{running_collector.http_endpoint}/v1/traces",
        content=(message % (now, now + 5)).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    agents = sorted(r["agent_id"] for r in rows(running_collector.engine, "SELECT agent_id FROM agent_executions"))
    assert agents == ["lone?surrogate", "nulagent"]


def test_json_columns_hold_objects(running_collector: RunningCollector) -> None:
    """Log context and metadata are JSON objects in the database (jsonb on PostgreSQL), not strings."""
    exporter = http_exporter(running_collector.http_endpoint)
    with sdk_provider(exporter) as tracer:
        agent_trace(tracer, fail_tool=True)
    engine = running_collector.engine
    if engine.dialect.name == "postgresql":
        kinds = rows(engine, "SELECT jsonb_typeof(metadata) AS m FROM agent_logs")
        assert [r["m"] for r in kinds] == ["object"]
    else:
        kinds = rows(engine, "SELECT json_type(metadata) AS m FROM agent_logs")
        assert [r["m"] for r in kinds] == ["object"]
    metadata = rows(engine, "SELECT metadata FROM agent_logs")[0]["metadata"]
    if isinstance(metadata, str):  # SQLite returns JSON text to a raw query
        import json

        metadata = json.loads(metadata)
    assert metadata == {"span_name": "execute_tool search_kb", "span_kind": "tool"}
