"""Drop ``ix_steps_execution``: the steps of an execution are found through their trace (issue 7).

The index (tenant_id, execution_id) on ``agent_steps`` had one reader, the writer's
recomputation of an execution that gained steps after it was stored. An execution's steps are
all in its trace, and the primary key begins with (tenant_id, trace_id), so that lookup now goes
through the primary key (``Store.step_facts``). Every inserted step changed a page of this index
at a random place; without it, SQLite's writer stored 10% more spans per second in the write
harness (docs/performance.md). On PostgreSQL, dropping the parent's index drops its partitions'.

Revision ID: 0005_steps_by_trace
Revises: 0004_rollup_outbox
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0005_steps_by_trace"
down_revision = "0004_rollup_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_steps_execution", table_name="agent_steps")


def downgrade() -> None:
    op.create_index("ix_steps_execution", "agent_steps", ["tenant_id", "execution_id"])
