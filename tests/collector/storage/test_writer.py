"""Group commit through a running collector: requests wait for their commit, and requests that
arrive while a commit is in progress share the next one."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from agent_otel.collector.storage.database import libpq_conninfo, sqlite_path
from agent_otel.collector.storage.transaction import ChangeSet
from tests.conftest import RunningCollector, make_settings, start_collector
from tests.otlp_helpers import encode, finished_spans


@contextmanager
def write_lock(db_url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, so the writer has to wait."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        with psycopg.connect(libpq_conninfo(db_url)) as conn:
            conn.execute("LOCK TABLE agent_steps IN EXCLUSIVE MODE")
            yield
            conn.rollback()


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


def test_requests_share_commits_and_wait_for_them(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(db_url)
    registry = running.collector.registry
    url = f"{running.http_endpoint}/v1/traces"
    bodies = [encode(finished_spans(2)) for _ in range(20)]
    warm = httpx.post(url, content=encode(finished_spans(1)), headers={"Content-Type": "application/x-protobuf"})
    assert warm.status_code == 200
    commits_before = sample(registry, "agent_otel_batch_write_duration_seconds_count")

    statuses: list[int] = []
    lock = threading.Lock()

    def send(body: bytes) -> None:
        response = httpx.post(url, content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60)
        with lock:
            statuses.append(response.status_code)

    with ThreadPoolExecutor(20) as pool:
        with write_lock(db_url):
            futures = [pool.submit(send, body) for body in bodies]
            threading.Event().wait(1.5)
            # nothing is acknowledged while the database cannot commit
            assert not [f for f in futures if f.done()], "a request was answered before its commit"
            assert sample(registry, "agent_otel_queue_depth_spans") > 0
        for future in futures:
            future.result(timeout=60)

    assert statuses == [200] * 20
    commits = sample(registry, "agent_otel_batch_write_duration_seconds_count") - commits_before
    # each writer thread takes a group while the lock holds them up (the first requests to arrive);
    # every later request queues and shares the next commit
    threads = running.collector.writer.threads
    assert 1 <= commits <= threads + 1, (commits, threads)
    with running.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 41
    assert sample(registry, "agent_otel_queue_depth_spans") == 0


class PoisonHook:
    """A change hook that fails whenever one marked agent's execution is in the transaction: a
    stand-in for any database-side failure of one row inside a group."""

    def apply(self, conn: object, store: object, changes: ChangeSet) -> None:
        if any(row.agent_id == "poison-agent" for row in changes.executions):
            raise ValueError("refused by the test hook")


def _poisoned_request(agent: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(encode(finished_spans(3)))
    roots = [s for s in request.resource_spans[0].scope_spans[0].spans if not s.parent_span_id]
    for attribute in roots[1].attributes:  # the second execution's agent
        if attribute.key == "gen_ai.agent.id":
            attribute.value.string_value = agent
    return request.SerializeToString()


def test_a_span_the_database_refuses_is_rejected_alone(db_url: str) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    running = start_collector(make_settings(db_url), hooks=[PoisonHook()])
    try:
        poisoned_body = _poisoned_request("poison-agent")
        neighbours = [encode(finished_spans(1)) for _ in range(4)]
        url = f"{running.http_endpoint}/v1/traces"
        headers = {"Content-Type": "application/x-protobuf"}
        with ThreadPoolExecutor(5) as pool, write_lock(db_url):  # one group: the lock holds them together
            poisoned = pool.submit(httpx.post, url, content=poisoned_body, headers=headers, timeout=60)
            others = [pool.submit(httpx.post, url, content=b, headers=headers, timeout=60) for b in neighbours]
            threading.Event().wait(0.5)
        assert [f.result().status_code for f in others] == [200] * 4
        response = poisoned.result()
        assert response.status_code == 200
        reply = ExportTraceServiceResponse.FromString(response.content)
        assert reply.partial_success.rejected_spans == 1
        assert "storage rejected" in reply.partial_success.error_message
        with running.engine.connect() as conn:
            agents = [r[0] for r in conn.execute(text("SELECT agent_id FROM agent_executions"))]
        assert len(agents) == 2 + 4 and "poison-agent" not in agents
        registry = running.collector.registry
        written = registry.get_sample_value("agent_otel_rows_written_total", {"table": "agent_executions"})
        assert written == 6
    finally:
        running.stop()


class StatementHook:
    """A change hook that runs ``sql`` in the write transaction whenever an execution of ``agent``
    (any agent: None) is in it: a real database error of the kind the test chooses."""

    def __init__(self, sql: str, agent: str | None = None) -> None:
        self.sql = sql
        self.agent = agent

    def apply(self, conn: Connection, store: object, changes: ChangeSet) -> None:
        if any(self.agent in (None, row.agent_id) for row in changes.executions):
            conn.execute(text(self.sql))


def test_values_the_database_refuses_reject_that_span_only(db_url: str) -> None:
    """An integrity violation (a CHECK constraint) is about the span's values: that span is
    rejected in the partial success and the request's other spans are stored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    running = start_collector(
        make_settings(db_url), hooks=[StatementHook("INSERT INTO test_gate (v) VALUES (-1)", agent="poison-agent")]
    )
    try:
        with running.engine.begin() as conn:
            conn.execute(text("CREATE TABLE test_gate (v integer CHECK (v > 0))"))
        response = httpx.post(
            f"{running.http_endpoint}/v1/traces",
            content=_poisoned_request("poison-agent"),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
        assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 1
        with running.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 2
    finally:
        running.stop()


def test_a_database_fault_fails_the_request_retryably_and_rejects_nothing(db_url: str) -> None:
    """A database error that is not about the data (here a missing table, as after a restore
    without the schema or a revoked grant) must not be answered as rejected spans: the client
    drops those. The request fails with 503 and is stored in full once the fault is gone."""
    running = start_collector(make_settings(db_url), hooks=[StatementHook("SELECT count(*) FROM test_gate")])
    try:
        url = f"{running.http_endpoint}/v1/traces"
        headers = {"Content-Type": "application/x-protobuf"}
        body = encode(finished_spans(3))
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert "test_gate" not in response.text  # the database's message is not echoed
        with running.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 0
        registry = running.collector.registry
        refused = {"transport": "http", "reason": "storage_rejected"}
        assert registry.get_sample_value("agent_otel_spans_refused_total", refused) == 0
        unavailable = {"transport": "http", "signal": "traces", "reason": "storage_unavailable"}
        assert registry.get_sample_value("agent_otel_requests_refused_total", unavailable) == 1
        with running.engine.begin() as conn:  # the fault is repaired; the client's retry goes through
            conn.execute(text("CREATE TABLE test_gate (v integer)"))
        retried = httpx.post(url, content=body, headers=headers)
        assert retried.status_code == 200 and retried.content == b""  # nothing rejected
        with running.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one() == 3
    finally:
        running.stop()


def test_on_sqlite_the_writer_engine_s_reads_take_no_write_lock(sqlite_url: str) -> None:
    """The rollup applier's outbox polls and the key refresh run on the writer's engine; on
    SQLite its transactions begin IMMEDIATE (the write lock), except a ``reading`` connection's:
    a poll must neither wait for the ingest writer nor hold it up."""
    from agent_otel.collector.service import writer_engine
    from agent_otel.collector.storage import migrate
    from agent_otel.collector.storage.database import reading

    engine = writer_engine(make_settings(sqlite_url))
    answers: list[object] = []

    def poll() -> None:
        with reading(engine) as conn:
            answers.append(conn.execute(text("SELECT count(*) FROM rollup_outbox")).scalar())

    try:
        migrate.upgrade(engine)
        with write_lock(sqlite_url):  # busy_timeout is 30 s: a poll wanting the lock would wait that long
            polling = threading.Thread(target=poll)
            polling.start()
            polling.join(5)
            assert not polling.is_alive() and answers == [0]
            with engine.connect() as conn:  # a write transaction does want the lock
                conn.connection.driver_connection.execute("PRAGMA busy_timeout = 100")  # type: ignore[union-attr]
                with pytest.raises(OperationalError, match="locked"):
                    conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def test_on_sqlite_a_writer_queued_for_the_lock_gets_it_as_soon_as_it_is_free(sqlite_url: str) -> None:
    """The writer engine's ``BEGIN IMMEDIATE`` retries within a millisecond or so, not on SQLite's
    busy-handler schedule (which, after 450 ms of waiting, next looks at 528 ms); it gives up
    with "database is locked" after the connection's busy timeout, which it leaves as it was."""
    import time

    from agent_otel.collector.service import writer_engine
    from agent_otel.collector.storage import migrate

    engine = writer_engine(make_settings(sqlite_url))
    began: list[float] = []

    def write() -> None:
        with engine.begin() as conn:
            began.append(time.monotonic())
            conn.execute(text("DELETE FROM rollup_outbox"))

    try:
        migrate.upgrade(engine)
        with write_lock(sqlite_url):
            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(0.45)
            assert not began  # still waiting for the lock
            released = time.monotonic()
        writer.join(5)
        assert began and began[0] - released < 0.05
        with engine.connect() as conn, write_lock(sqlite_url):
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA busy_timeout = 150")  # type: ignore[union-attr]
            started = time.monotonic()
            with pytest.raises(OperationalError, match="locked"):
                conn.execute(text("DELETE FROM rollup_outbox"))
            assert time.monotonic() - started >= 0.15
            assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 150  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_on_sqlite_the_writers_checkpoint_starts_the_wal_over(sqlite_url: str) -> None:
    """The writer engine does not checkpoint at commit; ``checkpoint_wal``, which its writers call
    after theirs, copies the whole log under the write lock, so the next transaction writes the
    log from its start and it stays the size of a few commits under sustained load (it grew to
    gigabytes when two processes took turns writing)."""
    from agent_otel.collector.service import writer_engine
    from agent_otel.collector.storage import migrate
    from agent_otel.collector.storage.database import checkpoint_wal, sqlite_path

    def write(rows: int) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO rollup_outbox (payload) VALUES (:p)"), [{"p": b"x" * 3000}] * rows)

    def wal_bytes() -> int:  # a log that starts over is overwritten from its start: it does not grow
        return os.path.getsize(sqlite_path(sqlite_url) + "-wal")

    engine = writer_engine(make_settings(sqlite_url))
    try:
        migrate.upgrade(engine)
        checkpoint_wal(engine)
        write(1)  # the log starts over after the migrations
        write(1000)
        first = wal_bytes()
        write(1000)
        second = wal_bytes()
        assert second > 1.5 * first  # no checkpoint at commit: the log grows
        checkpoint_wal(engine)
        write(1000)
        assert wal_bytes() == second  # it started over, into the same file
    finally:
        engine.dispose()


@pytest.mark.parametrize(("role", "configured", "expected_kib"), [("all", None, 24 * 1024), ("ingest", 8, 8 * 1024)])
def test_on_sqlite_the_ingest_writers_connections_get_the_configured_page_cache(
    sqlite_url: str, role: str, configured: int | None, expected_kib: int
) -> None:
    """``storage.sqlite_writer_cache_mb`` sizes the page cache of the ingest writer's connections
    (24 MB by default); the supervisor's writer engine (role "api", the rollup applier's small
    writes) and the read engine keep SQLite's default of 2 MB."""
    from agent_otel.collector.service import Collector
    from agent_otel.collector.storage.database import reading

    def cache_kib(engine: Engine) -> int:
        with reading(engine) as conn:
            return -int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

    overrides = {"storage": {"sqlite_writer_cache_mb": configured}} if configured else {}
    ingest = Collector(make_settings(sqlite_url, **overrides), role=role)
    supervisor = Collector(make_settings(sqlite_url, **overrides), role="api")
    try:
        assert cache_kib(ingest.engine) == expected_kib
        assert cache_kib(supervisor.engine) == 2000
        assert cache_kib(ingest.read_engine) == 2000
    finally:
        for collector in (ingest, supervisor):
            for engine in {collector.engine, collector.jobs_engine, collector.read_engine}:
                engine.dispose()
