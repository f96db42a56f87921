"""The orphan sweep: adopt steps whose execution another writer committed at the same time.

A step is stored with ``execution_id`` NULL when its ancestor is not in the database yet, and
is adopted in the transaction that brings the ancestor. Two writers (collectors, or workers of
``serve --workers``) committing one trace's children and its agent span concurrently do not see
each other's rows, so neither adopts. The sweep finds orphans older than a grace period whose
trace has an execution and runs an ordinary write transaction for those traces: adoption, the
execution's totals and the rollups are corrected exactly as on the ingest path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from agent_otel.collector.storage.transaction import ChangeHook, ChangeSet, write_group

GRACE = timedelta(seconds=60)
LOOKBACK = timedelta(days=2)


def sweep_orphans(
    engine: Engine, hooks: Sequence[ChangeHook], now: datetime | None = None, limit: int = 2000
) -> ChangeSet:
    """Adopt stale orphans of traces that have an execution; returns what the sweep changed."""
    now = now or datetime.now(UTC)
    since, before = now - LOOKBACK, now - GRACE
    params: dict[str, object] = {"since": since, "before": before, "limit": limit}
    if engine.dialect.name == "sqlite":
        from agent_otel.collector.storage.store import sqlite_ts

        params = {"since": sqlite_ts(since), "before": sqlite_ts(before), "limit": limit}
    with engine.connect() as conn:
        traces = {
            (str(tenant), str(trace))
            for tenant, trace in conn.execute(
                text(
                    "SELECT DISTINCT s.tenant_id, s.trace_id FROM agent_steps s"
                    " WHERE s.execution_id IS NULL AND s.started_at >= :since AND s.created_at < :before"
                    " AND EXISTS (SELECT 1 FROM agent_executions e WHERE e.tenant_id = s.tenant_id"
                    " AND e.trace_id = s.trace_id AND e.started_at >= :since) LIMIT :limit"
                ),
                params,
            )
        }
    if not traces:
        return ChangeSet()
    with engine.begin() as conn:
        return write_group(conn, [], hooks, reconcile=(traces, (since, now)))
