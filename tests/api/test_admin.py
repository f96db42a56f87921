"""The admin API against a loaded collector: seed 002's shapes, and every figure checked
against the raw rows (rollups answer, raw rows are the truth)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import HTTPException

from agent_otel.collector.analytics.aggregate import ExecutionFacts
from agent_otel.collector.analytics.periods import HOUR, floor
from agent_otel.collector.api.admin_common import tenant_of
from agent_otel.collector.api.auth import AdminPrincipal
from agent_otel.collector.pipeline.pricing import builtin_prices
from tests.analytics.helpers import read_raw
from tests.api.conftest import TOKEN, Loaded
from tests.conftest import make_settings, start_collector


def raw(loaded: Loaded, tenant: str | None = "default") -> list[ExecutionFacts]:
    executions, _ = read_raw(loaded.running.engine)
    return [e for e in executions if tenant is None or e.tenant_id == tenant]


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "success"
    return body


def lower_quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


# -- authentication ---------------------------------------------------------------------------------


def test_admin_endpoints_need_the_bearer_token(loaded: Loaded) -> None:
    url = f"{loaded.running.api}/api/admin/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 403
    refused = httpx.get(url, params={"admin_token": TOKEN})  # seed 002's habit: refused, tokens leak from URLs
    assert refused.status_code == 400 and "query string" in refused.text


def test_without_a_configured_token_the_admin_api_says_how_to_set_one(sqlite_url: str) -> None:
    running = start_collector(make_settings(sqlite_url))
    try:
        response = httpx.get(f"{running.api}/api/admin/agents", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 503 and "AGENT_OTEL_ADMIN_TOKEN" in response.text
    finally:
        running.stop()


def test_a_tenant_token_reads_its_own_tenant_only() -> None:
    assert tenant_of(AdminPrincipal(tenant_id=None), None) is None
    assert tenant_of(AdminPrincipal(tenant_id=None), "acme") == "acme"
    assert tenant_of(AdminPrincipal(tenant_id="acme"), None) == "acme"
    with pytest.raises(HTTPException) as refused:
        tenant_of(AdminPrincipal(tenant_id="acme"), "default")
    assert refused.value.status_code == 403


# -- seed 002 ---------------------------------------------------------------------------------------


def test_metrics_in_seed_shape_equal_the_raw_rows(loaded: Loaded) -> None:
    body = ok(loaded.get("/api/admin/metrics", hours=24, tenant="default"))
    m = body["metrics"]
    since = datetime.fromisoformat(m["since"])
    assert since == floor("hour", datetime.now(UTC)) + HOUR - timedelta(hours=24) or since < datetime.now(UTC)
    rows = [e for e in raw(loaded) if e.started_at >= since]
    assert m["total_requests"] == len(rows) > 0
    successful = sum(e.status == "success" for e in rows)
    assert (m["successful"], m["failed"]) == (successful, len(rows) - successful)
    assert m["timeout"] == sum(e.status == "timeout" for e in rows)
    assert m["success_rate"] == pytest.approx(successful / len(rows))
    assert m["avg_execution_time_ms"] == pytest.approx(sum(e.duration for e in rows) / len(rows))
    assert m["total_tokens_used"] == sum(e.input_tokens + e.output_tokens for e in rows)
    assert m["total_cost_usd"] == pytest.approx(sum(e.cost_usd or 0 for e in rows), rel=1e-9)
    durations = [e.duration for e in rows]
    for q, key in ((0.5, "p50_execution_time_ms"), (0.95, "p95_execution_time_ms"), (0.99, "p99_execution_time_ms")):
        assert m[key] == pytest.approx(lower_quantile(durations, q), rel=0.01)
    per_agent = Counter(e.agent_id for e in rows)
    assert {a: v["count"] for a, v in m["agent_metrics"].items()} == dict(per_agent)
    bot = m["agent_metrics"]["support-bot"]
    assert set(bot) >= {"count", "avg_time_ms", "success_rate", "total_tokens"}  # seed 002's keys
    assert bot["total_tokens"] == sum(e.input_tokens + e.output_tokens for e in rows if e.agent_id == "support-bot")


def test_metrics_of_every_tenant_for_the_global_token(loaded: Loaded) -> None:
    everything = ok(loaded.get("/api/admin/metrics"))["metrics"]
    acme = ok(loaded.get("/api/admin/metrics", tenant="acme"))["metrics"]
    assert acme["total_requests"] == 4 and set(acme["agent_metrics"]) == {"support-bot-id"}
    assert everything["total_requests"] == len(raw(loaded, None))


def test_errors_are_the_newest_failures(loaded: Loaded) -> None:
    body = ok(loaded.get("/api/admin/errors", limit=5, tenant="default"))
    failures = sorted(
        (e for e in raw(loaded) if e.status != "success"), key=lambda e: (e.started_at, e.execution_id), reverse=True
    )
    assert body["count"] == 5
    assert [e["execution_id"] for e in body["errors"]] == [e.execution_id for e in failures[:5]]
    assert all(e["status"] in ("failed", "timeout", "error") and e["error_code"] for e in body["errors"])
    assert loaded.get("/api/admin/errors", limit=0).status_code == 422


def test_user_activity_lists_one_users_executions_and_agents(loaded: Loaded) -> None:
    user = Counter(e.user_id for e in raw(loaded)).most_common(1)[0][0]
    body = ok(loaded.get(f"/api/admin/user-activity/{user}", limit=3))
    mine = [e for e in raw(loaded) if e.user_id == user]
    assert body["user_id"] == user and body["count"] == 3
    assert all(a["user_id"] == user for a in body["activity"])
    starts = [a["started_at"] for a in body["activity"]]
    assert starts == sorted(starts, reverse=True)
    assert body["summary"]["total_executions"] == len(mine)
    assert {a["agent_id"]: a["total_executions"] for a in body["agents"]} == dict(Counter(e.agent_id for e in mine))
    assert all(0 <= a["preferred_time_of_day"] <= 23 for a in body["agents"])
    unknown = ok(loaded.get("/api/admin/user-activity/nobody"))
    assert unknown["count"] == 0 and unknown["summary"]["success_rate"] is None


# -- agents -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "field"),
    [("executions", "executions"), ("success_rate", "success_rate"), ("p95", "p95_duration_ms"), ("cost", "cost_usd")],
)
def test_agents_are_ranked(loaded: Loaded, sort: str, field: str) -> None:
    body = ok(loaded.get("/api/admin/agents", sort=sort, tenant="default"))
    values = [a[field] for a in body["agents"] if a[field] is not None]
    assert values == sorted(values, reverse=True) and len(values) >= 5
    ascending = ok(loaded.get("/api/admin/agents", sort=sort, order="asc", tenant="default"))["agents"]
    assert [a[field] for a in ascending if a[field] is not None] == sorted(values)
    counts = Counter(e.agent_id for e in raw(loaded))
    assert {a["agent_id"]: a["executions"] for a in body["agents"]} == dict(counts)


def test_agents_ranked_by_rating_come_from_feedback(loaded: Loaded) -> None:
    agents = ok(loaded.get("/api/admin/agents", sort="rating", tenant="default"))["agents"]
    rated = [a for a in agents if a["avg_rating"] is not None]
    assert rated and all(1 <= a["avg_rating"] <= 5 and a["ratings"] > 0 for a in rated)
    assert [a["avg_rating"] for a in rated] == sorted((a["avg_rating"] for a in rated), reverse=True)


def test_compare_two_agents(loaded: Loaded) -> None:
    body = ok(loaded.get("/api/admin/agents/compare?agent_id=support-bot&agent_id=research-agent&tenant=default"))
    assert [a["agent_id"] for a in body["agents"]] == ["support-bot", "research-agent"]
    for entry in body["agents"]:
        mine = [e for e in raw(loaded) if e.agent_id == entry["agent_id"]]
        assert entry["executions"] == len(mine)
        assert entry["unique_users"] == len({e.user_id for e in mine if e.user_id})
        assert sum(entry["models"].values()) <= len(mine)
    assert loaded.get("/api/admin/agents/compare", agent_id="support-bot").status_code == 400
    missing = loaded.get("/api/admin/agents/compare?agent_id=support-bot&agent_id=ghost")
    assert missing.status_code == 404 and "ghost" in missing.text


def test_series_per_day_and_hour(loaded: Loaded) -> None:
    mine = [e for e in raw(loaded) if e.agent_id == "support-bot"]
    days = ok(loaded.get("/api/admin/agents/support-bot/series", period="day", tenant="default"))
    assert sum(p["executions"] for p in days["points"]) == len(mine)
    hours = ok(loaded.get("/api/admin/agents/support-bot/series", period="hour", tenant="default"))
    assert {p["period_start"] for p in hours["points"]} == {
        floor("hour", e.started_at).isoformat().replace("+00:00", "Z") for e in mine
    }
    assert all(p["unique_users"] >= 1 for p in hours["points"])
    assert loaded.get("/api/admin/agents/ghost/series").status_code == 404
    assert loaded.get("/api/admin/agents/support-bot/series", period="year").status_code == 422


# -- executions and tools -----------------------------------------------------------------------------


def test_execution_search_pages_through_everything_once(loaded: Loaded) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7, "tenant": "default", "since": "2000-01-01T00:00:00Z"}
        if cursor:
            params["cursor"] = cursor
        body = ok(loaded.get("/api/admin/executions", **params))
        seen += [e["execution_id"] for e in body["executions"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(raw(loaded))
    assert pages == math.ceil(len(seen) / 7)


def test_execution_search_filters(loaded: Loaded) -> None:
    rows = raw(loaded)
    failed = ok(loaded.get("/api/admin/executions?status=failed&status=timeout&limit=1000&tenant=default"))
    assert failed["count"] == sum(e.status in ("failed", "timeout") for e in rows)
    model = ok(loaded.get("/api/admin/executions", model="gpt-4.1", limit=1000, tenant="default"))
    assert model["count"] == sum(e.model == "gpt-4.1" for e in rows) > 0
    agent = ok(loaded.get("/api/admin/executions", agent_id="sql-analyst", user_id=rows[0].user_id, limit=1000))
    assert all(e["agent_id"] == "sql-analyst" and e["user_id"] == rows[0].user_id for e in agent["executions"])
    assert loaded.get("/api/admin/executions", cursor="not-a-cursor").status_code == 400
    assert loaded.get("/api/admin/executions", status="exploded").status_code == 422
    backwards = loaded.get("/api/admin/executions", since="2030-01-01T00:00:00Z", until="2029-01-01T00:00:00Z")
    assert backwards.status_code == 400


def test_tools_success_rates_and_latencies(loaded: Loaded) -> None:
    body = ok(loaded.get("/api/admin/tools", tenant="default"))
    from sqlalchemy import text

    with loaded.running.engine.connect() as conn:
        calls = dict(
            conn.execute(
                text(
                    "SELECT tool_name, count(*) FROM agent_steps WHERE kind = 'tool' AND tenant_id = 'default'"
                    " GROUP BY tool_name"
                )
            ).fetchall()
        )
    assert {t["tool"]: t["calls"] for t in body["tools"]} == calls
    for tool in body["tools"]:
        assert 0 <= tool["success_rate"] <= 1 and tool["p50_duration_ms"] <= tool["max_duration_ms"]


# -- usage and cost ---------------------------------------------------------------------------------------


def test_usage_per_day_and_per_user(loaded: Loaded) -> None:
    rows = [e for e in raw(loaded) if e.user_id]
    days = ok(loaded.get("/api/admin/usage/daily", tenant="default"))["days"]
    assert sum(d["interactions"] for d in days) == len(rows)
    assert sum(d["cost_usd"] for d in days) == pytest.approx(sum(e.cost_usd or 0 for e in rows), rel=1e-9)
    users = ok(loaded.get("/api/admin/usage/users", sort="interactions", tenant="default"))["users"]
    assert {u["user_id"]: u["interactions"] for u in users} == dict(Counter(e.user_id for e in rows))
    assert [u["interactions"] for u in users] == sorted((u["interactions"] for u in users), reverse=True)
    one = ok(loaded.get(f"/api/admin/usage/users/{users[0]['user_id']}", tenant="default"))
    assert one["totals"]["interactions"] == users[0]["interactions"]
    day = one["days"][0]
    assert sum(day["agent_usage"].values()) == day["interactions"]
    assert sum(v["interactions"] for v in day["model_usage"].values()) <= day["interactions"]


def test_cost_per_agent_model_and_day_add_up(loaded: Loaded) -> None:
    total = sum(e.cost_usd or 0 for e in raw(loaded))
    for group_by in ("agent", "model", "day"):
        body = ok(loaded.get("/api/admin/cost", group_by=group_by, tenant="default"))
        assert body["total_cost_usd"] == pytest.approx(total, rel=1e-9)
        assert sum(b["cost_usd"] for b in body["buckets"]) == pytest.approx(total, rel=1e-9)
    by_model = {b["key"]: b for b in ok(loaded.get("/api/admin/cost", group_by="model"))["buckets"]}
    assert "gpt-4o-mini" in by_model and by_model["gpt-4o-mini"]["input_tokens"] is None


def test_unpriced_models_and_the_price_table(loaded: Loaded) -> None:
    body = ok(loaded.get("/api/admin/models/unpriced", tenant="default"))
    assert [m["model"] for m in body["models"]] == ["llama-3.1-70b-local"]
    assert body["models"][0]["calls"] > 0 and "price_file" in body["hint"]
    prices = ok(loaded.get("/api/admin/prices"))
    assert prices["count"] == len({(p.provider, p.model, p.effective_from) for p in builtin_prices()})
