"""Initial schema: raw execution tables, rollups, interactions, usage, prices and views.

Only adds objects (seed 001: no downtime, no data loss); downgrade drops exactly what it added.
On PostgreSQL the raw tables are range-partitioned by day with a DEFAULT partition, so
retention drops whole partitions; the collector creates the daily partitions ahead of time.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")
ZERO = sa.text("0")


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant_id", sa.Text, nullable=False, server_default=sa.text("'default'"))


def _counter(name: str, type_: type[sa.types.TypeEngine] = sa.BigInteger) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, type_, nullable=False, server_default=ZERO)


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"

    op.create_table(
        "agents",
        _tenant(),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("version", sa.Text),
        sa.Column("service_name", sa.Text),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("last_executed_at", TS),
        _counter("total_executions"),
        _counter("total_users", sa.Integer),
        sa.Column("avg_rating", sa.Float),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_agents"),
    )
    op.create_index("ix_agents_last_executed", "agents", ["tenant_id", "last_executed_at"])
    op.create_index("ix_agents_total_executions", "agents", ["tenant_id", "total_executions"])

    op.create_table(
        "agent_executions",
        _tenant(),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False, comment="milliseconds"),
        sa.Column("credits_consumed", sa.Float, nullable=False, server_default=ZERO),
        sa.Column("http_status", sa.Integer),
        sa.Column("error_code", sa.Text, comment="categorised error type"),
        sa.Column("error_message", sa.Text, comment="scrubbed error message"),
        sa.Column("input_size", sa.BigInteger, comment="bytes"),
        sa.Column("output_size", sa.BigInteger, comment="bytes"),
        sa.Column("input_type", sa.Text),
        sa.Column("output_type", sa.Text),
        sa.Column("response_time", sa.Integer, comment="milliseconds"),
        sa.Column("processing_time", sa.Integer, comment="milliseconds"),
        sa.Column("queue_time", sa.Integer, comment="milliseconds"),
        sa.Column("session_id", sa.Text),
        sa.Column("user_agent", sa.Text),
        sa.Column("ip_address", sa.Text, comment="anonymised"),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("completed_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("model", sa.Text),
        sa.Column("provider", sa.Text),
        _counter("input_tokens"),
        _counter("output_tokens"),
        sa.Column("cost_usd", sa.Float, comment="sum over priced LLM steps"),
        _counter("unpriced_llm_calls", sa.Integer),
        _counter("llm_calls", sa.Integer),
        _counter("tool_calls", sa.Integer),
        sa.Column("trace_id", sa.Text, nullable=False),
        sa.Column("span_id", sa.Text, nullable=False),
        sa.Column("parent_execution_id", sa.Text),
        sa.Column("service_name", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("feature", sa.Text),
        sa.Column("source", sa.Text, comment="convention the execution was read from"),
        sa.PrimaryKeyConstraint("tenant_id", "execution_id", "started_at", name="pk_agent_executions"),
        postgresql_partition_by="RANGE (started_at)",
    )
    op.create_index("ix_executions_agent_started", "agent_executions", ["tenant_id", "agent_id", "started_at"])
    op.create_index("ix_executions_user_started", "agent_executions", ["tenant_id", "user_id", "started_at"])
    op.create_index("ix_executions_status_started", "agent_executions", ["tenant_id", "status", "started_at"])
    op.create_index("ix_executions_trace", "agent_executions", ["tenant_id", "trace_id"])
    op.create_index("ix_executions_session", "agent_executions", ["tenant_id", "session_id"])

    op.create_table(
        "agent_steps",
        _tenant(),
        sa.Column("trace_id", sa.Text, nullable=False),
        sa.Column("span_id", sa.Text, nullable=False),
        sa.Column("parent_span_id", sa.Text),
        sa.Column("execution_id", sa.Text, comment="NULL until the step's execution has arrived"),
        sa.Column("agent_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False, comment="llm, tool, retrieval, embedding, agent, chain, span"),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("operation", sa.Text),
        sa.Column("tool_name", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("provider", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False, comment="milliseconds"),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("completed_at", TS),
        _counter("input_tokens"),
        _counter("output_tokens"),
        sa.Column("cost_usd", sa.Float),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("input_size", sa.BigInteger),
        sa.Column("output_size", sa.BigInteger),
        sa.Column("input_type", sa.Text),
        sa.Column("output_type", sa.Text),
        sa.Column("streaming", sa.Boolean),
        sa.Column("finish_reason", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "trace_id", "span_id", "started_at", name="pk_agent_steps"),
        postgresql_partition_by="RANGE (started_at)",
    )
    op.create_index("ix_steps_execution", "agent_steps", ["tenant_id", "execution_id"])
    orphans = sa.text("execution_id IS NULL")
    op.create_index(
        "ix_steps_orphans", "agent_steps", ["tenant_id", "trace_id"], postgresql_where=orphans, sqlite_where=orphans
    )
    op.create_index("ix_steps_tool_started", "agent_steps", ["tenant_id", "tool_name", "started_at"])

    op.create_table(
        "agent_logs",
        _tenant(),
        sa.Column("log_id", sa.Text, nullable=False, comment="deterministic hash of the event or record"),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("execution_id", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("trace_id", sa.Text),
        sa.Column("span_id", sa.Text),
        sa.Column(
            "category", sa.Text, nullable=False, comment="execution, error, performance, user_action, llm, tool"
        ),
        sa.Column("level", sa.Text, nullable=False, comment="debug, info, warn, error"),
        sa.Column("event_name", sa.Text),
        sa.Column("message", sa.Text, nullable=False, comment="scrubbed"),
        sa.Column("context", JSON, comment="sizes and types, never content"),
        sa.Column("metadata", JSON),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "log_id", "timestamp", name="pk_agent_logs"),
        postgresql_partition_by="RANGE (timestamp)",
    )
    op.create_index("ix_logs_execution", "agent_logs", ["tenant_id", "execution_id"])
    op.create_index("ix_logs_agent_time", "agent_logs", ["tenant_id", "agent_id", "timestamp"])
    op.create_index("ix_logs_category_level_time", "agent_logs", ["tenant_id", "category", "level", "timestamp"])
    op.create_index("ix_logs_trace", "agent_logs", ["tenant_id", "trace_id"])
    op.create_index(
        "ix_logs_orphans", "agent_logs", ["tenant_id", "trace_id"], postgresql_where=orphans, sqlite_where=orphans
    )

    if is_pg:
        for table in ("agent_executions", "agent_steps", "agent_logs"):
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")

    op.create_table(
        "agent_feedback",
        _tenant(),
        sa.Column("feedback_id", sa.Text, nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("execution_id", sa.Text),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("rating", sa.Integer),
        sa.Column("is_favorite", sa.Boolean),
        sa.Column("comment", sa.Text, comment="scrubbed free text"),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "feedback_id", name="pk_agent_feedback"),
    )
    op.create_index("ix_feedback_user_agent", "agent_feedback", ["tenant_id", "user_id", "agent_id", "timestamp"])

    op.create_table(
        "agent_metrics",
        _tenant(),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False, comment="hour, day, week or month"),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("hour", sa.Integer),
        _counter("total_executions"),
        _counter("successful_executions"),
        _counter("failed_executions"),
        _counter("timeout_executions"),
        _counter("error_executions"),
        _counter("sum_duration"),
        sa.Column("avg_duration", sa.Float),
        sa.Column("min_duration", sa.Integer),
        sa.Column("max_duration", sa.Integer),
        sa.Column("p50_duration", sa.Float),
        sa.Column("p95_duration", sa.Float),
        sa.Column("p99_duration", sa.Float),
        sa.Column("duration_sketch", JSON, comment="log-bucket sketch, mergeable"),
        _counter("unique_users", sa.Integer),
        _counter("total_credits_consumed", sa.Float),
        sa.Column("avg_credits_per_execution", sa.Float),
        _counter("input_tokens"),
        _counter("output_tokens"),
        _counter("cost_usd", sa.Float),
        _counter("llm_calls"),
        _counter("tool_calls"),
        _counter("unpriced_llm_calls"),
        sa.Column("error_counts", JSON),
        sa.Column("model_counts", JSON),
        sa.Column("intent_counts", JSON),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "agent_id", "period", "period_start", name="pk_agent_metrics"),
    )
    op.create_index("ix_agent_metrics_period", "agent_metrics", ["tenant_id", "period", "period_start"])

    op.create_table(
        "agent_metric_users",
        _tenant(),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "agent_id", "period", "period_start", "user_id", name="pk_agent_metric_users"
        ),
    )

    op.create_table(
        "user_agent_interactions",
        _tenant(),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        _counter("total_executions"),
        _counter("successful_executions"),
        sa.Column("first_executed_at", TS),
        sa.Column("last_executed_at", TS),
        sa.Column("is_favorite", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("rating", sa.Integer),
        sa.Column("feedback", sa.Text),
        sa.Column("avg_executions_per_day", sa.Float),
        sa.Column("preferred_time_of_day", sa.Integer, comment="hour 0-23, UTC"),
        sa.Column("preferred_day_of_week", sa.Integer, comment="0 = Monday"),
        sa.Column("hour_counts", JSON),
        sa.Column("weekday_counts", JSON),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "agent_id", name="pk_user_agent_interactions"),
    )
    op.create_index(
        "ix_interactions_user_last", "user_agent_interactions", ["tenant_id", "user_id", "last_executed_at"]
    )
    op.create_index(
        "ix_interactions_agent_total", "user_agent_interactions", ["tenant_id", "agent_id", "total_executions"]
    )

    op.create_table(
        "usage_daily",
        _tenant(),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        _counter("total_interactions"),
        _counter("successful_interactions"),
        _counter("unique_agents_used", sa.Integer),
        _counter("total_duration_ms"),
        _counter("total_duration_minutes", sa.Float),
        _counter("total_input_tokens"),
        _counter("total_output_tokens"),
        _counter("total_cost", sa.Float),
        _counter("total_credits", sa.Float),
        sa.Column("agent_usage", JSON, comment="agent id -> interactions"),
        sa.Column("feature_usage", JSON),
        sa.Column("vendor_usage", JSON, comment="provider -> calls"),
        sa.Column("model_usage", JSON),
        _counter("ratings_count", sa.Integer),
        _counter("ratings_sum", sa.Integer),
        sa.Column("avg_satisfaction", sa.Float),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "date", name="pk_usage_daily"),
    )
    op.create_index("ix_usage_daily_date", "usage_daily", ["tenant_id", "date"])

    op.create_table(
        "model_prices",
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("input_per_million", sa.Float, nullable=False, comment="USD per million input tokens"),
        sa.Column("output_per_million", sa.Float, nullable=False, comment="USD per million output tokens"),
        sa.Column("cached_input_per_million", sa.Float),
        sa.Column("source", sa.Text, nullable=False, server_default=sa.text("'builtin'")),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("provider", "model", "effective_from", name="pk_model_prices"),
    )

    recent = (
        "e.started_at >= now() - interval '7 days'" if is_pg else "e.started_at >= datetime('now', '-7 days')"
    )
    op.execute(
        """
        CREATE VIEW agent_summary AS
        SELECT a.tenant_id, a.id AS agent_id, a.name, a.service_name, a.first_seen_at,
               a.last_executed_at, a.total_executions, a.total_users, a.avg_rating,
               COALESCE(m.successful, 0) AS successful_executions,
               CASE WHEN COALESCE(m.total, 0) > 0 THEN 1.0 * m.successful / m.total END AS success_rate,
               CASE WHEN COALESCE(m.total, 0) > 0 THEN 1.0 * m.sum_duration / m.total END AS avg_duration_ms,
               COALESCE(m.input_tokens, 0) AS input_tokens,
               COALESCE(m.output_tokens, 0) AS output_tokens,
               COALESCE(m.cost_usd, 0) AS total_cost_usd,
               COALESCE(m.credits, 0) AS total_credits
        FROM agents a
        LEFT JOIN (
            SELECT tenant_id, agent_id, SUM(total_executions) AS total,
                   SUM(successful_executions) AS successful, SUM(sum_duration) AS sum_duration,
                   SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
                   SUM(cost_usd) AS cost_usd, SUM(total_credits_consumed) AS credits
            FROM agent_metrics WHERE period = 'month'
            GROUP BY tenant_id, agent_id
        ) m ON m.tenant_id = a.tenant_id AND m.agent_id = a.id
        """
    )
    op.execute(
        f"""
        CREATE VIEW recent_interactions AS
        SELECT e.tenant_id, e.execution_id, e.started_at, e.completed_at, e.agent_id,
               a.name AS agent_name, e.user_id, e.session_id, e.status, e.duration,
               e.model, e.provider, e.input_tokens, e.output_tokens, e.cost_usd,
               e.credits_consumed, e.error_code, e.trace_id
        FROM agent_executions e
        LEFT JOIN agents a ON a.tenant_id = e.tenant_id AND a.id = e.agent_id
        WHERE {recent}
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS recent_interactions")
    op.execute("DROP VIEW IF EXISTS agent_summary")
    for table in (
        "model_prices",
        "usage_daily",
        "user_agent_interactions",
        "agent_metric_users",
        "agent_metrics",
        "agent_feedback",
        "agent_logs",
        "agent_steps",
        "agent_executions",
        "agents",
    ):
        op.drop_table(table)  # dropping a partitioned table drops its partitions
