"""What every admin route shares: the read engine, the tenant to read, time ranges."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import Connection, Engine

from agent_otel.collector.analytics.periods import utc
from agent_otel.collector.analytics.queries import QueryError
from agent_otel.collector.api.auth import AdminPrincipal

TENANT_HELP = "read one tenant (global admin token only; a tenant token always reads its own tenant)"


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def read(request: Request) -> Iterator[Connection]:
    """A read connection of the API's engine (row-level security applies on PostgreSQL)."""
    engine: Engine = request.app.state.ctx.engine
    try:
        with engine.connect() as conn:
            yield conn
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from None


def tenant_of(principal: AdminPrincipal, requested: str | None) -> str | None:
    """The tenant to read: a tenant token's own; for the global token, ``requested`` (None: all)."""
    if principal.tenant_id is None:
        return requested
    if requested is not None and requested != principal.tenant_id:
        raise HTTPException(403, "this token may read its own tenant only")
    return principal.tenant_id


def time_range(
    since: datetime | None, until: datetime | None, default: timedelta, longest: timedelta
) -> tuple[datetime, datetime]:
    """[since, until) in UTC: ``until`` defaults to now, ``since`` to ``until - default``."""
    end = utc(until) if until is not None else now()
    start = utc(since) if since is not None else end - default
    if start >= end:
        raise HTTPException(400, "since must be before until")
    if end - start > longest:
        raise HTTPException(400, f"the range may span at most {longest.days} days")
    return start, end


def execution_out(record: dict[str, Any]) -> dict[str, Any]:
    """An ``agent_executions`` row in the API's names (``duration`` is ``duration_ms``)."""
    out = dict(record)
    out["duration_ms"] = out.pop("duration")
    out.setdefault("agent_name", None)
    return out
