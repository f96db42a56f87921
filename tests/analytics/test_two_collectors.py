"""Two collector processes on one PostgreSQL, each receiving the same traffic at the same time
(and some requests twice): every execution counts once in every rollup, which equals a
recomputation from the raw rows, and no request fails (no deadlock between their rollup locks)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, text

from agent_otel.settings import normalize_db_url
from tests.analytics.helpers import assert_rollups_match_raw
from tests.analytics.traffic import demo_requests

pytestmark = pytest.mark.postgres


@contextmanager
def serve(db_url: str) -> Iterator[str]:
    """``agent-otel serve`` in its own process; yields its OTLP/HTTP endpoint."""
    command = [sys.executable, "-m", "agent_otel", "serve", "--db", db_url, "--log-level", "WARNING"]
    command += ["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    with (
        tempfile.TemporaryFile("w+") as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as process,
    ):
        try:
            endpoint = None
            assert process.stdout is not None
            for line in process.stdout:  # the start-up lines; serve prints nothing after them
                if line.startswith("otlp-http listening on "):
                    endpoint = "http://" + line.split()[-1]
                if line.startswith("http listening on "):
                    break
            assert endpoint is not None, "collector did not start"
            yield endpoint
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        errors.seek(0)
        assert process.returncode == 0, errors.read()


def test_two_collectors_count_every_execution_once(pg_url: str) -> None:
    bodies = demo_requests(300, seed=21, hours=30, per_request=12)
    rng = random.Random(5)
    with serve(pg_url) as first, serve(pg_url) as second:
        jobs = [(endpoint, body) for body in bodies for endpoint in (first, second)]
        jobs += [(rng.choice((first, second)), body) for body in rng.sample(bodies, len(bodies) // 4)]
        rng.shuffle(jobs)

        def send(job: tuple[str, bytes]) -> int:
            endpoint, body = job
            response = httpx.post(
                f"{endpoint}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, jobs))
    assert set(statuses) == {200}

    engine = create_engine(normalize_db_url(pg_url))
    try:
        rollups = assert_rollups_match_raw(engine)
        with engine.connect() as conn:
            executions = conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one()
            distinct = conn.execute(text("SELECT count(DISTINCT execution_id) FROM agent_executions")).scalar_one()
        assert executions == distinct >= 300
        for period in ("hour", "day", "week", "month"):
            assert sum(v[2] for k, v in rollups.agent_metrics.items() if k[2] == period) == executions
    finally:
        engine.dispose()
