"""Planner statistics of the rollup tables on PostgreSQL.

The hook reads, locks and updates rollup rows by primary key. PostgreSQL chooses the index and
the join from table statistics; on a table that grew since its last ANALYZE (a new database
under load: autovacuum waits a minute, then until 10% of the table changed) it can pick a
secondary index and filter thousands of rows per key, or scan a whole table to update a few
rows. So ``serve`` checks every 15 seconds how many live rows each rollup table holds
(``pg_stat_user_tables``, so it works whichever process wrote them) against the count its last
ANALYZE saw (``pg_class.reltuples``, -1 before the first) and ANALYZEs those that reached 1,000
rows and grew by 10% since.

Growth, not changed rows: the rollup rows are updated in place all the time (each applier round
rewrites most of the day's ``usage_daily`` and the hour's interactions), which changes no
statistic a plan of these statements depends on, while counting updates as changes ANALYZEd
every rollup table at every check under full load: about 1.3 s of a PostgreSQL backend per 15 s
(py-spy of the supervisor, 2026-12-07). Autovacuum still analyzes them after its own threshold
of changed rows.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import Engine, text

from agent_otel.collector.storage.schema import ROLLUP_TABLES

log = logging.getLogger(__name__)

MIN_ROWS: Final = 1000
GROWTH: Final = 1.1


def refresh_statistics(engine: Engine) -> list[str]:
    """ANALYZE the rollup tables that grew enough since their last ANALYZE; return their names."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.relname, s.n_live_tup, c.reltuples FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid WHERE s.relname = ANY(:tables)"
            ),
            {"tables": list(ROLLUP_TABLES)},
        ).fetchall()
        due = [name for name, live, analyzed in rows if live >= MIN_ROWS and live > GROWTH * analyzed]
        for table in due:
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    if due:
        log.debug("analyzed %s", ", ".join(due))
    return due
