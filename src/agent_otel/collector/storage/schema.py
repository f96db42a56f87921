"""The relational schema: every table of the contract, as SQLAlchemy Core metadata.

This module is the model that ``agent-otel db check`` compares with the migrated database.
Migrations in ``migrations/versions`` never import it (each revision is self-contained).

Design notes
- Raw tables (``agent_executions``, ``agent_steps``, ``agent_logs``) have natural primary keys
  that include their time column. A retried OTLP request carries the same ids and timestamps,
  so the primary key is also the deduplication key, and on PostgreSQL the tables can be
  range-partitioned by day (a partitioned table's unique keys must contain the partition key).
- Every row carries ``tenant_id``; single-tenant installs use ``default``.
- Timestamps are UTC. PostgreSQL stores ``timestamptz``; SQLite stores ISO text (naive UTC).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

TS = DateTime(timezone=True)
JSONType = JSON().with_variant(JSONB(), "postgresql")
NOW = text("CURRENT_TIMESTAMP")


def _tenant() -> Column[str]:
    return Column("tenant_id", Text, nullable=False, server_default=text("'default'"))


agents = Table(
    "agents",
    metadata,
    _tenant(),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("version", Text),
    Column("service_name", Text),
    Column("first_seen_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("last_executed_at", TS),
    Column("total_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("total_users", Integer, nullable=False, server_default=text("0")),
    Column("avg_rating", Float),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("updated_at", TS, nullable=False, server_default=NOW),
    Column("rating_count", Integer, nullable=False, server_default=text("0")),  # 0002_analytics
    Column("rating_sum", BigInteger, nullable=False, server_default=text("0")),  # 0002_analytics
    PrimaryKeyConstraint("tenant_id", "id", name="pk_agents"),
    Index("ix_agents_last_executed", "tenant_id", "last_executed_at"),
    Index("ix_agents_total_executions", "tenant_id", "total_executions"),
)

agent_executions = Table(
    "agent_executions",
    metadata,
    _tenant(),
    Column("execution_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("user_id", Text),
    Column("status", Text, nullable=False),
    Column("duration", Integer, nullable=False, comment="milliseconds"),
    Column("credits_consumed", Float, nullable=False, server_default=text("0")),
    Column("http_status", Integer),
    Column("error_code", Text, comment="categorised error type"),
    Column("error_message", Text, comment="scrubbed error message"),
    Column("input_size", BigInteger, comment="bytes"),
    Column("output_size", BigInteger, comment="bytes"),
    Column("input_type", Text),
    Column("output_type", Text),
    Column("response_time", Integer, comment="milliseconds"),
    Column("processing_time", Integer, comment="milliseconds"),
    Column("queue_time", Integer, comment="milliseconds"),
    Column("session_id", Text),
    Column("user_agent", Text),
    Column("ip_address", Text, comment="anonymised"),
    Column("started_at", TS, nullable=False),
    Column("completed_at", TS),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("model", Text),
    Column("provider", Text),
    Column("input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("cost_usd", Float, comment="sum over priced LLM steps"),
    Column("unpriced_llm_calls", Integer, nullable=False, server_default=text("0")),
    Column("llm_calls", Integer, nullable=False, server_default=text("0")),
    Column("tool_calls", Integer, nullable=False, server_default=text("0")),
    Column("trace_id", Text, nullable=False),
    Column("span_id", Text, nullable=False),
    Column("parent_execution_id", Text),
    Column("service_name", Text),
    Column("intent", Text),
    Column("feature", Text),
    Column("source", Text, comment="convention the execution was read from"),
    PrimaryKeyConstraint("tenant_id", "execution_id", "started_at", name="pk_agent_executions"),
    Index("ix_executions_agent_started", "tenant_id", "agent_id", "started_at"),
    Index("ix_executions_user_started", "tenant_id", "user_id", "started_at"),
    Index("ix_executions_status_started", "tenant_id", "status", "started_at"),
    Index("ix_executions_trace", "tenant_id", "trace_id"),
    Index("ix_executions_session", "tenant_id", "session_id"),
    Index("ix_executions_started", "tenant_id", "started_at"),  # 0002_analytics
    Index("ix_executions_model_started", "tenant_id", "model", "started_at"),  # 0002_analytics
    postgresql_partition_by="RANGE (started_at)",
)

agent_steps = Table(
    "agent_steps",
    metadata,
    _tenant(),
    Column("trace_id", Text, nullable=False),
    Column("span_id", Text, nullable=False),
    Column("parent_span_id", Text),
    Column("execution_id", Text, comment="NULL until the step's execution has arrived"),
    Column("agent_id", Text),
    Column("kind", Text, nullable=False, comment="llm, tool, retrieval, embedding, agent, chain, span"),
    Column("name", Text, nullable=False),
    Column("operation", Text),
    Column("tool_name", Text),
    Column("model", Text),
    Column("provider", Text),
    Column("status", Text, nullable=False),
    Column("duration", Integer, nullable=False, comment="milliseconds"),
    Column("started_at", TS, nullable=False),
    Column("completed_at", TS),
    Column("input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("cost_usd", Float),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("input_size", BigInteger),
    Column("output_size", BigInteger),
    Column("input_type", Text),
    Column("output_type", Text),
    Column("streaming", Boolean),
    Column("finish_reason", Text),
    Column("created_at", TS, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "trace_id", "span_id", "started_at", name="pk_agent_steps"),
    # no index on execution_id: an execution's steps are found through its trace (0005_steps_by_trace)
    Index(
        "ix_steps_orphans",
        "tenant_id",
        "trace_id",
        postgresql_where=text("execution_id IS NULL"),
        sqlite_where=text("execution_id IS NULL"),
    ),
    Index("ix_steps_tool_started", "tenant_id", "tool_name", "started_at"),
    postgresql_partition_by="RANGE (started_at)",
)

agent_logs = Table(
    "agent_logs",
    metadata,
    _tenant(),
    Column("log_id", Text, nullable=False, comment="deterministic hash of the event or record"),
    Column("timestamp", TS, nullable=False),
    Column("execution_id", Text),
    Column("agent_id", Text),
    Column("user_id", Text),
    Column("trace_id", Text),
    Column("span_id", Text),
    Column("category", Text, nullable=False, comment="execution, error, performance, user_action, llm, tool"),
    Column("level", Text, nullable=False, comment="debug, info, warn, error"),
    Column("event_name", Text),
    Column("message", Text, nullable=False, comment="scrubbed"),
    Column("context", JSONType, comment="sizes and types, never content"),
    Column("metadata", JSONType),
    Column("created_at", TS, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "log_id", "timestamp", name="pk_agent_logs"),
    Index("ix_logs_execution", "tenant_id", "execution_id"),
    Index("ix_logs_agent_time", "tenant_id", "agent_id", "timestamp"),
    Index("ix_logs_category_level_time", "tenant_id", "category", "level", "timestamp"),
    Index("ix_logs_trace", "tenant_id", "trace_id"),
    Index(
        "ix_logs_orphans",
        "tenant_id",
        "trace_id",
        postgresql_where=text("execution_id IS NULL"),
        sqlite_where=text("execution_id IS NULL"),
    ),
    postgresql_partition_by="RANGE (timestamp)",
)

agent_feedback = Table(
    "agent_feedback",
    metadata,
    _tenant(),
    Column("feedback_id", Text, nullable=False),
    Column("timestamp", TS, nullable=False),
    Column("execution_id", Text),
    Column("agent_id", Text, nullable=False),
    Column("user_id", Text),
    Column("rating", Integer),
    Column("is_favorite", Boolean),
    Column("comment", Text, comment="scrubbed free text"),
    Column("created_at", TS, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "feedback_id", name="pk_agent_feedback"),
    Index("ix_feedback_user_agent", "tenant_id", "user_id", "agent_id", "timestamp"),
)

agent_metrics = Table(
    "agent_metrics",
    metadata,
    _tenant(),
    Column("agent_id", Text, nullable=False),
    Column("period", Text, nullable=False, comment="hour, day, week or month"),
    Column("period_start", TS, nullable=False),
    Column("date", Date, nullable=False),
    Column("hour", Integer),
    Column("total_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("successful_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("failed_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("timeout_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("error_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("sum_duration", BigInteger, nullable=False, server_default=text("0")),
    Column("avg_duration", Float),
    Column("min_duration", Integer),
    Column("max_duration", Integer),
    Column("p50_duration", Float),
    Column("p95_duration", Float),
    Column("p99_duration", Float),
    Column("duration_sketch", JSON, comment="log-bucket sketch, mergeable"),  # json on PostgreSQL: 0002_analytics
    Column("unique_users", Integer, nullable=False, server_default=text("0")),
    Column("total_credits_consumed", Float, nullable=False, server_default=text("0")),
    Column("avg_credits_per_execution", Float),
    Column("input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("cost_usd", Float, nullable=False, server_default=text("0")),
    Column("llm_calls", BigInteger, nullable=False, server_default=text("0")),
    Column("tool_calls", BigInteger, nullable=False, server_default=text("0")),
    Column("unpriced_llm_calls", BigInteger, nullable=False, server_default=text("0")),
    Column("error_counts", JSONType),
    Column("model_counts", JSONType),
    Column("intent_counts", JSONType),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("updated_at", TS, nullable=False, server_default=NOW),
    Column("model_costs", JSONType, comment="model -> cost in US dollars"),  # 0002_analytics
    PrimaryKeyConstraint("tenant_id", "agent_id", "period", "period_start", name="pk_agent_metrics"),
    # 0002_analytics: secondary indexes of rollup tables hold the whole key and no updated column
    # (HOT updates; exact key probes whatever the statistics), fill factor 70 (room for HOT)
    Index("ix_agent_metrics_period_agent", "tenant_id", "period", "period_start", "agent_id"),
    postgresql_with={"fillfactor": 70},
)

agent_metric_users = Table(
    "agent_metric_users",
    metadata,
    _tenant(),
    Column("agent_id", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("period_start", TS, nullable=False),
    Column("user_id", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "agent_id", "period", "period_start", "user_id", name="pk_agent_metric_users"),
)

user_agent_interactions = Table(
    "user_agent_interactions",
    metadata,
    _tenant(),
    Column("user_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("total_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("successful_executions", BigInteger, nullable=False, server_default=text("0")),
    Column("first_executed_at", TS),
    Column("last_executed_at", TS),
    Column("is_favorite", Boolean, nullable=False, server_default=text("false")),
    Column("rating", Integer),
    Column("feedback", Text),
    Column("avg_executions_per_day", Float),
    Column("preferred_time_of_day", Integer, comment="hour 0-23, UTC"),
    Column("preferred_day_of_week", Integer, comment="0 = Monday"),
    Column("hour_counts", JSON),  # json, not jsonb, on PostgreSQL: 0002_analytics
    Column("weekday_counts", JSON),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("updated_at", TS, nullable=False, server_default=NOW),
    # 0002_analytics: executions per UTC hour of day and day of week, as integers (additive upserts)
    *(Column(f"hour_{h:02d}", Integer, nullable=False, server_default=text("0")) for h in range(24)),
    *(Column(f"weekday_{d}", Integer, nullable=False, server_default=text("0")) for d in range(7)),
    PrimaryKeyConstraint("tenant_id", "user_id", "agent_id", name="pk_user_agent_interactions"),
    Index("ix_interactions_agent_user", "tenant_id", "agent_id", "user_id"),  # 0002_analytics
    postgresql_with={"fillfactor": 70},
)

usage_daily = Table(
    "usage_daily",
    metadata,
    _tenant(),
    Column("user_id", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("total_interactions", BigInteger, nullable=False, server_default=text("0")),
    Column("successful_interactions", BigInteger, nullable=False, server_default=text("0")),
    Column("unique_agents_used", Integer, nullable=False, server_default=text("0")),
    Column("total_duration_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("total_duration_minutes", Float, nullable=False, server_default=text("0")),
    Column("total_input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("total_output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("total_cost", Float, nullable=False, server_default=text("0")),
    Column("total_credits", Float, nullable=False, server_default=text("0")),
    Column("agent_usage", JSONType, comment="agent id -> interactions"),
    Column("feature_usage", JSONType),
    Column("vendor_usage", JSONType, comment="provider -> calls"),
    Column("model_usage", JSONType),
    Column("ratings_count", Integer, nullable=False, server_default=text("0")),
    Column("ratings_sum", Integer, nullable=False, server_default=text("0")),
    Column("avg_satisfaction", Float),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("updated_at", TS, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "user_id", "date", name="pk_usage_daily"),
    Index("ix_usage_daily_date_user", "tenant_id", "date", "user_id"),  # 0002_analytics
    postgresql_with={"fillfactor": 70},
)

model_prices = Table(
    "model_prices",
    metadata,
    Column("provider", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("input_per_million", Float, nullable=False, comment="USD per million input tokens"),
    Column("output_per_million", Float, nullable=False, comment="USD per million output tokens"),
    Column("cached_input_per_million", Float),
    Column("source", Text, nullable=False, server_default=text("'builtin'")),
    Column("updated_at", TS, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("provider", "model", "effective_from", name="pk_model_prices"),
)

# Ingest keys and per-tenant admin tokens (migration 0003_security). Only a SHA-256 of each
# credential is stored; the API's read role is granted nothing on this table.
access_keys = Table(
    "access_keys",
    metadata,
    Column("key_id", Text, nullable=False),
    Column("kind", Text, nullable=False, comment="ingest or admin"),
    Column("tenant_id", Text, nullable=False),
    Column("name", Text),
    Column("key_hash", Text, nullable=False, comment="hex SHA-256 of the credential"),
    Column("preview", Text, nullable=False, comment="first characters of the credential"),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("revoked_at", TS),
    PrimaryKeyConstraint("key_id", name="pk_access_keys"),
    Index("ux_access_keys_hash", "key_hash", unique=True),
    Index("ix_access_keys_tenant", "tenant_id", "kind"),
)

# Rollup deltas committed by write transactions and not yet applied (migration 0004; see
# analytics/outbox.py). Internal: no tenant column, nothing granted to the API's read role.
rollup_outbox = Table(
    "rollup_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), Identity(), nullable=False),
    Column("created_at", TS, nullable=False, server_default=NOW),
    Column("attempts", Integer, nullable=False, server_default=text("0"), comment="failed applications"),
    Column("payload", LargeBinary, nullable=False, comment="the rollup delta (JSON)"),
    PrimaryKeyConstraint("id", name="pk_rollup_outbox"),
)

RAW_TABLES = ("agent_executions", "agent_steps", "agent_logs")
# on a SQLite file these live in a file of their own (storage/database.py, migration 0006)
ROLLUP_TABLES = ("agent_metric_users", "agent_metrics", "user_agent_interactions", "usage_daily")
VIEWS = ("agent_summary", "recent_interactions")
