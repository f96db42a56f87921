"""Executions search (raw rows, cursor pagination) and tool statistics (raw steps).

Search: newest first, filtered by agent, user, session, status, model and time; ``limit`` rows
per page and an opaque ``next_cursor`` (the last row's start time and id), stable while new
executions arrive. Tools: calls, success rate and latency percentiles per tool over a range of
at most 31 days (read from ``agent_steps``: there is no tool rollup).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from agent_otel.collector.analytics.queries import ExecutionFilter, search_executions, tool_stats
from agent_otel.collector.api.admin import Tenant
from agent_otel.collector.api.admin_common import execution_out, read, tenant_of, time_range
from agent_otel.collector.api.admin_models import ExecutionsResponse, ToolsResponse
from agent_otel.collector.api.auth import Admin

ExecutionStatus = Literal["success", "failed", "timeout", "error"]


def create_executions_router() -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["executions"])

    @router.get("/executions", response_model=ExecutionsResponse, summary="Search executions, newest first")
    def executions(
        request: Request,
        principal: Admin,
        agent_id: Annotated[str | None, Query(max_length=500)] = None,
        user_id: Annotated[str | None, Query(max_length=500)] = None,
        session_id: Annotated[str | None, Query(max_length=500)] = None,
        status: Annotated[list[ExecutionStatus] | None, Query(description="repeatable")] = None,
        model: Annotated[str | None, Query(max_length=500)] = None,
        since: Annotated[datetime | None, Query(description="ISO 8601 (default: 7 days before until)")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = time_range(since, until, timedelta(days=7), timedelta(days=36_600))  # paged: any range
        search = ExecutionFilter(
            scope,
            since=start,
            until=end,
            agent_id=agent_id,
            user_id=user_id,
            session_id=session_id,
            status=tuple(status or ()),
            model=model,
        )
        with read(request) as conn:
            rows, next_cursor = search_executions(conn, search, limit, cursor)
        return {
            "status": "success",
            "count": len(rows),
            "executions": [execution_out(r) for r in rows],
            "next_cursor": next_cursor,
        }

    @router.get("/tools", response_model=ToolsResponse, summary="Tool calls: success rate and latency per tool")
    def tools(
        request: Request,
        principal: Admin,
        since: Annotated[datetime | None, Query(description="ISO 8601 (default: 24 hours before until)")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = time_range(since, until, timedelta(hours=24), timedelta(days=31))
        with read(request) as conn:
            rows = tool_stats(conn, scope, start, end)
        return {"status": "success", "since": start, "until": end, "tools": rows}

    return router
