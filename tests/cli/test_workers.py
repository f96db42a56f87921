"""``serve --workers N``: several ingest processes behind one set of ports, one merged /metrics."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import psutil
from bench.loadgen import build_bodies, send
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.cli.test_serve import start_serve
from tests.otlp_helpers import encode, finished_spans


def stored_spans(pg_url: str) -> int:
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT (SELECT count(*) FROM agent_executions) + (SELECT count(*) FROM agent_steps)")
        ).scalar_one()
    engine.dispose()
    return int(stored)


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
        # the parent runs two ingest worker processes, forked from it: they share its pages
        children = psutil.Process(process.pid).children()
        assert len(children) == 2
        for child in children:
            memory = child.memory_full_info()
            assert memory.rss - memory.uss > 50 * 2**20, "the worker shares little with the parent"  # spawned: ~38 MB
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert not any(child.is_running() for child in children), "workers outlived the parent"
    assert stored_spans(pg_url) == spans


def test_a_worker_that_dies_is_restarted_and_ingest_goes_on(pg_url: str) -> None:
    """A forked worker killed outright is replaced (by a new interpreter, the parent runs
    threads by then); the replacement serves the shared ports and all spans are stored."""
    process, ports = start_serve(pg_url, "--workers", "2")
    try:
        first = psutil.Process(process.pid).children()
        assert len(first) == 2
        first[0].kill()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = [c for c in psutil.Process(process.pid).children() if c.pid != first[0].pid]
            if len(now) == 2 and all(c.status() != psutil.STATUS_ZOMBIE for c in now):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the killed worker was not replaced")
        assert sum("--child" in " ".join(c.cmdline()) for c in now) == 1  # the replacement: a new interpreter
        bodies = build_bodies(2000, 100, seed=12)
        result = asyncio.run(send(bodies, f"http://127.0.0.1:{ports['otlp-http']}", "http", 8))
        assert result.acknowledged_spans == sum(count for _, count in bodies)
        assert result.refused_requests == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert stored_spans(pg_url) == sum(count for _, count in bodies)


def test_readiness_follows_the_ingest_worker(tmp_path: Path) -> None:
    """The supervisor's /readyz says whether ingest works: 503 while its only worker is dead,
    200 again once the replacement accepts spans."""
    process, ports = start_serve(f"sqlite:///{tmp_path / 'ready.db'}")
    readyz = f"http://127.0.0.1:{ports['http']}/readyz"
    try:
        assert httpx.get(readyz).json() == {"status": "ready", "database": True, "writer": True}
        (worker,) = psutil.Process(process.pid).children()
        worker.kill()
        worker.wait(10)
        # the replacement is a new interpreter: it needs seconds to start, the supervisor a second to notice
        down = httpx.get(readyz, timeout=10)
        assert down.status_code == 503 and down.json()["writer"] is False
        deadline = time.monotonic() + 60
        while httpx.get(readyz, timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the worker was replaced"
            time.sleep(0.2)
        body = encode(finished_spans(2))
        response = httpx.post(
            f"http://127.0.0.1:{ports['otlp-http']}/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr


def test_the_worker_leaves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the supervisor (no handler runs): its worker sees its stdin close, drains what
    it accepted and exits, instead of holding the OTLP ports for no one."""
    db_url = f"sqlite:///{tmp_path / 'orphan.db'}"
    process, ports = start_serve(db_url)
    (worker,) = psutil.Process(process.pid).children()
    response = httpx.post(
        f"http://127.0.0.1:{ports['otlp-http']}/v1/traces",
        content=encode(finished_spans(3)),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    process.kill()
    process.communicate(timeout=30)
    worker.wait(30)  # psutil.TimeoutExpired if it stayed
    assert not worker.is_running()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 3
    engine.dispose()
