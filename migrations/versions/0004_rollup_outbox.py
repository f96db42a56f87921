"""Rollup outbox: write transactions commit rollup deltas; one applier folds them in (issue 7).

Adds ``rollup_outbox`` (see ``agent_otel/collector/analytics/outbox.py``): one row per write
transaction that inserted executions or feedback, holding the delta its rollups need; the
applier deletes the rows it applies in the same transaction as the rollup updates.

On PostgreSQL the payload is stored without compression (``STORAGE EXTERNAL``: it lives for
about a second, so compressing it would cost CPU for nothing) and the table is vacuumed after
every few hundred deleted rows (a queue table: dead rows would slow the applier's scan).
No tenant column: the table is internal, and the API's read role is granted nothing on it.

Revision ID: 0004_rollup_outbox
Revises: 0002_analytics
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rollup_outbox"
down_revision = "0002_analytics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"), comment="failed applications"),
        sa.Column("payload", sa.LargeBinary(), nullable=False, comment="the rollup delta (JSON)"),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_outbox"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rollup_outbox ALTER COLUMN payload SET STORAGE EXTERNAL")
        op.execute(
            "ALTER TABLE rollup_outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200)"
        )


def downgrade() -> None:
    op.drop_table("rollup_outbox")
