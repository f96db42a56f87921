"""Daily range partitions of the raw tables on PostgreSQL.

The collector creates each day's partitions ahead of time (``partition_days_ahead``); a span
whose day has no partition (far past, far future) lands in the DEFAULT partition. If the DEFAULT
partition already holds rows of a day being created (the collector was down across midnight),
they are moved into the new partition before it is attached, in one transaction.
Retention then drops whole partitions (``drop_partitions_before``).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PARTITIONED = {"agent_executions": "started_at", "agent_steps": "started_at", "agent_logs": '"timestamp"'}
_LOCK_ID = 0x6167656E74  # pg advisory lock shared by every collector doing maintenance
_NAME = re.compile(r"^(?P<table>agent_executions|agent_steps|agent_logs)_p(?P<day>\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def existing_partitions(conn: Connection) -> dict[str, set[date]]:
    rows = conn.execute(
        text(
            """SELECT parent.relname, child.relname FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname IN ('agent_executions', 'agent_steps', 'agent_logs')"""
        )
    ).fetchall()
    out: dict[str, set[date]] = {table: set() for table in PARTITIONED}
    for parent, child in rows:
        match = _NAME.match(child)
        if match:
            out[parent].add(datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC).date())
    return out


def _create(conn: Connection, table: str, column: str, day: date) -> None:
    name = partition_name(table, day)
    low, high = day.isoformat(), (day + timedelta(days=1)).isoformat()
    bounds = f"FROM ('{low} 00:00:00+00') TO ('{high} 00:00:00+00')"
    moved = conn.execute(
        text(f"SELECT count(*) FROM {table}_default WHERE {column} >= :low AND {column} < :high"),
        {"low": f"{low} 00:00:00+00", "high": f"{high} 00:00:00+00"},
    ).scalar_one()
    if not moved:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES {bounds}"))
        return
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {table}_default WHERE {column} >= :low AND {column} < :high RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved"
        ),
        {"low": f"{low} 00:00:00+00", "high": f"{high} 00:00:00+00"},
    )
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}"))
    log.info("moved %d rows of %s from the default partition into %s", moved, day, name)


def ensure_partitions(engine: Engine, days_ahead: int, today: date | None = None) -> int:
    """Create the partitions for yesterday through ``days_ahead`` days ahead; return how many."""
    if engine.dialect.name != "postgresql":
        return 0
    today = today or datetime.now(UTC).date()
    wanted = [today + timedelta(days=offset) for offset in range(-1, days_ahead + 1)]
    created = 0
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}).scalar_one():
            return 0  # another collector is doing it
        present = existing_partitions(conn)
        for table, column in PARTITIONED.items():
            for day in wanted:
                if day not in present[table]:
                    _create(conn, table, column, day)
                    created += 1
    return created


def drop_partitions_before(engine: Engine, table: str, cutoff: date) -> list[str]:
    """Retention on PostgreSQL: drop every daily partition of ``table`` that ends before ``cutoff``."""
    dropped: list[str] = []
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}).scalar_one():
            return dropped
        for day in sorted(existing_partitions(conn)[table]):
            if day + timedelta(days=1) <= cutoff:
                name = partition_name(table, day)
                conn.execute(text(f"DROP TABLE {name}"))
                dropped.append(name)
    return dropped
