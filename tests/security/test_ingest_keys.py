"""Ingest keys end to end: the CLI stores them hashed, the SDK exporters send them (HTTP header,
gRPC metadata, Authorization: Bearer), rows carry the key's tenant, bad keys are refused, and the
hot path never asks the database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.sdk.trace.export import SpanExportResult
from sqlalchemy import Engine, event, inspect, text

from agent_otel.cli import main
from agent_otel.collector.security.credentials import digest
from agent_otel.collector.security.registry import create_key, revoke_key
from agent_otel.collector.storage import migrate
from tests.conftest import RunningCollector
from tests.otlp_helpers import (
    RecordingExporter,
    agent_trace,
    encode,
    finished_spans,
    grpc_exporter,
    http_exporter,
    sdk_provider,
)

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _created_credential(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(("aoi_", "aoa_")))


@pytest.mark.parametrize("command", ["keys", "tokens"])
def test_cli_creates_lists_and_revokes_credentials_stored_hashed(
    db_url: str, engine_for: Callable[[str], Engine], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "create", "--db", db_url, "--tenant", "acme", "--name", "prod agents"]) == 0
    credential = _created_credential(capsys.readouterr().out)
    assert credential.startswith("aoi_" if command == "keys" else "aoa_")

    assert main([command, "list", "--db", db_url]) == 0
    listing = capsys.readouterr().out
    assert credential[:8] in listing and "tenant=acme" in listing and "'prod agents'" in listing
    assert credential not in listing

    stored = _rows(engine_for(db_url), "SELECT * FROM access_keys")
    assert len(stored) == 1
    flat = " ".join(str(v) for v in stored[0])
    assert credential not in flat and digest(credential) in flat  # only the hash is stored

    assert main([command, "revoke", "--db", db_url, credential[:8] + "..."]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main([command, "list", "--db", db_url]) == 0
    assert "no " in capsys.readouterr().out
    assert main([command, "list", "--db", db_url, "--all", "--json"]) == 0
    assert '"revoked_at": "' in capsys.readouterr().out
    assert main([command, "revoke", "--db", db_url, "ik_000000000000"]) == 1
    assert main([command, "create", "--db", db_url, "--tenant", "Not A Tenant"]) == 2


def _keys(url: str, engine_for: Callable[[str], Engine], *tenants: str) -> dict[str, str]:
    engine = engine_for(url)
    migrate.upgrade(engine)
    return {tenant: create_key(engine, "ingest", tenant)[0] for tenant in tenants}


def test_rows_carry_the_tenant_of_the_key_on_both_transports(
    db_url: str, engine_for: Callable[[str], Engine], collector_factory: Callable[..., RunningCollector]
) -> None:
    keys = _keys(db_url, engine_for, "acme", "globex")
    running = collector_factory(db_url, require_ingest_key=True)
    sent: dict[str, list[str]] = {"acme": [], "globex": []}
    exporters = [
        ("acme", http_exporter(running.http_endpoint, headers={"x-agent-otel-key": keys["acme"]})),
        ("globex", grpc_exporter(running.grpc_endpoint, headers=(("authorization", f"Bearer {keys['globex']}"),))),
        ("globex", http_exporter(running.http_endpoint, headers={"Authorization": f"Bearer {keys['globex']}"})),
        ("acme", grpc_exporter(running.grpc_endpoint, headers=(("x-agent-otel-key", keys["acme"]),))),
    ]
    for tenant, inner in exporters:
        exporter = RecordingExporter(inner)
        with sdk_provider(exporter) as tracer:
            sent[tenant].append(agent_trace(tracer, agent=f"{tenant}-bot")["execution_id"])
        assert exporter.results == [SpanExportResult.SUCCESS] * 4  # SimpleSpanProcessor: one export per span

    engine = running.engine
    stored = dict(_rows(engine, "SELECT execution_id, tenant_id FROM agent_executions"))
    assert stored == {e: t for t, ids in sent.items() for e in ids}
    tables_with_tenant = [
        t
        for t in inspect(engine).get_table_names()
        if "tenant_id" in {c["name"] for c in inspect(engine).get_columns(t)} and t != "access_keys"
    ]
    for table in tables_with_tenant:
        tenants = {row[0] for row in _rows(engine, f"SELECT DISTINCT tenant_id FROM {table}")}
        assert tenants <= {"acme", "globex"}, table
    agents = set(_rows(engine, "SELECT tenant_id, name FROM agents"))
    assert agents == {("acme", "acme-bot"), ("globex", "globex-bot")}


def _grpc_export(endpoint: str, body: bytes, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(TRACE_EXPORT)
        try:
            call(body, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_missing_unknown_and_revoked_keys_are_refused(
    db_url: str, engine_for: Callable[[str], Engine], collector_factory: Callable[..., RunningCollector]
) -> None:
    keys = _keys(db_url, engine_for, "acme")
    running = collector_factory(db_url, require_ingest_key=True)
    body = encode(finished_spans(count=1))
    url = f"{running.http_endpoint}/v1/traces"
    proto = {"Content-Type": "application/x-protobuf"}

    missing = httpx.post(url, content=body, headers=proto)
    assert missing.status_code == 401
    assert "ingest key is required" in status_pb2.Status.FromString(missing.content).message
    wrong = httpx.post(url, content=body, headers={**proto, "x-agent-otel-key": "aoi_" + "x" * 43})
    assert wrong.status_code == 403
    assert "aoi_xxx" not in wrong.text  # the presented key is never echoed
    huge = httpx.post(url, content=body, headers={**proto, "x-agent-otel-key": "k" * 4000})
    assert huge.status_code == 403
    assert _grpc_export(running.grpc_endpoint, body, ()) is grpc.StatusCode.UNAUTHENTICATED
    assert (
        _grpc_export(running.grpc_endpoint, body, (("x-agent-otel-key", "nope"),)) is grpc.StatusCode.PERMISSION_DENIED
    )
    assert _rows(running.engine, "SELECT count(*) FROM agent_steps") == [(0,)]

    good = httpx.post(url, content=body, headers={**proto, "x-agent-otel-key": keys["acme"]})
    assert good.status_code == 200
    revoke_key(running.collector.engine, "ingest", keys["acme"][:8])
    assert running.collector.keys.refresh(running.collector.engine)
    revoked = httpx.post(
        url, content=encode(finished_spans(count=1)), headers={**proto, "x-agent-otel-key": keys["acme"]}
    )
    assert revoked.status_code == 403
    assert (
        _grpc_export(running.grpc_endpoint, body, (("x-agent-otel-key", keys["acme"]),))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    assert _rows(running.engine, "SELECT count(*) FROM agent_executions") == [(1,)]


def test_keys_are_optional_unless_required(
    sqlite_url: str, engine_for: Callable[[str], Engine], collector_factory: Callable[..., RunningCollector]
) -> None:
    keys = _keys(sqlite_url, engine_for, "acme")
    running = collector_factory(sqlite_url, default_tenant="home")
    url = f"{running.http_endpoint}/v1/traces"
    proto = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=encode(finished_spans(1)), headers=proto).status_code == 200
    keyed = {**proto, "x-agent-otel-key": keys["acme"]}
    assert httpx.post(url, content=encode(finished_spans(1)), headers=keyed).status_code == 200
    # a wrong key is an error even when keys are optional: it never falls back to the default tenant
    assert (
        httpx.post(url, content=encode(finished_spans(1)), headers={**proto, "x-agent-otel-key": "bad"}).status_code
        == 403
    )
    counts = dict(_rows(running.engine, "SELECT tenant_id, count(*) FROM agent_executions GROUP BY tenant_id"))
    assert counts == {"home": 1, "acme": 1}


def test_new_keys_are_picked_up_by_the_background_refresh(
    sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url, require_ingest_key=True, **{"security.key_refresh_seconds": 0.1})
    credential, _ = create_key(running.collector.engine, "ingest", "late")
    pause = threading.Event()
    for _ in range(100):  # the refresh job runs every 0.1 s; give it up to 10 s on a busy machine
        if running.collector.keys.tenant_of(credential, "ingest") == "late":
            break
        pause.wait(0.1)
    headers = {"Content-Type": "application/x-protobuf", "x-agent-otel-key": credential}
    response = httpx.post(f"{running.http_endpoint}/v1/traces", content=encode(finished_spans(1)), headers=headers)
    assert response.status_code == 200


def test_the_hot_path_never_looks_keys_up_in_the_database(
    db_url: str, engine_for: Callable[[str], Engine], collector_factory: Callable[..., RunningCollector]
) -> None:
    keys = _keys(db_url, engine_for, "acme")
    running = collector_factory(db_url, require_ingest_key=True, **{"security.key_refresh_seconds": 3600})
    lookups: list[str] = []
    for engine in (running.collector.engine, running.collector.read_engine):

        @event.listens_for(engine, "before_cursor_execute")
        def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "access_keys" in statement:
                lookups.append(statement)

    headers = {"Content-Type": "application/x-protobuf", "x-agent-otel-key": keys["acme"]}
    with httpx.Client() as client:
        for _ in range(30):
            response = client.post(
                f"{running.http_endpoint}/v1/traces", content=encode(finished_spans(1)), headers=headers
            )
            assert response.status_code == 200
    assert lookups == []
    assert _rows(running.engine, "SELECT count(*) FROM agent_executions WHERE tenant_id = 'acme'") == [(30,)]
