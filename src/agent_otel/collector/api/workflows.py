"""Workflows and sessions (seed 003): multi-step executions read back as trees.

A workflow is one trace: its agent executions and their steps. ``GET
/api/admin/workflows/{trace_id}`` returns each execution with its steps nested by parent span
(status, duration, tokens, cost, error of every step), the spans of the trace that belong to no
execution (workflow wrappers such as Traceloop's ``@workflow`` or the openai-agents trace root),
and totals for the whole workflow. ``GET /api/admin/sessions/{session_id}`` returns a session's
executions (newest last) and their totals.

Both need the admin bearer token (``Admin`` dependency); a tenant token sees its tenant only.
Reads go through the API's read engine, never the writer's connection.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy import Engine, Select, select

from agent_otel.collector.api.auth import Admin, AdminPrincipal
from agent_otel.collector.storage.schema import agent_executions, agent_steps, agents

_TRACE_ID: Final = re.compile(r"^[0-9a-fA-F]{32}$")
_STATUS_RANK: Final = {"success": 0, "failed": 1, "timeout": 2, "error": 3}
_EXECUTION_FIELDS: Final = (
    "execution_id",
    "agent_id",
    "user_id",
    "session_id",
    "status",
    "duration",
    "started_at",
    "completed_at",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "credits_consumed",
    "llm_calls",
    "tool_calls",
    "error_code",
    "error_message",
    "http_status",
    "trace_id",
    "span_id",
    "parent_execution_id",
)
_STEP_FIELDS: Final = (
    "span_id",
    "parent_span_id",
    "kind",
    "name",
    "tool_name",
    "model",
    "provider",
    "status",
    "duration",
    "started_at",
    "completed_at",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "error_type",
    "error_message",
    "streaming",
    "finish_reason",
)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.ctx.engine
    return engine


def _scoped(statement: Select[Any], table: Any, principal: AdminPrincipal) -> Select[Any]:
    return statement if principal.tenant_id is None else statement.where(table.c.tenant_id == principal.tenant_id)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _record(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    mapping = row._mapping
    out = {name: _jsonable(mapping[name]) for name in fields}
    if "duration" in out:
        out["duration_ms"] = out.pop("duration")
    if out.get("streaming") is not None:
        out["streaming"] = bool(out["streaming"])
    return out


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=lambda s: _STATUS_RANK.get(s, 3)) if statuses else "success"


def totals(executions: list[dict[str, Any]]) -> dict[str, Any]:
    """What a workflow or a session sums over its executions (nested executions count once:
    each LLM step belongs to its nearest execution only)."""
    started = [e["started_at"] for e in executions if e["started_at"]]
    completed = [e["completed_at"] for e in executions if e["completed_at"]]
    costs = [e["cost_usd"] for e in executions if e["cost_usd"] is not None]
    statuses = [e["status"] for e in executions]
    span_ms = None
    if started and completed:
        span_ms = int(
            (datetime.fromisoformat(max(completed)) - datetime.fromisoformat(min(started))).total_seconds() * 1000
        )
    return {
        "executions": len(executions),
        "status": _worst(statuses),
        "successful_executions": statuses.count("success"),
        "failed_executions": len(statuses) - statuses.count("success"),
        "success_rate": round(statuses.count("success") / len(statuses), 4) if statuses else None,
        "input_tokens": sum(e["input_tokens"] or 0 for e in executions),
        "output_tokens": sum(e["output_tokens"] or 0 for e in executions),
        "total_tokens": sum((e["input_tokens"] or 0) + (e["output_tokens"] or 0) for e in executions),
        "cost_usd": round(sum(costs), 10) if costs else None,
        "credits_consumed": sum(e["credits_consumed"] or 0 for e in executions),
        "llm_calls": sum(e["llm_calls"] or 0 for e in executions),
        "tool_calls": sum(e["tool_calls"] or 0 for e in executions),
        "duration_ms": span_ms,
        "execution_time_ms": sum(e["duration_ms"] or 0 for e in executions),
        "started_at": min(started) if started else None,
        "completed_at": max(completed) if completed else None,
        "agents": sorted({e["agent_id"] for e in executions}),
    }


def nest(steps: list[dict[str, Any]], root_span_id: str | None) -> list[dict[str, Any]]:
    """Steps as a tree by parent span: a step whose parent is the root (or not among ``steps``)
    is top level; children in start order."""
    by_span = {s["span_id"]: s for s in steps}
    top: list[dict[str, Any]] = []
    for step in sorted(steps, key=lambda s: (s["started_at"] or "", s["span_id"])):
        step.setdefault("steps", [])
        parent = by_span.get(step["parent_span_id"]) if step["parent_span_id"] != root_span_id else None
        if parent is None or parent is step:
            top.append(step)
        else:
            parent.setdefault("steps", []).append(step)
    return top


def _step_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for step in steps:
        by_status[step["status"]] = by_status.get(step["status"], 0) + 1
        by_kind[step["kind"]] = by_kind.get(step["kind"], 0) + 1
    return {"steps": len(steps), "steps_by_status": by_status, "steps_by_kind": by_kind}


def create_workflows_router() -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["workflows"])

    @router.get("/workflows/{trace_id}", summary="A workflow (one trace): executions, their step trees, totals")
    def workflow(trace_id: str, request: Request, principal: Admin) -> dict[str, Any]:
        if not _TRACE_ID.match(trace_id):
            raise HTTPException(400, "trace_id must be 32 hexadecimal characters (the W3C trace id)")
        trace_id = trace_id.lower()
        engine = _engine(request)
        with engine.connect() as conn:
            execution_rows = conn.execute(
                _scoped(
                    select(agent_executions, agents.c.name.label("agent_name"))
                    .join(
                        agents,
                        (agents.c.id == agent_executions.c.agent_id)
                        & (agents.c.tenant_id == agent_executions.c.tenant_id),
                        isouter=True,
                    )
                    .where(agent_executions.c.trace_id == trace_id)
                    .order_by(agent_executions.c.started_at, agent_executions.c.span_id),
                    agent_executions,
                    principal,
                )
            ).all()
            step_rows = conn.execute(
                _scoped(
                    select(agent_steps)
                    .where(agent_steps.c.trace_id == trace_id)
                    .order_by(agent_steps.c.started_at, agent_steps.c.span_id),
                    agent_steps,
                    principal,
                )
            ).all()
        if not execution_rows and not step_rows:
            raise HTTPException(404, "no workflow with this trace id")
        executions = []
        for row in execution_rows:
            record = _record(row, _EXECUTION_FIELDS)
            record["agent_name"] = row._mapping["agent_name"] or record["agent_id"]
            executions.append(record)
        steps = [(_record(row, _STEP_FIELDS), row._mapping["execution_id"]) for row in step_rows]
        by_execution: dict[str | None, list[dict[str, Any]]] = {}
        for step, execution_id in steps:
            by_execution.setdefault(execution_id, []).append(step)
        for execution in executions:
            own = [s for s in by_execution.get(execution["execution_id"], []) if s["span_id"] != execution["span_id"]]
            # a root LLM or tool call is its own execution and its own first step
            self_step = [
                s for s in by_execution.get(execution["execution_id"], []) if s["span_id"] == execution["span_id"]
            ]
            execution.update(_step_summary(own + self_step))
            execution["steps"] = nest(own, execution["span_id"])
        outside = by_execution.get(None, [])
        roots = [s for s in outside if s["parent_span_id"] is None]
        name = roots[0]["name"] if roots else (executions[0]["agent_name"] if executions else None)
        return {
            "status": "success",
            "workflow": {
                "trace_id": trace_id,
                "name": name,
                "totals": {**totals(executions), **_step_summary([s for s, _ in steps])},
                "executions": executions,
                "spans_outside_executions": nest(outside, None),
            },
        }

    @router.get("/sessions/{session_id}", summary="A session: its executions and totals")
    def session(
        session_id: str,
        request: Request,
        principal: Admin,
        limit: int = Query(200, ge=1, le=2000, description="most executions listed (totals cover them all)"),
    ) -> dict[str, Any]:
        if not session_id or len(session_id) > 256:
            raise HTTPException(400, "session_id must be 1 to 256 characters")
        engine = _engine(request)
        with engine.connect() as conn:
            rows = conn.execute(
                _scoped(
                    select(agent_executions)
                    .where(agent_executions.c.session_id == session_id)
                    .order_by(agent_executions.c.started_at, agent_executions.c.execution_id),
                    agent_executions,
                    principal,
                )
            ).all()
        if not rows:
            raise HTTPException(404, "no executions in this session")
        executions = [_record(row, _EXECUTION_FIELDS) for row in rows]
        users = sorted({e["user_id"] for e in executions if e["user_id"]})
        return {
            "status": "success",
            "session": {
                "session_id": session_id,
                "users": users,
                "workflows": len({e["trace_id"] for e in executions}),
                "totals": totals(executions),
                "executions": executions[-limit:],
                "truncated": len(executions) > limit,
            },
        }

    return router
