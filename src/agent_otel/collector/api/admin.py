"""The admin API (issue 4): seed 002's three endpoints, and the assembly of every admin router.

``GET /api/admin/metrics?hours=24``, ``GET /api/admin/errors?limit=10`` and
``GET /api/admin/user-activity/{user_id}?limit=20`` answer in seed 002's shape
(``{"status": "success", "metrics": {...}}`` and so on) with more fields: percentiles, cost,
the status breakdown. ``metrics`` reads hourly rollups only: the window is rounded out to whole
hours (the current hour included). The other routers: ``agents.py`` (ranking, comparison,
series), ``executions.py`` (search, tools), ``usage.py`` (usage, cost, prices, unpriced models).

Every route needs ``Authorization: Bearer <admin token>`` (``auth.Admin``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from agent_otel.collector.analytics.periods import HOUR, floor
from agent_otel.collector.analytics.queries import (
    ExecutionFilter,
    agent_info,
    range_states,
    recent_errors,
    search_executions,
    state_summary,
    user_interactions,
)
from agent_otel.collector.analytics.state import MetricState
from agent_otel.collector.api.admin_common import TENANT_HELP, execution_out, now, read, tenant_of
from agent_otel.collector.api.admin_models import (
    ErrorsResponse,
    MetricsResponse,
    UserActivityResponse,
)
from agent_otel.collector.api.auth import Admin

Tenant = Annotated[str | None, Query(description=TENANT_HELP, max_length=200)]


def create_seed_router() -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["admin"])

    @router.get(
        "/metrics",
        response_model=MetricsResponse,
        summary="System and per-agent performance over the last N hours (seed 002), from hourly rollups",
    )
    def metrics(
        request: Request,
        principal: Admin,
        hours: Annotated[int, Query(ge=1, le=24 * 90, description="window in hours, current hour included")] = 24,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        end = floor("hour", now()) + HOUR
        start = end - timedelta(hours=hours)
        with read(request) as conn:
            ranges = range_states(conn, scope, start, end)
            names = {key: row.name for key, row in agent_info(conn, scope).items()}
        total = MetricState()
        per_agent: dict[str, MetricState] = {}
        agent_names: dict[str, str | None] = {}
        for key, found in ranges.items():
            total.merge(found.state)
            merged = per_agent.get(found.agent_id)
            if merged is None:
                per_agent[found.agent_id] = found.state
            else:
                merged.merge(found.state)
            agent_names[found.agent_id] = names.get(key)
        figures = state_summary(total)
        agent_metrics = {}
        for agent_id in sorted(per_agent):
            f = state_summary(per_agent[agent_id])
            agent_metrics[agent_id] = {
                "name": agent_names.get(agent_id),
                "count": f["executions"],
                "successful": f["successful"],
                "failed": f["executions"] - f["successful"],
                "avg_time_ms": f["avg_duration_ms"],
                "success_rate": f["success_rate"],
                "total_tokens": f["total_tokens"],
                "p50_time_ms": f["p50_duration_ms"],
                "p95_time_ms": f["p95_duration_ms"],
                "p99_time_ms": f["p99_duration_ms"],
                "cost_usd": f["cost_usd"],
            }
        return {
            "status": "success",
            "metrics": {
                "hours": hours,
                "since": start,
                "until": end,
                "total_requests": figures["executions"],
                "successful": figures["successful"],
                "failed": figures["executions"] - figures["successful"],
                "timeout": figures["timeout"],
                "error": figures["error"],
                "success_rate": figures["success_rate"],
                "avg_execution_time_ms": figures["avg_duration_ms"],
                "p50_execution_time_ms": figures["p50_duration_ms"],
                "p95_execution_time_ms": figures["p95_duration_ms"],
                "p99_execution_time_ms": figures["p99_duration_ms"],
                "total_tokens_used": figures["total_tokens"],
                "input_tokens": figures["input_tokens"],
                "output_tokens": figures["output_tokens"],
                "total_cost_usd": figures["cost_usd"],
                "total_credits": figures["credits"],
                "unpriced_llm_calls": figures["unpriced_llm_calls"],
                "agent_metrics": agent_metrics,
            },
        }

    @router.get("/errors", response_model=ErrorsResponse, summary="The most recent failed executions (seed 002)")
    def errors(
        request: Request,
        principal: Admin,
        limit: Annotated[int, Query(ge=1, le=500)] = 10,
        hours: Annotated[int | None, Query(ge=1, le=24 * 366, description="only the last N hours")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        since = now() - timedelta(hours=hours) if hours else None
        with read(request) as conn:
            rows = recent_errors(conn, scope, limit, since)
        return {"status": "success", "count": len(rows), "errors": [execution_out(r) for r in rows]}

    @router.get(
        "/user-activity/{user_id}",
        response_model=UserActivityResponse,
        summary="A user's recent executions and per-agent interactions (seed 002, seed 000)",
    )
    def user_activity(
        request: Request,
        principal: Admin,
        user_id: Annotated[str, Path(min_length=1, max_length=500)],
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        with read(request) as conn:
            rows, _ = search_executions(conn, ExecutionFilter(scope, user_id=user_id), limit)
            interactions = user_interactions(conn, scope, user_id)
        total = sum(i["total_executions"] for i in interactions)
        successful = sum(i["successful_executions"] for i in interactions)
        firsts = [i["first_executed_at"] for i in interactions if i["first_executed_at"] is not None]
        lasts = [i["last_executed_at"] for i in interactions if i["last_executed_at"] is not None]
        fields = [
            "tenant_id",
            "agent_id",
            "agent_name",
            "total_executions",
            "successful_executions",
            "first_executed_at",
            "last_executed_at",
            "is_favorite",
            "rating",
            "feedback",
            "avg_executions_per_day",
            "preferred_time_of_day",
            "preferred_day_of_week",
        ]
        return {
            "status": "success",
            "user_id": user_id,
            "count": len(rows),
            "activity": [execution_out(r) for r in rows],
            "agents": [{k: i.get(k) for k in fields} for i in interactions],
            "summary": {
                "total_executions": total,
                "successful_executions": successful,
                "success_rate": successful / total if total else None,
                "agents_used": sum(1 for i in interactions if i["total_executions"]),
                "first_executed_at": min(firsts) if firsts else None,
                "last_executed_at": max(lasts) if lasts else None,
            },
        }

    return router


def create_admin_routers() -> list[APIRouter]:
    """Every admin router of issue 4 (the collector adds them to its API app)."""
    from agent_otel.collector.api.agents import create_agents_router
    from agent_otel.collector.api.executions import create_executions_router
    from agent_otel.collector.api.usage import create_usage_router

    return [create_seed_router(), create_agents_router(), create_executions_router(), create_usage_router()]
