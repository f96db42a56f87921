"""On a SQLite file, the rollup tables move to a file of their own (issue 7).

SQLite has one write lock per file. The ingest writer and the rollup applier took turns at it,
and under full load the applier held it a third of the time: ingest alone acknowledged 17,788
spans/s where both together reached 10,681 (docs/performance.md, 2026-12-06, sixth session).
So the rollup tables (``agent_metrics``, ``agent_metric_users``, ``user_agent_interactions``,
``usage_daily``) move to ``<name>.rollups<suffix>`` beside the database file, which every
connection but the ingest writer's attaches as the schema ``rollups``
(storage/database.py), and the two writers lock a file each.

The applier's round then spans two files, in three steps that are each safe to repeat
(analytics/outbox.py), with two new tables:

- ``rollups.rollup_rounds``: each round folded into the rollup tables (the last outbox id it
  covered) and the changes it computed for ``agents``, kept until the main file has them;
- ``rollup_agents_mark`` (main file): the last round whose changes ``agents`` has.

``rollup_outbox`` gets AUTOINCREMENT: its ids must never be reused, or a delta written after the
outbox emptied would get an id below the applier's mark and never be folded.

``agent_summary`` joins ``agents`` with ``agent_metrics``, and a view in one file cannot name a
table in another: on such a database it is a TEMP view that every attaching connection creates.

Nothing changes on PostgreSQL or on an in-memory SQLite database (no file beside it). The move
copies the rows; if it is interrupted (a crash between the two files' commits), run
``agent-otel rollups rebuild`` after the upgrade.

Revision ID: 0006_sqlite_rollups_file
Revises: 0005_steps_by_trace
Create Date: 2026-12-06
"""

from __future__ import annotations

import re

from alembic import op
from sqlalchemy import Connection

revision = "0006_sqlite_rollups_file"
down_revision = "0005_steps_by_trace"
branch_labels = None
depends_on = None

ROLLUP_TABLES = ("agent_metric_users", "agent_metrics", "user_agent_interactions", "usage_daily")

# migration 0001's view, on SQLite
AGENT_SUMMARY = """
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


def _has_rollups_file(bind: Connection) -> bool:
    if bind.dialect.name != "sqlite":
        return False
    return any(row[1] == "rollups" for row in bind.exec_driver_sql("PRAGMA database_list"))


def _move(bind: Connection, table: str, source: str, target: str) -> None:
    """Recreate ``table`` (its DDL and indexes as stored) in ``target``, copy its rows, drop it
    from ``source``."""
    master = f"{source}.sqlite_master"
    create = bind.exec_driver_sql(f"SELECT sql FROM {master} WHERE type = 'table' AND name = ?", (table,)).scalar_one()
    indexes = bind.exec_driver_sql(
        f"SELECT sql FROM {master} WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
    ).all()
    bind.exec_driver_sql(re.sub(r"^CREATE TABLE \"?\w+\"?", f"CREATE TABLE {target}.{table}", create, count=1))
    bind.exec_driver_sql(f"INSERT INTO {target}.{table} SELECT * FROM {source}.{table}")
    bind.exec_driver_sql(f"DROP TABLE {source}.{table}")
    for (sql,) in indexes:  # CREATE [UNIQUE] INDEX name ON table (...): the index goes where its table is
        bind.exec_driver_sql(re.sub(r"INDEX \"?(\w+)\"? ON", rf"INDEX {target}.\1 ON", sql, count=1))


def _outbox_ids(bind: Connection, *, autoincrement: bool) -> None:
    """Recreate ``rollup_outbox`` with or without AUTOINCREMENT, its rows kept."""
    create = bind.exec_driver_sql("SELECT sql FROM main.sqlite_master WHERE name = 'rollup_outbox'").scalar_one()
    key = "PRIMARY KEY (id AUTOINCREMENT)" if autoincrement else "PRIMARY KEY (id)"
    create = re.sub(r"PRIMARY KEY \(id( AUTOINCREMENT)?\)", key, create)
    bind.exec_driver_sql("ALTER TABLE rollup_outbox RENAME TO rollup_outbox_old")
    bind.exec_driver_sql(create)
    bind.exec_driver_sql("INSERT INTO rollup_outbox SELECT * FROM rollup_outbox_old")
    bind.exec_driver_sql("DROP TABLE rollup_outbox_old")


def upgrade() -> None:
    bind = op.get_bind()
    if not _has_rollups_file(bind):
        return
    for table in ROLLUP_TABLES:
        _move(bind, table, "main", "rollups")
    bind.exec_driver_sql("DROP VIEW main.agent_summary")
    bind.exec_driver_sql("CREATE TABLE rollups.rollup_rounds (mark INTEGER NOT NULL PRIMARY KEY, agents BLOB NOT NULL)")
    bind.exec_driver_sql(
        "CREATE TABLE main.rollup_agents_mark (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), mark INTEGER NOT NULL)"
    )
    bind.exec_driver_sql("INSERT INTO main.rollup_agents_mark (id, mark) VALUES (1, 0)")
    _outbox_ids(bind, autoincrement=True)
    bind.exec_driver_sql(f"CREATE TEMP VIEW IF NOT EXISTS agent_summary AS {AGENT_SUMMARY}")


def downgrade() -> None:
    bind = op.get_bind()
    if not _has_rollups_file(bind) or not bind.exec_driver_sql(
        "SELECT 1 FROM rollups.sqlite_master WHERE name = 'rollup_rounds'"
    ).first():
        return
    # the rounds whose changes `agents` lacks cannot be kept: rebuild the rollups after this
    bind.exec_driver_sql(
        "DELETE FROM rollup_outbox WHERE attempts < 3 AND id <= (SELECT max(mark) FROM rollups.rollup_rounds)"
    )
    bind.exec_driver_sql("DROP TABLE rollups.rollup_rounds")
    bind.exec_driver_sql("DROP TABLE main.rollup_agents_mark")
    bind.exec_driver_sql("DROP VIEW IF EXISTS temp.agent_summary")
    for table in ROLLUP_TABLES:
        _move(bind, table, "rollups", "main")
    bind.exec_driver_sql(f"CREATE VIEW main.agent_summary AS {AGENT_SUMMARY}")
    _outbox_ids(bind, autoincrement=False)
