"""Redaction, proven end to end: the whole secrets corpus (tests/testdata/redaction/secrets.json),
planted in every place an OTLP request can carry it (see ``planting.py``), sent through a real
collector over OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC. Afterwards no needle of any
item may appear, case-insensitively, in any column of any table (SQLite and PostgreSQL), in
anything the collector logged (every logger at DEBUG), in /metrics, or in any response body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import Engine, inspect, text

from tests.conftest import RunningCollector
from tests.redaction.planting import log_requests, otlp_json, trace_requests

CORPUS = Path(__file__).resolve().parent.parent / "testdata" / "redaction" / "secrets.json"
ITEMS: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["items"]
NEEDLES = sorted({str(n).lower() for item in ITEMS for n in item["needles"]})


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def dump_everything(engine: Engine) -> str:
    """Every value of every column of every table and view, lower-cased."""
    parts: list[str] = []
    with engine.connect() as conn:
        inspector = inspect(conn)
        names = inspector.get_table_names() + inspector.get_view_names()
        for name in names:
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):
                parts.extend(str(value) for value in row)
    return "\n".join(parts).lower()


def leaks(haystack: str) -> list[str]:
    lowered = haystack.lower()
    return [needle for needle in NEEDLES if needle in lowered]


def _grpc(endpoint: str, method: str, body: bytes) -> bytes:
    with grpc.insecure_channel(endpoint) as channel:
        return bytes(channel.unary_unary(method)(body, timeout=60))


def send_corpus(running: RunningCollector) -> list[bytes]:
    """Send every item, round-robin over the three encodings; return every response body."""
    now = time.time_ns()
    responses: list[bytes] = []
    traces = trace_requests(ITEMS, now, per_request=40)
    logs = log_requests(ITEMS, now, per_request=80)
    with httpx.Client(timeout=120) as client:
        for i, request in enumerate(traces):
            if i % 3 == 0:
                r = client.post(
                    f"{running.http_endpoint}/v1/traces",
                    content=request.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                )
            elif i % 3 == 1:
                r = client.post(
                    f"{running.http_endpoint}/v1/traces",
                    content=otlp_json(request),
                    headers={"Content-Type": "application/json"},
                )
            else:
                responses.append(
                    _grpc(
                        running.grpc_endpoint,
                        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                        request.SerializeToString(),
                    )
                )
                continue
            assert r.status_code == 200, r.text[:300]
            responses.append(r.content)
        for request in logs:
            r = client.post(
                f"{running.http_endpoint}/v1/logs",
                content=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert r.status_code == 200
            responses.append(r.content)
        # errors must not echo secrets either: a JSON body whose bad field carries one
        bad = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": ITEMS[0]["text"]}]}]}]})
        r = client.post(f"{running.http_endpoint}/v1/traces", content=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        responses.append(r.content)
        for accept in ("text/plain", "application/openmetrics-text"):
            metrics = client.get(f"{running.api}/metrics", headers={"Accept": accept})
            assert metrics.status_code == 200
            responses.append(metrics.content)
    return responses


def test_no_planted_secret_is_stored_logged_or_exposed(
    db_url: str, collector_factory: Callable[..., RunningCollector], captured_logs: _Capture
) -> None:
    running = collector_factory(db_url, **{"ingest.store_untraced_logs": True, "ingest.max_events_per_span": 64})
    responses = send_corpus(running)

    with running.engine.connect() as conn:
        stored = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("agent_executions", "agent_steps", "agent_logs", "agent_feedback", "agents")
        }
    # the corpus really went in: two executions per item (the agent and its nested agent), steps,
    # logs and feedback
    assert stored["agent_executions"] == 2 * len(ITEMS)
    assert stored["agent_steps"] >= 3 * len(ITEMS)
    assert stored["agent_logs"] >= 5 * len(ITEMS)
    assert stored["agent_feedback"] >= len(ITEMS)

    assert leaks(dump_everything(running.engine)) == []
    assert leaks("\n".join(captured_logs.lines)) == []
    assert leaks(b"\n".join(responses).decode("utf-8", "replace")) == []
