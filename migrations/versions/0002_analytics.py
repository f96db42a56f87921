"""Analytics: agents' rating sums, interaction histograms, per-model cost, admin API indexes.

Adds (seed 001), and reshapes the rollup tables' indexes (no data is touched):
- ``agents.rating_count`` and ``rating_sum``, so ``avg_rating`` is kept exactly with additive
  updates (concurrent collectors never overwrite each other's ratings);
- ``user_agent_interactions.hour_00`` ... ``hour_23`` and ``weekday_0`` ... ``weekday_6``: the
  executions per UTC hour of day and day of week (Monday = 0) as plain integers, so the rollup
  hook updates a user x agent row with one additive upsert (``preferred_time_of_day`` is the
  first largest of them, ``hour_counts``/``weekday_counts`` the same counts as JSON arrays);
- ``agent_metrics.model_costs``, the cost per model;
- two indexes on ``agent_executions`` for the admin API's execution search (newest first,
  optionally by model). On PostgreSQL the indexes are built on every partition
  while the migration holds its lock: on a large existing database, writes wait for the build;
- rollup tables shaped for the rollup hook, which updates their rows in place inside every
  ingest transaction (issue 7):
  - their secondary indexes hold only columns that never change, so an update can be a HOT
    update (no index writes) and a key probe is exact whichever index the planner picks (with
    stale statistics PostgreSQL picked ``(tenant, date)`` and filtered a thousand rows per key):
    ``user_agent_interactions`` (tenant, user, last execution) and (tenant, agent, total
    executions) become (tenant, agent, user): the primary key already serves "a user's agents"
    and the API and dashboards sort a user's or an agent's rows (a few thousand at most);
    ``usage_daily`` (tenant, date) becomes (tenant, date, user) and ``agent_metrics`` (tenant,
    period, period start) becomes (tenant, period, period start, agent);
  - on PostgreSQL a fill factor of 70 on ``agent_metrics``, ``user_agent_interactions`` and
    ``usage_daily``, so the new row version of an update fits on its page (HOT);
  - on PostgreSQL, JSON that is only ever written whole and read whole (the duration sketch,
    the hour and weekday histograms) as ``json`` rather than ``jsonb``: the text as written,
    about a quarter of jsonb's size for arrays of small numbers (jsonb stores each as a numeric),
    with no number conversion on write and read. Maps that SQL merges stay ``jsonb``.
Downgrade drops exactly what was added and restores the indexes of 0001.

Chained after 0003_security (written in parallel, it already revises 0001_initial): one head.

Revision ID: 0002_analytics
Revises: 0003_security
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_analytics"
down_revision = "0003_security"  # see the module docstring
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


HOURS = [f"hour_{h:02d}" for h in range(24)]
WEEKDAYS = [f"weekday_{d}" for d in range(7)]
UPDATED_IN_PLACE = ("agent_metrics", "user_agent_interactions", "usage_daily")
FILL_FACTOR = 70
WHOLE_JSON: tuple[tuple[str, str], ...] = (
    ("agent_metrics", "duration_sketch"),
    ("user_agent_interactions", "hour_counts"),
    ("user_agent_interactions", "weekday_counts"),
)
# (table, 0001's index and columns, this revision's index and columns)
RESHAPED = (
    ("agent_metrics", ("ix_agent_metrics_period", ["tenant_id", "period", "period_start"]),
     ("ix_agent_metrics_period_agent", ["tenant_id", "period", "period_start", "agent_id"])),
    ("user_agent_interactions", ("ix_interactions_user_last", ["tenant_id", "user_id", "last_executed_at"]),
     ("ix_interactions_agent_user", ["tenant_id", "agent_id", "user_id"])),
    ("user_agent_interactions", ("ix_interactions_agent_total", ["tenant_id", "agent_id", "total_executions"]), None),
    ("usage_daily", ("ix_usage_daily_date", ["tenant_id", "date"]),
     ("ix_usage_daily_date_user", ["tenant_id", "date", "user_id"])),
)  # fmt: skip


def upgrade() -> None:
    for name in HOURS + WEEKDAYS:
        op.add_column(
            "user_agent_interactions", sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0"))
        )
    op.add_column("agents", sa.Column("rating_count", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.add_column("agents", sa.Column("rating_sum", sa.BigInteger, nullable=False, server_default=sa.text("0")))
    op.add_column("agent_metrics", sa.Column("model_costs", JSON, comment="model -> cost in US dollars"))
    op.create_index("ix_executions_started", "agent_executions", ["tenant_id", "started_at"])
    op.create_index("ix_executions_model_started", "agent_executions", ["tenant_id", "model", "started_at"])
    for table, (old, _columns), new in RESHAPED:
        op.drop_index(old, table_name=table)
        if new is not None:
            op.create_index(new[0], table, new[1])
    if op.get_bind().dialect.name == "postgresql":
        for table in UPDATED_IN_PLACE:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILL_FACTOR})")
        for table, column in WHOLE_JSON:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in WHOLE_JSON:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
        for table in UPDATED_IN_PLACE:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    for table, (old, columns), new in reversed(RESHAPED):
        if new is not None:
            op.drop_index(new[0], table_name=table)
        op.create_index(old, table, columns)
    op.drop_index("ix_executions_model_started", table_name="agent_executions")
    op.drop_index("ix_executions_started", table_name="agent_executions")
    op.drop_column("agent_metrics", "model_costs")
    op.drop_column("agents", "rating_sum")
    op.drop_column("agents", "rating_count")
    for name in reversed(HOURS + WEEKDAYS):
        op.drop_column("user_agent_interactions", name)
