"""Engine creation for both back ends: SQLite (embedded default, WAL mode) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from agent_otel.settings import Settings


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` URL (``:memory:`` for the in-memory form)."""
    return make_url(url).database or ":memory:"


def configure_sqlite_connection(conn: sqlite3.Connection, synchronous: str) -> None:
    """Pragmas every SQLite connection gets: WAL so readers never block the writer."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")


# Execution option of a connection that only reads: on the writer's SQLite engine its transactions
# begin DEFERRED (a snapshot, no write lock) instead of IMMEDIATE (service.writer_engine).
READ_ONLY = "agent_otel_read_only"


def reading(engine: Engine) -> Connection:
    """A connection for reads alone. On SQLite, a poll of the writer's engine (the rollup
    applier's outbox checks, the key refresh) otherwise took the database's one write lock, so it
    queued behind the ingest writer and held it up in turn, for a read. In WAL mode a reader never
    blocks the writer."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def create_db_engine(settings: Settings, **kwargs: Any) -> Engine:
    url = settings.db_url
    if is_sqlite_url(url):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        synchronous = settings.storage.sqlite_synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            configure_sqlite_connection(dbapi_conn, synchronous)

        return engine
    kwargs.setdefault("pool_size", settings.storage.pool_size)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def libpq_conninfo(url: str) -> str:
    """A psycopg connection string for a ``postgresql+psycopg://`` SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
