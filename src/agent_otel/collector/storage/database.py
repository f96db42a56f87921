"""Engine creation for both back ends: SQLite (embedded default, WAL mode) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from agent_otel.settings import Settings


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` URL (``:memory:`` for the in-memory form)."""
    return make_url(url).database or ":memory:"


BUSY_TIMEOUT_MS = 30_000


def configure_sqlite_connection(conn: sqlite3.Connection, synchronous: str) -> None:
    """Pragmas every SQLite connection gets: WAL so readers never block the writer."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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


# Waits between attempts at the write lock (seconds): short and capped, see begin_immediate.
_LOCK_WAITS = (0.0002, 0.0005, 0.001)


def begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, retried every millisecond at most for as long as the connection's
    busy timeout. SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between attempts,
    so a writer queued behind another process's transaction (the ingest writer behind the rollup
    applier, and back) woke tens of milliseconds after the lock was free, on average. The busy
    timeout is off for these attempts alone; every other statement keeps it. Raises SQLAlchemy's
    ``OperationalError`` ("database is locked") when the lock stays taken that long."""
    timeout_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    deadline = time.monotonic() + timeout_ms / 1000
    conn.execute("PRAGMA busy_timeout=0")
    try:
        attempt = 0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(_LOCK_WAITS[min(attempt, len(_LOCK_WAITS) - 1)])
            attempt += 1
    finally:
        conn.execute(f"PRAGMA busy_timeout={timeout_ms}")


def checkpoint_wal(engine: Engine) -> None:
    """Copy the write-ahead log into the database file, holding the write lock meanwhile, so the
    next write transaction starts the log over from its beginning.

    The writer engine's connections do not checkpoint at commit (``wal_autocheckpoint=0``, see
    ``service.writer_engine``); its writers call this after theirs. SQLite's own checkpoint runs
    inside ``COMMIT``, after the lock is released: with two processes writing in turn (the ingest
    writer and the rollup applier) the other one began before the copy ended, the log was never
    complete when a transaction began, so it was never restarted, and under sustained load it
    grew to 1 to 2.6 GB beside a 350 MB database. Holding the write lock (BEGIN IMMEDIATE on one
    connection) while another copies (a PASSIVE checkpoint, which never waits for readers) leaves
    nothing uncopied when the next writer begins. It also moves the copy out of the commit, after
    the requests are answered. A reader still on an older snapshot limits the copy, as always."""
    with engine.connect() as holder, engine.connect() as copier:
        lock = holder.connection.driver_connection
        begin_immediate(lock)  # type: ignore[arg-type]
        try:
            copier.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # type: ignore[union-attr]
        finally:
            lock.execute("ROLLBACK")  # type: ignore[union-attr]


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
