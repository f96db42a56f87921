"""Shared fixtures: real databases, a real collector on free ports, real SDK exporters.

- ``pg_url``: a fresh PostgreSQL database per test, dropped afterwards. PostgreSQL is taken from
  ``AGENT_OTEL_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``). When it cannot
  be reached the test is skipped, except under ``CI=true``, where that is a failure.
- ``sqlite_url``: a SQLite file in the test's temporary directory.
- ``db_url``: both of them, so a test runs on each back end.
- ``running_collector``: starts ``agent-otel serve`` (the real ``Collector``) in a thread with
  its own event loop on port 0 and stops it (draining) afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from agent_otel.collector.analytics.outbox import backlog
from agent_otel.collector.service import Collector, writer_engine
from agent_otel.collector.storage.database import create_db_engine
from agent_otel.settings import Settings, load_settings

PG_ADMIN_URL = os.environ.get("AGENT_OTEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TESTDATA = Path(__file__).parent / "testdata"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


def _pg_admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        _missing(f"PostgreSQL at {PG_ADMIN_URL}")
        raise


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"agent_otel_t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(PG_ADMIN_URL, name)
    finally:
        with _pg_admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agent-otel.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db_url": db_url,
        "otlp_grpc": "127.0.0.1:0",
        "otlp_http": "127.0.0.1:0",
        "http": "127.0.0.1:0",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(values, environ={})


def wait_for_rollups(engine: Engine, timeout: float = 20.0) -> None:
    """Wait until a running collector's applier has folded every committed rollup delta in
    (deferred rollups, analytics/outbox.py): the outbox is empty exactly when it has."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            pending, _oldest = backlog(conn)
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} rollup deltas still pending after {timeout} s"
        time.sleep(0.05)


@dataclass
class RunningCollector:
    collector: Collector
    settings: Settings
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['otlp-http']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.collector.ports['otlp-grpc']}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['http']}"

    @property
    def engine(self) -> Engine:
        return self.collector.read_engine

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.collector.stop)
            self.thread.join(60)
        assert not self.thread.is_alive(), "collector did not stop"


def start_collector(settings: Settings, **collector_kwargs: Any) -> RunningCollector:
    ready = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        collector = Collector(settings, announce=lambda _line: None, **collector_kwargs)
        holder["collector"] = collector

        async def main() -> None:
            await collector.run(lambda _c: ready.set())

        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="collector", daemon=True)
    thread.start()
    assert ready.wait(60), "collector did not start"
    if failure:
        raise failure[0]
    return RunningCollector(holder["collector"], settings, thread, holder["loop"])


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., RunningCollector]]:
    started: list[RunningCollector] = []

    def factory(db_url: str, **overrides: Any) -> RunningCollector:
        running = start_collector(make_settings(db_url, **overrides))
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def running_collector(db_url: str, collector_factory: Callable[..., RunningCollector]) -> RunningCollector:
    return collector_factory(db_url)


@pytest.fixture
def engine_for() -> Iterator[Callable[..., Engine]]:
    """Engines on a test database, disposed after the test. ``writer=True``: the collector's own
    writer engine (``service.writer_engine``; ``ingest`` as the ingest writer's, whose SQLite
    connections do not attach the rollups file). A test that writes while another thread or
    process does must write through one: on SQLite its transactions take the write lock up front
    (``BEGIN IMMEDIATE``), whereas a plain engine's deferred transaction that has read first gets
    "database is locked" at once, without the busy timeout, when another writer holds the lock."""
    engines: list[Engine] = []

    def factory(url: str, *, writer: bool = False, ingest: bool = False) -> Engine:
        settings = make_settings(url)
        engine = writer_engine(settings, rollups=not ingest, ingest=ingest) if writer else create_db_engine(settings)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()
