"""``opentelemetry-instrument python app.py`` with agent-otel installed and no code change: the
distro/configurator entry points install agent-otel's processors, so what leaves the process is
sanitized and carries the baggage user; the collector turns it into rows.

The app emits its spans through the plain OpenTelemetry API, as any instrumentation library does.
A capture server in front of the collector records exactly what left the process; the recorded
requests are then sent on to a running collector.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import text

from tests.conftest import RunningCollector
from tests.conventions.test_golden import dump_database

SECRET = "sk-proj-PLANTEDplantedPLANTED0123456789abcd"
APP = f"""
from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind

tracer = trace.get_tracer("fake.genai.instrumentation")
token = context.attach(baggage.set_baggage("user.id", "user-9", baggage.set_baggage("session.id", "sess-9")))
with tracer.start_as_current_span(
    "chat gpt-4o-mini",
    kind=SpanKind.CLIENT,
    attributes={{
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.input.messages": '[{{"role": "user", "content": "my key is {SECRET}"}}]',
    }},
):
    pass
context.detach(token)
print("app done")
"""


class _Capture(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_opentelemetry_instrument_needs_no_code_change(running_collector: RunningCollector, tmp_path: Path) -> None:
    received: list[tuple[str, bytes]] = []
    handler = type("Capture", (_Capture,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = tmp_path / "app.py"
        app.write_text(textwrap.dedent(APP))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENT_OTEL_"))}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
            OTEL_SERVICE_NAME="instrumented-app",
            OTEL_METRIC_EXPORT_INTERVAL="60000",
        )
        instrument = Path(sys.executable).parent / "opentelemetry-instrument"
        done = subprocess.run(
            [str(instrument), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "app done" in done.stdout
    finally:
        server.shutdown()
        server.server_close()

    traces = [body for path, body in received if path == "/v1/traces"]
    assert traces, [path for path, _ in received]
    spans = [
        span
        for body in traces
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    (span,) = spans
    attributes = {kv.key: kv.value for kv in span.attributes}
    assert "gen_ai.input.messages" not in attributes  # agent-otel's processor ran in the app
    assert attributes["agent_otel.input.type"].string_value == "json"
    assert attributes["user.id"].string_value == "user-9"  # copied from baggage by agent-otel
    assert all(SECRET.encode() not in body for _, body in received)

    for path, body in received:  # what left the app, on to the collector
        response = httpx.post(
            f"{running_collector.http_endpoint}{path}", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        assert response.status_code == 200, (path, response.text)
    with running_collector.engine.connect() as conn:
        (row,) = conn.execute(text("SELECT * FROM agent_executions")).mappings()
    assert row["agent_id"] == "instrumented-app" and row["user_id"] == "user-9" and row["session_id"] == "sess-9"
    assert row["input_tokens"] == 120 and row["model"] == "gpt-4o-mini" and row["input_type"] == "json"
    assert SECRET not in dump_database(running_collector.engine)
