"""A collector per back end, loaded once per module with demo traffic (two tenants), for the
admin API tests. Tests only read, so they share it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.pipeline.normalize import Limits
from agent_otel.collector.receiver.decode import decode_traces
from agent_otel.collector.storage.transaction import write_group
from agent_otel.sanitize import RedactionCounts
from tests.analytics.conftest import post_traces
from tests.analytics.traffic import demo_requests
from tests.collector.storage.test_write_group import NORMALIZER, PRICER
from tests.conftest import (
    PG_ADMIN_URL,
    RunningCollector,
    _pg_admin,
    _with_database,
    make_settings,
    start_collector,
    wait_for_rollups,
)
from tests.otlp_helpers import encode, finished_spans

TOKEN = "test-admin-token-0123456789"


@dataclass
class Loaded:
    running: RunningCollector
    client: httpx.Client

    def get(self, path: str, **params: object) -> httpx.Response:
        if not params:  # httpx would drop a query string written in the path
            return self.client.get(path)
        return self.client.get(path, params=params)  # type: ignore[arg-type]


def _write_other_tenant(running: RunningCollector, tenant: str) -> None:
    limits = Limits(time.time_ns(), 86_400 * 10**9, 3650 * 86_400 * 10**9, 32)
    batch = NORMALIZER.traces(decode_traces(encode(finished_spans(4)), "protobuf"), tenant, limits, RedactionCounts())
    PRICER.apply(batch)
    with running.collector.jobs_engine.begin() as conn:  # inline rollups: the rollups file attached
        write_group(conn, [batch], [RollupHook()])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'agent-otel.db'}"
    else:
        database = f"agent_otel_t_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as admin:
            admin.execute(f"CREATE DATABASE {database}")
        url = _with_database(PG_ADMIN_URL, database)
    running = start_collector(make_settings(url, admin_token=TOKEN))
    try:
        post_traces(running.http_endpoint, demo_requests(120, seed=3))
        _write_other_tenant(running, "acme")
        wait_for_rollups(running.engine)
        with httpx.Client(base_url=running.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            yield Loaded(running, client)
    finally:
        running.stop()
        if database is not None:
            with _pg_admin() as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
