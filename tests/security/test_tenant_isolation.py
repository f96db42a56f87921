"""Tenant isolation of the admin API (seeds 002 and 004).

On PostgreSQL, row-level security keeps each tenant's rows invisible to another tenant's admin
token. The test route below reads every tenant table WITHOUT any tenant filter, so only the
policies can hide the other tenant's rows; the same is then tried directly in SQL with the role
the API uses. Authentication itself (401/403/400/503) is checked on both back ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter, Request
from sqlalchemy import Engine, inspect, text

from agent_otel.collector.api.auth import Admin
from agent_otel.collector.security.credentials import digest
from agent_otel.collector.security.registry import create_key
from agent_otel.collector.security.rls import READER_ROLE, rls_report
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.database import libpq_conninfo
from tests.conftest import RunningCollector, make_settings, start_collector
from tests.otlp_helpers import agent_trace, http_exporter, sdk_provider

GLOBAL_TOKEN = "global-admin-token-0123456789"
TENANT_TABLES = ("agents", "agent_executions", "agent_steps", "agent_logs")

router = APIRouter()


@router.get("/api/test/tenants")
def tenants_seen(request: Request, principal: Admin) -> dict[str, Any]:
    """Deliberately unfiltered: what the tables show to this request's database session."""
    engine: Engine = request.app.state.ctx.engine
    seen: dict[str, Any] = {"principal": principal.tenant_id}
    with engine.connect() as conn:
        for table in TENANT_TABLES:
            seen[table] = sorted(r[0] for r in conn.execute(text(f"SELECT DISTINCT tenant_id FROM {table}")))
        if engine.dialect.name == "postgresql":
            seen["role"] = conn.execute(text("SELECT current_user")).scalar_one()
            seen["summary"] = sorted(r[0] for r in conn.execute(text("SELECT DISTINCT tenant_id FROM agent_summary")))
    return seen


@router.get("/api/test/tenants-async")
async def tenants_seen_async(request: Request, principal: Admin) -> dict[str, Any]:
    engine: Engine = request.app.state.ctx.engine
    with engine.connect() as conn:
        return {"agents": sorted(r[0] for r in conn.execute(text("SELECT DISTINCT tenant_id FROM agents")))}


@pytest.fixture
def two_tenants(db_url: str, engine_for: Callable[[str], Engine]) -> Iterator[tuple[RunningCollector, dict[str, str]]]:
    """A collector holding data of tenants acme and globex, and their admin tokens."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    credentials = {}
    for tenant in ("acme", "globex"):
        credentials[f"{tenant}-ingest"] = create_key(engine, "ingest", tenant)[0]
        credentials[tenant] = create_key(engine, "admin", tenant)[0]
    settings = make_settings(db_url, admin_token=GLOBAL_TOKEN, require_ingest_key=True)
    running = start_collector(settings, routers=[router])
    try:
        for tenant in ("acme", "globex"):
            exporter = http_exporter(
                running.http_endpoint, headers={"x-agent-otel-key": credentials[f"{tenant}-ingest"]}
            )
            with sdk_provider(exporter) as tracer:
                agent_trace(tracer, agent=f"{tenant}-bot", fail_tool=True)
        yield running, credentials
    finally:
        running.stop()


def _get(running: RunningCollector, token: str | None, path: str = "/api/test/tenants", **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{running.api}{path}", headers=headers, **kw)


def test_admin_authentication(two_tenants: tuple[RunningCollector, dict[str, str]]) -> None:
    running, credentials = two_tenants
    assert _get(running, None).status_code == 401
    assert _get(running, None).headers["www-authenticate"] == "Bearer"
    assert _get(running, "wrong-token-wrong-token").status_code == 403
    assert _get(running, credentials["acme-ingest"]).status_code == 403  # an ingest key is not an admin token
    assert _get(running, GLOBAL_TOKEN + "x").status_code == 403
    assert _get(running, "x" * 5000).status_code == 403
    assert (
        httpx.get(f"{running.api}/api/test/tenants", headers={"Authorization": f"Basic {GLOBAL_TOKEN}"}).status_code
        == 401
    )
    refused = httpx.get(f"{running.api}/api/test/tenants", params={"token": GLOBAL_TOKEN})
    assert refused.status_code == 400 and GLOBAL_TOKEN not in refused.text
    assert _get(running, credentials["acme"]).json()["principal"] == "acme"
    assert _get(running, GLOBAL_TOKEN).json()["principal"] is None


def test_admin_api_is_disabled_without_any_token(
    sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url)
    auth = running.collector.api_context.auth
    with pytest.raises(Exception, match="disabled") as caught:
        auth.authenticate(f"Bearer {GLOBAL_TOKEN}", set())
    assert getattr(caught.value, "status_code", None) == 503


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_each_tenant_token_sees_only_its_tenant_through_the_api(
    two_tenants: tuple[RunningCollector, dict[str, str]],
) -> None:
    running, credentials = two_tenants
    # alternate callers on pooled connections: a scope must never carry over to the next request
    for _ in range(3):
        for token, expected in ((credentials["acme"], ["acme"]), (credentials["globex"], ["globex"])):
            seen = _get(running, token).json()
            assert seen["role"] == READER_ROLE
            for table in (*TENANT_TABLES, "summary"):
                assert seen[table] == expected, (table, seen)
            assert _get(running, token, "/api/test/tenants-async").json()["agents"] == expected
        everything = _get(running, GLOBAL_TOKEN).json()
        for table in (*TENANT_TABLES, "summary"):
            assert everything[table] == ["acme", "globex"], (table, everything)
    # outside admin requests (writer, health, metric scrapes) nothing is switched
    with running.engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() != READER_ROLE


def _as_reader(url: str, tenant: str | None, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
        if tenant is not None:
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_row_level_security_directly_in_sql_with_the_api_role(
    db_url: str, two_tenants: tuple[RunningCollector, dict[str, str]]
) -> None:
    running, _ = two_tenants
    with running.engine.connect() as conn:
        report = rls_report(conn)
        attributes = conn.execute(
            text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": READER_ROLE}
        ).one()
        partitions = [
            r[0]
            for r in conn.execute(
                text("SELECT relname FROM pg_class WHERE relispartition AND relname LIKE 'agent_executions_%'")
            )
        ]
    assert tuple(attributes) == (False, False, False)
    assert report and all(
        r["rls"] and r["policy"] and r["reader_select"] for r in report if r["table"] != "access_keys"
    )
    assert {r["table"] for r in report} >= {"agents", "agent_executions", "agent_steps", "agent_logs", "usage_daily"}

    for table in (*TENANT_TABLES, "agent_summary", "recent_interactions"):
        assert {r[0] for r in _as_reader(db_url, "acme", f"SELECT tenant_id FROM {table}")} <= {"acme"}, table
        assert _as_reader(db_url, None, f"SELECT tenant_id FROM {table}") == [], table  # unset: fail closed
        assert _as_reader(db_url, "nobody", f"SELECT tenant_id FROM {table}") == [], table
    assert {r[0] for r in _as_reader(db_url, "acme", "SELECT tenant_id FROM agent_executions")} == {"acme"}
    assert {r[0] for r in _as_reader(db_url, "*", "SELECT tenant_id FROM agent_executions")} == {"acme", "globex"}
    # an injected OR cannot widen the tenant: the policy is applied around whatever the query says
    injected = "SELECT tenant_id FROM agent_executions WHERE tenant_id = 'globex' OR 1 = 1"
    assert {r[0] for r in _as_reader(db_url, "acme", injected)} == {"acme"}

    refused = [
        "SELECT * FROM access_keys",
        f"SELECT * FROM {partitions[0]}",  # partitions would bypass the parent's policy: no grant
        "INSERT INTO agents (tenant_id, id, name, first_seen_at, last_seen_at) VALUES ('acme', 'x', 'x', now(), now())",
        "DELETE FROM agent_executions",
        "UPDATE agents SET name = 'x'",
    ]
    for sql in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as_reader(db_url, "*", sql)
    hashes = [digest(c) for c in two_tenants[1].values()]
    assert hashes  # the credentials exist, and the reader could not read them (above)


def test_security_migration_downgrades_and_upgrades_cleanly(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "0003_security-1")
    with engine.connect() as conn:
        assert "access_keys" not in inspect(conn).get_table_names()
        if engine.dialect.name == "postgresql":
            policies = text("SELECT count(*) FROM pg_policies WHERE policyname = 'tenant_isolation'")
            assert conn.execute(policies).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM pg_class WHERE relrowsecurity")).scalar() == 0
    migrate.upgrade(engine)
    assert migrate.check(engine) == []


def test_admin_endpoints_show_each_tenant_only_its_rows(two_tenants: tuple[RunningCollector, dict[str, str]]) -> None:
    """The real admin API (issue 4's routes): a tenant token reads its own tenant, cannot ask for
    another (403), and the global token reads both. Both back ends (RLS is PostgreSQL's extra wall)."""
    running, credentials = two_tenants
    seen: dict[str, set[str]] = {}
    for who, token in (("acme", credentials["acme"]), ("globex", credentials["globex"]), ("all", GLOBAL_TOKEN)):
        response = _get(running, token, "/api/admin/executions")
        assert response.status_code == 200, response.text
        seen[who] = {e["tenant_id"] for e in response.json()["executions"]}
        errors = _get(running, token, "/api/admin/errors")
        assert errors.status_code == 200
    assert seen == {"acme": {"acme"}, "globex": {"globex"}, "all": {"acme", "globex"}}
    assert _get(running, credentials["acme"], "/api/admin/executions", params={"tenant": "globex"}).status_code == 403
    narrowed = _get(running, GLOBAL_TOKEN, "/api/admin/executions", params={"tenant": "globex"})
    assert {e["tenant_id"] for e in narrowed.json()["executions"]} == {"globex"}
    assert _get(running, None, "/api/admin/metrics").status_code == 401
    assert _get(running, "not-a-valid-token-at-all", "/api/admin/metrics").status_code == 403
