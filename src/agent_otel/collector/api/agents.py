"""Agents: ranking, side-by-side comparison and one agent's time series (seed 000, 003).

All three read ``agent_metrics`` (rollups), so they answer in the same time whatever the
number of executions. Ranking and comparison merge the rollups covering [since, until)
(rounded out to whole hours); the series returns the stored rows of one period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request

from agent_otel.collector.analytics.periods import Period, ceil, floor
from agent_otel.collector.analytics.queries import (
    agent_info,
    range_states,
    range_unique_users,
    series,
    state_summary,
    top,
)
from agent_otel.collector.analytics.state import MetricState
from agent_otel.collector.api.admin import Tenant
from agent_otel.collector.api.admin_common import read, tenant_of, time_range
from agent_otel.collector.api.admin_models import AgentsResponse, CompareResponse, SeriesResponse
from agent_otel.collector.api.auth import Admin

SortKey = Literal["executions", "success_rate", "p95", "cost", "rating", "errors", "name"]
_SORT: Final = {
    "executions": "executions",
    "success_rate": "success_rate",
    "p95": "p95_duration_ms",
    "cost": "cost_usd",
    "rating": "avg_rating",
    "errors": "failed_total",
    "name": "name",
}
_SERIES_DEFAULT: Final[dict[str, timedelta]] = {
    "hour": timedelta(hours=48),
    "day": timedelta(days=30),
    "week": timedelta(weeks=26),
    "month": timedelta(days=366),
}
_LONGEST: Final = timedelta(days=3 * 366)
_MAX_POINTS: Final = 2000


def _summary(tenant: str, agent: str, state: MetricState, info: Any) -> dict[str, Any]:
    figures = state_summary(state)
    figures.update(
        tenant_id=tenant,
        agent_id=agent,
        name=info.name if info is not None else None,
        avg_rating=info.avg_rating if info is not None else None,
        ratings=int(info.rating_count or 0) if info is not None else 0,
        total_users=int(info.total_users or 0) if info is not None else 0,
        total_executions=int(info.total_executions or 0) if info is not None else 0,
        last_executed_at=info.last_executed_at if info is not None else None,
    )
    return figures


def create_agents_router() -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["agents"])

    @router.get("/agents", response_model=AgentsResponse, summary="Agents ranked over a time range")
    def list_agents(
        request: Request,
        principal: Admin,
        since: Annotated[datetime | None, Query(description="ISO 8601 (default: 30 days before until)")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        sort: SortKey = "executions",
        order: Literal["asc", "desc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        include_idle: Annotated[bool, Query(description="also list agents without executions in the range")] = False,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = time_range(since, until, timedelta(days=30), _LONGEST)
        with read(request) as conn:
            ranges = range_states(conn, scope, start, end)
            infos = agent_info(conn, scope)
        keys = set(ranges) | (set(infos) if include_idle else set())
        rows = []
        for key in keys:
            found = ranges.get(key)
            row = _summary(key[0], key[1], found.state if found else MetricState(), infos.get(key))
            row["failed_total"] = row["executions"] - row["successful"]
            rows.append(row)
        field = _SORT[sort]
        present = [r for r in rows if r[field] is not None]
        missing = [r for r in rows if r[field] is None]  # unknown values last, whatever the order
        present.sort(key=lambda r: (r[field], r["agent_id"]), reverse=order == "desc")
        missing.sort(key=lambda r: r["agent_id"])
        ranked = (present + missing)[:limit]
        for r in ranked:
            del r["failed_total"]
        return {
            "status": "success",
            "since": start,
            "until": end,
            "sort": sort,
            "order": order,
            "count": len(ranked),
            "agents": ranked,
        }

    @router.get("/agents/compare", response_model=CompareResponse, summary="Two or more agents side by side")
    def compare(
        request: Request,
        principal: Admin,
        agent_id: Annotated[list[str], Query(description="repeat: ?agent_id=a&agent_id=b", max_length=20)],
        since: Annotated[datetime | None, Query(description="ISO 8601 (default: 30 days before until)")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        wanted = list(dict.fromkeys(agent_id))
        if len(wanted) < 2:
            raise HTTPException(400, "compare needs at least two distinct agent_id values")
        start, end = time_range(since, until, timedelta(days=30), _LONGEST)
        with read(request) as conn:
            infos = agent_info(conn, scope, wanted)
            unknown = sorted(set(wanted) - {agent for _tenant, agent in infos})
            if unknown:
                raise HTTPException(404, f"unknown agent(s): {', '.join(unknown)}")
            ranges = range_states(conn, scope, start, end, wanted, maps=True)
            users = range_unique_users(conn, scope, start, end, wanted)
        out = []
        for key in sorted(infos, key=lambda k: (wanted.index(k[1]), k[0])):
            found = ranges.get(key)
            state = found.state if found else MetricState()
            row = _summary(key[0], key[1], state, infos[key])
            row.update(
                unique_users=users.get(key, 0),
                models=top(state.models),
                model_costs={m: c / 1e9 for m, c in top(state.model_costs).items()},
                errors=top(state.errors),
                intents=top(state.intents),
            )
            out.append(row)
        return {"status": "success", "since": start, "until": end, "agents": out}

    @router.get(
        "/agents/{agent_id}/series",
        response_model=SeriesResponse,
        summary="One agent's rollups per hour, day, week or month",
    )
    def agent_series(
        request: Request,
        principal: Admin,
        agent_id: Annotated[str, Path(min_length=1, max_length=500)],
        period: Period = "day",
        since: Annotated[
            datetime | None, Query(description="ISO 8601 (default: 30 days for days, 48 hours for hours...)")
        ] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = time_range(since, until, _SERIES_DEFAULT[period], _LONGEST)
        start, end = floor(period, start), ceil(period, end)
        with read(request) as conn:
            if not agent_info(conn, scope, [agent_id]):
                raise HTTPException(404, f"unknown agent: {agent_id}")
            points = series(conn, scope, agent_id, period, start, end)
        if len(points) > _MAX_POINTS:
            raise HTTPException(400, f"more than {_MAX_POINTS} points: use a coarser period or a shorter range")
        out = []
        for period_start, state in points:
            figures = state_summary(state)
            figures.update(period_start=period_start, unique_users=state.unique_users)
            out.append(figures)
        return {
            "status": "success",
            "agent_id": agent_id,
            "period": period,
            "since": start,
            "until": end,
            "points": out,
        }

    return router
