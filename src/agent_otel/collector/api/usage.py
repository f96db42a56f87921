"""Usage and cost (seeds 002 and 004): per day, per user, per agent or model; prices; unpriced models.

Usage reads ``usage_daily`` (one row per user and day); cost per day, agent or model reads
``agent_metrics`` rollups. Unpriced models are read from the raw steps of a bounded range:
those are the LLM calls the price table could not price (add them to your price_file).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request

from agent_otel.collector.analytics.periods import ceil, floor
from agent_otel.collector.analytics.queries import (
    breakdown,
    range_states,
    unpriced_models,
    usage_rows,
    usage_summary,
)
from agent_otel.collector.analytics.state import MetricState, UsageState
from agent_otel.collector.api.admin import Tenant
from agent_otel.collector.api.admin_common import now, read, tenant_of, time_range
from agent_otel.collector.api.admin_models import (
    CostResponse,
    PricesResponse,
    UnpricedResponse,
    UsageDailyResponse,
    UsageUsersResponse,
    UserUsageResponse,
)
from agent_otel.collector.api.auth import Admin
from agent_otel.collector.storage.schema import model_prices

_LONGEST_DAYS = 3 * 366


def _days(since: date | None, until: date | None, default_days: int) -> tuple[date, date]:
    """[since, until) in whole days; until defaults to tomorrow (today included)."""
    end = until or (now().date() + timedelta(days=1))
    start = since or (end - timedelta(days=default_days))
    if start >= end:
        raise HTTPException(400, "since must be before until")
    if (end - start).days > _LONGEST_DAYS:
        raise HTTPException(400, f"the range may span at most {_LONGEST_DAYS} days")
    return start, end


def create_usage_router() -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["usage and cost"])

    @router.get("/usage/daily", response_model=UsageDailyResponse, summary="Usage and cost per day, all users")
    def usage_daily(
        request: Request,
        principal: Admin,
        since: Annotated[date | None, Query(description="first day (default: 30 days before until)")] = None,
        until: Annotated[date | None, Query(description="day after the last (default: tomorrow)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = _days(since, until, 30)
        with read(request) as conn:
            rows = usage_rows(conn, scope, start, end)
        days: dict[date, tuple[UsageState, set[tuple[str, str]]]] = {}
        for tenant_id, user_id, day, state in rows:
            total, users = days.setdefault(day, (UsageState(), set()))
            total.merge(state)
            if state.interactions:
                users.add((tenant_id, user_id))
        out = [
            {**usage_summary(state), "date": day, "active_users": len(users)}
            for day, (state, users) in sorted(days.items())
        ]
        return {"status": "success", "since": start, "until": end, "days": out}

    @router.get("/usage/users", response_model=UsageUsersResponse, summary="Usage and cost per user over a range")
    def usage_users(
        request: Request,
        principal: Admin,
        since: Annotated[date | None, Query(description="first day (default: 30 days before until)")] = None,
        until: Annotated[date | None, Query(description="day after the last (default: tomorrow)")] = None,
        sort: Literal["cost", "interactions", "tokens", "credits"] = "cost",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = _days(since, until, 30)
        with read(request) as conn:
            rows = usage_rows(conn, scope, start, end)
        users: dict[tuple[str, str], tuple[UsageState, set[date]]] = {}
        for tenant_id, user_id, day, state in rows:
            total, active = users.setdefault((tenant_id, user_id), (UsageState(), set()))
            total.merge(state)
            if state.interactions:
                active.add(day)
        field = {"cost": "cost_usd", "interactions": "interactions", "tokens": "total_tokens", "credits": "credits"}
        out = [
            {
                **usage_summary(state),
                "tenant_id": tenant_id,
                "user_id": user_id,
                "active_days": len(active),
                "agents_used": len(state.agents),
            }
            for (tenant_id, user_id), (state, active) in users.items()
        ]
        out.sort(key=lambda r: (-r[field[sort]], r["user_id"]))
        out = out[:limit]
        return {"status": "success", "since": start, "until": end, "sort": sort, "count": len(out), "users": out}

    @router.get(
        "/usage/users/{user_id}",
        response_model=UserUsageResponse,
        summary="One user's usage per day, with agent, feature, vendor and model breakdowns (seed 004)",
    )
    def usage_user(
        request: Request,
        principal: Admin,
        user_id: Annotated[str, Path(min_length=1, max_length=500)],
        since: Annotated[date | None, Query(description="first day (default: 30 days before until)")] = None,
        until: Annotated[date | None, Query(description="day after the last (default: tomorrow)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = _days(since, until, 30)
        with read(request) as conn:
            rows = usage_rows(conn, scope, start, end, user_id)
        per_day: dict[date, UsageState] = {}
        for _tenant, _user, day, state in rows:
            if day in per_day:
                per_day[day].merge(state)
            else:
                per_day[day] = state
        total = UsageState()
        days = []
        for day, state in sorted(per_day.items()):
            total.merge(state)
            days.append(
                {
                    **usage_summary(state),
                    "date": day,
                    "unique_agents_used": len(state.agents),
                    "agent_usage": dict(sorted(state.agents.items())),
                    "feature_usage": dict(sorted(state.features.items())),
                    "vendor_usage": breakdown(state.vendors),
                    "model_usage": breakdown(state.models),
                }
            )
        return {
            "status": "success",
            "user_id": user_id,
            "since": start,
            "until": end,
            "totals": usage_summary(total),
            "days": days,
        }

    @router.get("/cost", response_model=CostResponse, summary="LLM cost per day, agent or model, from rollups")
    def cost(
        request: Request,
        principal: Admin,
        group_by: Literal["day", "agent", "model"] = "day",
        since: Annotated[datetime | None, Query(description="ISO 8601 (default: 30 days before until)")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601 (default: now)")] = None,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        start, end = time_range(since, until, timedelta(days=30), timedelta(days=_LONGEST_DAYS))
        buckets: dict[str, list[float]] = {}  # key -> [executions, input, output, nano-dollars]
        total = MetricState()
        with read(request) as conn:
            if group_by == "day":
                start, end = floor("day", start), ceil("day", end)
                day = start
                while day < end:  # each day is its own range: one day row per agent
                    for found in range_states(conn, scope, day, day + timedelta(days=1)).values():
                        _add(buckets, day.date().isoformat(), found.state)
                        total.merge(found.state)
                    day += timedelta(days=1)
            else:
                for found in range_states(conn, scope, start, end, maps=group_by == "model").values():
                    total.merge(found.state)
                    if group_by == "agent":
                        _add(buckets, found.agent_id, found.state)
        if group_by == "model":
            for model in total.models.keys() | total.model_costs.keys():
                buckets[model] = [total.models.get(model, 0), -1, -1, total.model_costs.get(model, 0)]
        out: list[dict[str, Any]] = [
            {
                "key": key,
                "executions": int(v[0]),
                "input_tokens": int(v[1]) if v[1] >= 0 else None,
                "output_tokens": int(v[2]) if v[2] >= 0 else None,
                "cost_usd": v[3] / 1e9,
            }
            for key, v in buckets.items()
        ]
        if group_by == "day":
            out.sort(key=lambda b: b["key"])
        else:
            out.sort(key=lambda b: (-b["cost_usd"], b["key"]))
        return {
            "status": "success",
            "group_by": group_by,
            "since": start,
            "until": end,
            "total_cost_usd": total.cost / 1e9,
            "unpriced_llm_calls": total.unpriced,
            "buckets": out,
        }

    @router.get(
        "/models/unpriced",
        response_model=UnpricedResponse,
        summary="Models whose LLM calls have no price (counted, never priced at zero)",
    )
    def unpriced(
        request: Request,
        principal: Admin,
        hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24 * 7,
        tenant: Tenant = None,
    ) -> dict[str, Any]:
        scope = tenant_of(principal, tenant)
        end = now()
        start = end - timedelta(hours=hours)
        with read(request) as conn:
            models = unpriced_models(conn, scope, start, end)
        return {
            "status": "success",
            "since": start,
            "until": end,
            "models": models,
            "hint": "add these models to your price_file (same format as the built-in model_prices.yaml)",
        }

    @router.get("/prices", response_model=PricesResponse, summary="The price table in use (built-in and price_file)")
    def prices(request: Request, principal: Admin) -> dict[str, Any]:
        del principal
        with read(request) as conn:
            rows = [dict(r._mapping) for r in conn.execute(model_prices.select().order_by("provider", "model"))]
        out = [{k: r[k] for k in _PRICE_FIELDS} for r in rows]
        return {"status": "success", "count": len(out), "prices": out}

    return router


_PRICE_FIELDS = (
    "provider",
    "model",
    "effective_from",
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "source",
)


def _add(buckets: dict[str, list[float]], key: str, state: MetricState) -> None:
    entry = buckets.setdefault(key, [0, 0, 0, 0])
    entry[0] += state.total
    entry[1] += state.input_tokens
    entry[2] += state.output_tokens
    entry[3] += state.cost


__all__ = ["create_usage_router"]
