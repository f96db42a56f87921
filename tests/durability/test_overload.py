"""Overload and shutdown with a slow database (another connection holds a write lock).

- Beyond ``ingest.max_queue_spans`` the collector answers 429 (HTTP) / RESOURCE_EXHAUSTED (gRPC)
  with Retry-After instead of growing; its memory stays bounded; when the database is fast again,
  everything that was acknowledged is stored exactly once.
- SIGTERM while accepted requests wait for the database: the collector drains them (they get
  their success response once the lock goes away), then exits 0. Acknowledged == stored.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import Engine

from agent_otel.collector.storage.database import libpq_conninfo, sqlite_path
from agent_otel.settings import normalize_db_url
from tests.durability.support import Ledger, Sender, ServeProcess, Traffic, check_exactly_once, wait_until

MAX_QUEUE_SPANS = 3000
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@contextlib.contextmanager
def write_lock(db_url: str) -> Iterator[None]:
    """Make the database slow: another connection holds the lock the writer needs."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    with psycopg.connect(libpq_conninfo(normalize_db_url(db_url))) as pg:
        pg.execute("LOCK TABLE agent_steps IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def _serve(db_url: str, tmp_path: Path, **ingest: object) -> ServeProcess:
    config = tmp_path / "agent-otel.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"max_queue_spans": MAX_QUEUE_SPANS, **ingest}}))
    serve = ServeProcess(db_url, tmp_path / "serve.log", extra_args=["--config", str(config)])
    serve.start()
    return serve


@pytest.mark.timeout(300)
def test_overload_is_refused_with_retry_after_and_memory_stays_bounded(
    db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    serve = _serve(db_url, tmp_path)
    ledger = Ledger()
    stop = threading.Event()
    traffic = Traffic(uuid.uuid4().hex, executions_per_request=50)  # 150 spans per request
    rss: list[int] = []
    try:
        baseline = serve.rss_bytes()
        with write_lock(db_url):
            # 24 requests of 150 spans in flight: more than the queue admits
            senders = [Sender(serve.http_endpoint, traffic, ledger, stop) for _ in range(24)]
            for sender in senders:
                sender.start()
            assert wait_until(lambda: ledger.outcomes["429"] >= 20, timeout=60), ledger.outcomes
            # a fresh request is refused at once, with Retry-After, on both transports
            body, _ = traffic.request(10**6)
            refused = httpx.post(f"{serve.http_endpoint}/v1/traces", content=body, headers=PROTOBUF, timeout=10)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
            with grpc.insecure_channel(serve.grpc_endpoint) as channel:
                export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                with pytest.raises(grpc.RpcError) as caught:
                    export(body, timeout=10)
                assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                trailers = dict(caught.value.trailing_metadata() or ())
                assert "google.rpc.retryinfo-bin" in trailers
            for _ in range(20):  # keep hammering for a while: memory must not follow the offered load
                rss.append(serve.rss_bytes())
                stop.wait(0.25)
            acked_while_locked = len(ledger.acknowledged)
        assert wait_until(lambda: len(ledger.acknowledged) > acked_while_locked, timeout=60)
        stop.wait(1.0)
        stop.set()
        for sender in senders:
            sender.join(60)
        assert serve.terminate() == 0, serve.tail()
    finally:
        stop.set()
        serve.close()

    assert acked_while_locked == 0  # nothing is acknowledged before it is committed
    growth = max(rss) - baseline
    print(f"\nRSS baseline {baseline >> 20} MiB, max under overload {max(rss) >> 20} MiB; outcomes {ledger.outcomes}")
    assert growth < 150 * 2**20, f"memory grew by {growth >> 20} MiB under overload"
    figures = check_exactly_once(engine_for(db_url), ledger.acknowledged)
    assert figures["acknowledged"] > 0


@pytest.mark.timeout(300)
def test_sigterm_drains_what_was_accepted(db_url: str, tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    serve = _serve(db_url, tmp_path, max_queue_spans=100_000)
    traffic = Traffic(uuid.uuid4().hex, executions_per_request=4)
    requests = [traffic.request(n) for n in range(1, 25)]
    statuses: list[int] = []
    acknowledged: set[str] = set()

    def send(request: tuple[bytes, list[str]]) -> tuple[int, list[str]]:
        response = httpx.post(f"{serve.http_endpoint}/v1/traces", content=request[0], headers=PROTOBUF, timeout=120)
        return response.status_code, request[1]

    pool = ThreadPoolExecutor(len(requests))
    try:
        with write_lock(db_url):
            futures = [pool.submit(send, r) for r in requests]
            time.sleep(1.5)  # every request is accepted and waits for the locked database
            assert not any(f.done() for f in futures)
            serve.process.send_signal(15)  # type: ignore[union-attr]  # SIGTERM while they wait
            time.sleep(1.0)
            assert serve.alive()  # still draining
            # leaving the with-block releases the lock; the accepted requests then commit
        for future in futures:
            status, ids = future.result(timeout=120)
            statuses.append(status)
            if status == 200:
                acknowledged.update(ids)
        assert serve.process.wait(60) == 0, serve.tail()  # type: ignore[union-attr]
    finally:
        serve.close()
        pool.shutdown(wait=False, cancel_futures=True)
    assert statuses == [200] * len(requests)
    figures = check_exactly_once(engine_for(db_url), acknowledged)
    assert figures["acknowledged"] == figures["stored"] == 4 * len(requests)
