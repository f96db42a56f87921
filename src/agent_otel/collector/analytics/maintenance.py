"""Planner statistics of the rollup tables on PostgreSQL.

The hook reads, locks and updates rollup rows by primary key. PostgreSQL chooses the index and
the join from table statistics; on a table that grew since its last ANALYZE (a new database
under load: autovacuum waits a minute, then until 10% of the table changed) it can pick a
secondary index and filter thousands of rows per key, or scan a whole table to update a few
rows. So ``serve`` checks every 15 seconds how many rows of each rollup table changed since its
last ANALYZE (``pg_stat_user_tables``, so it works whichever process wrote them) and ANALYZEs
those past 1,000 changed rows and 10% of their size: a sampling ANALYZE costs milliseconds to a
few hundred on millions of rows, once in a while.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import Engine, text

from agent_otel.collector.storage.schema import ROLLUP_TABLES

log = logging.getLogger(__name__)

MIN_CHANGED: Final = 1000


def refresh_statistics(engine: Engine) -> list[str]:
    """ANALYZE the rollup tables that changed enough since their last ANALYZE; return their names."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.relname, s.n_mod_since_analyze, c.reltuples FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid WHERE s.relname = ANY(:tables)"
            ),
            {"tables": list(ROLLUP_TABLES)},
        ).fetchall()
        due = [name for name, changed, size in rows if changed >= max(MIN_CHANGED, 0.1 * max(size, 0))]
        for table in due:
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    if due:
        log.debug("analyzed %s", ", ".join(due))
    return due
