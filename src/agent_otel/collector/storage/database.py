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


def is_sqlite_file(url: str) -> bool:
    """A SQLite database in a file (not in memory): WAL, checkpoints, the rollups file beside it."""
    return is_sqlite_url(url) and sqlite_path(url) != ":memory:"


BUSY_TIMEOUT_MS = 30_000


def configure_sqlite_connection(conn: sqlite3.Connection, synchronous: str) -> None:
    """Pragmas every SQLite connection gets: WAL so readers never block the writer."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")


# -- the rollups file ------------------------------------------------------------------------------
#
# SQLite has one write lock per database file. With the rollup tables in the same file as the raw
# rows, the rollup applier and the ingest writer took turns at that lock, and the applier held it
# a third of the time under full load (docs/performance.md, 2026-12-06, sixth session). So on a
# SQLite file the rollup tables live in a second file beside it, ``<name>.rollups<suffix>`` (migration
# 0006_sqlite_rollups_file moves them), and the two writers each have a lock of their own: the
# ingest writer's connections open the main file alone; every other connection attaches the
# rollups file as the schema ``rollups``, so the rollup tables are found by their plain names.
# A view in one file cannot name a table in another, so ``agent_summary`` (agents joined with
# agent_metrics) is a TEMP view created on each such connection.

ROLLUPS_SCHEMA = "rollups"
# the main file attached to the rollup applier's connections (analytics/outbox.py), for reads only
INGEST_SCHEMA = "ingest"


def rollups_path(path: str) -> str:
    """The rollups file of the SQLite database at ``path``: ``agent-otel.db`` ->
    ``agent-otel.rollups.db``, beside it."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}.rollups{p.suffix or '.db'}"))


def has_split_rollups(conn: sqlite3.Connection, schema: str = ROLLUPS_SCHEMA) -> bool:
    """Whether the rollup tables live in the rollups file, attached as ``schema`` (migration 0006)."""
    query = f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'rollup_rounds'"
    return conn.execute(query).fetchone() is not None


def rollups_file_of(conn: Connection) -> str | None:
    """The rollups file's path when ``conn`` has it attached and the rollup tables live there."""
    if conn.dialect.name != "sqlite":
        return None
    files = {row[1]: row[2] for row in conn.exec_driver_sql("PRAGMA database_list")}
    if ROLLUPS_SCHEMA not in files or not has_split_rollups(conn.connection.driver_connection):  # type: ignore[arg-type]
        return None
    return str(files[ROLLUPS_SCHEMA])


def attach_rollups(conn: sqlite3.Connection, path: str, synchronous: str) -> None:
    """Attach the rollups file of the main file at ``path`` (created empty if missing) with the
    same pragmas, and, once the rollup tables are there, create the TEMP view ``agent_summary``."""
    conn.execute(f"ATTACH DATABASE ? AS {ROLLUPS_SCHEMA}", (rollups_path(path),))
    conn.execute(f"PRAGMA {ROLLUPS_SCHEMA}.journal_mode=WAL")
    conn.execute(f"PRAGMA {ROLLUPS_SCHEMA}.synchronous={synchronous}")
    if has_split_rollups(conn):
        conn.execute(f"CREATE TEMP VIEW IF NOT EXISTS agent_summary AS {AGENT_SUMMARY_SQLITE}")


# Migration 0001's view on SQLite, created as a TEMP view where the rollups file is separate. A
# copy on purpose: migrations are frozen and import nothing from the package (0001 and 0006 hold
# theirs); a change to the view needs a migration and this copy.
AGENT_SUMMARY_SQLITE = """
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


def create_db_engine(settings: Settings, *, rollups: bool = True, **kwargs: Any) -> Engine:
    """An engine on the configured database. On a SQLite file its connections attach the rollups
    file (see above) unless ``rollups`` is False: the ingest writer's, whose ``BEGIN IMMEDIATE``
    would otherwise take the rollups file's write lock too."""
    url = settings.db_url
    if is_sqlite_url(url):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        synchronous = settings.storage.sqlite_synchronous
        attach = rollups and path != ":memory:"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            configure_sqlite_connection(dbapi_conn, synchronous)
            if attach:
                attach_rollups(dbapi_conn, path, synchronous)

        return engine
    kwargs.setdefault("pool_size", settings.storage.pool_size)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def sqlite_rollups_engine(path: str, synchronous: str) -> Engine:
    """The rollup applier's engine for the rollups file of a SQLite file database: that file is
    its main schema and the main file is attached as ``ingest`` (the applier reads
    ``agent_feedback`` there). A transaction begins by taking the rollups file's write lock alone
    (a write to ``rollup_rounds`` that changes nothing: ``BEGIN IMMEDIATE`` would take the main
    file's lock too); one from ``reading()`` takes none."""
    engine = create_engine(f"sqlite:///{rollups_path(path)}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        configure_sqlite_connection(dbapi_conn, synchronous)
        dbapi_conn.execute(f"ATTACH DATABASE ? AS {INGEST_SCHEMA}", (path,))
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")
        if not conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("UPDATE main.rollup_rounds SET mark = mark WHERE 0")

    return engine


def libpq_conninfo(url: str) -> str:
    """A psycopg connection string for a ``postgresql+psycopg://`` SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
