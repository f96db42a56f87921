"""A failed transaction must not break the connection's later writes.

Found by bench/chaos.py: PostgreSQL's write path keeps, per connection, which session temp
tables it has created. A temp table created inside a transaction (or savepoint) that is then
rolled back no longer exists, so the connection's later writes failed with UndefinedTable and
every span was rejected until the process restarted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from agent_otel.collector.pipeline.rows import LOG_COLUMNS, LOG_KEY, LogRow
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.store import store_for


def _log(log_id: str) -> LogRow:
    return LogRow(
        "default", log_id, datetime.now(UTC), None, None, None, None, None, "execution", "info", None, "m", None, None
    )


class Boom(Exception):
    pass


def test_writes_work_after_a_rolled_back_transaction(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    engine.dispose()  # a fresh connection: its first write creates the temp tables

    def failing_first_write() -> None:
        with engine.begin() as conn:
            store_for(conn).insert_new("agent_logs", LOG_COLUMNS, LOG_KEY, [_log("a")])
            raise Boom

    with pytest.raises(Boom):
        failing_first_write()
    with engine.begin() as conn:  # the same pooled connection
        inserted = store_for(conn).insert_new("agent_logs", LOG_COLUMNS, LOG_KEY, [_log("b")])
    assert len(inserted) == 1


def test_writes_work_after_a_rolled_back_savepoint(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """The writer isolates a bad span in a savepoint; its neighbours must still be written."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    engine.dispose()
    with engine.begin() as conn:
        with contextlib.suppress(Boom), conn.begin_nested():
            store_for(conn).insert_new("agent_logs", LOG_COLUMNS, LOG_KEY, [_log("a")])
            raise Boom
        inserted = store_for(conn).insert_new("agent_logs", LOG_COLUMNS, LOG_KEY, [_log("b")])
        assert len(inserted) == 1
        assert conn.execute(text("SELECT count(*) FROM agent_logs")).scalar_one() == 1
