"""Tenant scoping of the admin API's reads: PostgreSQL row-level security, per transaction.

The admin auth dependency records the caller's scope in a context variable
(``tenant_scope``); a ``begin`` listener on the API's read engine then starts every
transaction of that request with

    SET LOCAL ROLE agent_otel_reader;                        -- non-superuser, SELECT only
    SELECT set_config('app.tenant_id', '<tenant or *>', true) -- local to the transaction

so the policies created by migration ``0003_security`` hide every other tenant's rows, whatever
SQL a route runs, and the API cannot write. Both settings end with the transaction, so a pooled
connection never carries one request's scope into the next. Work outside an admin request
(health checks, metric scrapes) has no scope and is not switched.

On SQLite there is no row-level security: routes filter by ``AdminPrincipal.tenant_id`` (they do
on PostgreSQL as well; the policies are the second, independent wall).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

from sqlalchemy import Connection, Engine, event, text

READER_ROLE: Final = "agent_otel_reader"
TENANT_SETTING: Final = "app.tenant_id"

# The scope of the admin request being served: a tenant id, ALL_TENANTS, or None (no request).
_scope: ContextVar[str | None] = ContextVar("agent_otel_tenant_scope", default=None)


def current_scope() -> str | None:
    return _scope.get()


def set_scope(scope: str) -> None:
    """Called by the admin auth dependency; lasts for the rest of the request's context."""
    _scope.set(scope)


@contextmanager
def tenant_scope(scope: str) -> Iterator[None]:
    """Scope reads made inside the block (CLI and tests; the API uses ``set_scope``)."""
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


def apply_scope(conn: Connection, scope: str) -> None:
    """Switch an open PostgreSQL transaction to the reader role, scoped to ``scope``."""
    conn.exec_driver_sql(f"SET LOCAL ROLE {READER_ROLE}")
    conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": TENANT_SETTING, "value": scope})


def install_tenant_scope(engine: Engine) -> bool:
    """Make every transaction on ``engine`` honour the request's scope (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        return False

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        scope = _scope.get()
        if scope is not None:
            apply_scope(conn, scope)

    return True


def rls_report(conn: Connection) -> list[dict[str, Any]]:
    """Each table with a ``tenant_id`` column: whether RLS is on, its policy, the reader's grant."""
    rows = conn.execute(
        text(
            """SELECT c.relname, c.relrowsecurity,
                   EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname
                           AND p.schemaname = current_schema() AND p.policyname = 'tenant_isolation'),
                   has_table_privilege(:role, c.oid, 'SELECT')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname"""
        ),
        {"role": READER_ROLE},
    ).fetchall()
    return [{"table": r[0], "rls": r[1], "policy": r[2], "reader_select": r[3]} for r in rows]
