"""Security: hashed ingest keys and per-tenant admin tokens; tenant row-level security.

Both dialects get ``access_keys`` (only a SHA-256 of each credential is stored).

PostgreSQL also gets tenant isolation for the admin API (seeds 002 and 004):
- a role ``agent_otel_reader`` (NOLOGIN, no BYPASSRLS). The API switches to it per transaction
  (``SET LOCAL ROLE``) and names the caller's tenant in ``app.tenant_id``; the collector's own
  user must be a member (granted here) and keeps writing as the tables' owner, which RLS does not
  restrict.
- on every table with a ``tenant_id`` column (partitioned parents, not their partitions): row-level
  security with a SELECT policy for that role, ``tenant_id = app.tenant_id`` (``*`` is the global
  admin token, every tenant). An unset ``app.tenant_id`` sees no rows: fail closed.
- SELECT is granted on those parents, on ``model_prices`` and on the views, nothing else; the views
  run with the caller's rights (``security_invoker``) so they cannot bypass the policies. Partitions
  get no grant, so nobody reads around the policies through them. ``access_keys`` is never granted.

A table that a later revision adds with a ``tenant_id`` must get the same policy and grant
(tests/security checks every such table). Downgrade removes the policies, grants and the table;
the role is a cluster-wide object other databases may use, so it is left in place.

Revision ID: 0003_security
Revises: 0001_initial
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_security"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

ROLE = "agent_otel_reader"
POLICY = "tenant_isolation"

_TENANT_TABLES = """
    SELECT c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname <> 'access_keys'
"""

_CREATE_ROLE = f"""
DO $$
DECLARE r record;
BEGIN
    SELECT rolsuper, rolbypassrls INTO r FROM pg_roles WHERE rolname = '{ROLE}';
    IF NOT FOUND THEN
        BEGIN
            CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'agent-otel needs the role {ROLE}: as a superuser run '
                    '"CREATE ROLE {ROLE} NOLOGIN; GRANT {ROLE} TO %I;" then migrate again', current_user;
        END;
    ELSIF r.rolsuper OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role {ROLE} must not be a superuser nor bypass row-level security';
    END IF;
    BEGIN
        EXECUTE format('GRANT {ROLE} TO %I', current_user);
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- already a member, or a superuser (who may SET ROLE to anyone)
    END;
END $$
"""

_ENABLE = f"""
DO $$
DECLARE t record; v record;
BEGIN
    FOR t IN {_TENANT_TABLES} LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('DROP POLICY IF EXISTS {POLICY} ON %I', t.relname);
        EXECUTE format(
            'CREATE POLICY {POLICY} ON %I FOR SELECT TO {ROLE} USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.tenant_id'', true) = ''*'')',
            t.relname);
        EXECUTE format('GRANT SELECT ON %I TO {ROLE}', t.relname);
    END LOOP;
    FOR v IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() LOOP
        EXECUTE format('ALTER VIEW %I SET (security_invoker = true)', v.viewname);
        EXECUTE format('GRANT SELECT ON %I TO {ROLE}', v.viewname);
    END LOOP;
    IF to_regclass('model_prices') IS NOT NULL THEN
        GRANT SELECT ON model_prices TO {ROLE};
    END IF;
END $$
"""

_DISABLE = f"""
DO $$
DECLARE t record; v record;
BEGIN
    FOR t IN {_TENANT_TABLES} LOOP
        EXECUTE format('DROP POLICY IF EXISTS {POLICY} ON %I', t.relname);
        EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('REVOKE ALL ON %I FROM {ROLE}', t.relname);
    END LOOP;
    FOR v IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() LOOP
        EXECUTE format('ALTER VIEW %I RESET (security_invoker)', v.viewname);
        EXECUTE format('REVOKE ALL ON %I FROM {ROLE}', v.viewname);
    END LOOP;
    IF to_regclass('model_prices') IS NOT NULL THEN
        REVOKE ALL ON model_prices FROM {ROLE};
    END IF;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False, comment="ingest or admin"),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("key_hash", sa.Text, nullable=False, comment="hex SHA-256 of the credential"),
        sa.Column("preview", sa.Text, nullable=False, comment="first characters of the credential"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("key_id", name="pk_access_keys"),
    )
    op.create_index("ux_access_keys_hash", "access_keys", ["key_hash"], unique=True)
    op.create_index("ix_access_keys_tenant", "access_keys", ["tenant_id", "kind"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE_ROLE)
        op.execute(_ENABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DISABLE)
    op.drop_index("ix_access_keys_tenant", table_name="access_keys")
    op.drop_index("ux_access_keys_hash", table_name="access_keys")
    op.drop_table("access_keys")
