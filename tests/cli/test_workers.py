"""``serve --workers N``: several ingest processes behind one set of ports, one merged /metrics."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import httpx
from bench.loadgen import build_bodies, send
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.cli.test_serve import start_serve


def test_two_workers_share_ports_and_metrics(pg_url: str) -> None:
    process, ports = start_serve(pg_url, "--workers", "2")
    try:
        bodies = build_bodies(6000, 200, seed=11)
        spans = sum(count for _, count in bodies)
        half = len(bodies) // 2
        http_result = asyncio.run(send(bodies[:half], f"http://127.0.0.1:{ports['otlp-http']}", "http", 6))
        grpc_result = asyncio.run(send(bodies[half:], f"127.0.0.1:{ports['otlp-grpc']}", "grpc", 6))
        assert http_result.acknowledged_spans + grpc_result.acknowledged_spans == spans
        assert http_result.refused_requests == grpc_result.refused_requests == 0

        exposition = httpx.get(f"http://127.0.0.1:{ports['http']}/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(exposition)}
        accepted = {
            s.labels["transport"]: s.value
            for s in families["agent_otel_spans_accepted"].samples
            if s.name.endswith("_total")
        }
        assert accepted == {"http": http_result.acknowledged_spans, "grpc": grpc_result.acknowledged_spans}
        # the parent runs two ingest worker processes
        pids = subprocess.run(
            ["pgrep", "-f", "agent_otel.collector.workers --child"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(pids) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    leftover = subprocess.run(["pgrep", "-f", "agent_otel.collector.workers --child"], capture_output=True, check=False)
    assert leftover.returncode == 1, "workers outlived the parent"
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT (SELECT count(*) FROM agent_executions) + (SELECT count(*) FROM agent_steps)")
        ).scalar_one()
    engine.dispose()
    assert stored == spans
