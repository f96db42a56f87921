"""How the writer and the rollup applier read a database error (storage/writer.py): unavailable
(fail fast, probe), retryable (the same work again), about the values (reject that span, count
it against that delta) or none of these (the database's state: fail the request retryably).

Every error here is raised by a real database, both as the driver raises it (the store's COPY and
the rollup store use the driver's cursors) and wrapped by SQLAlchemy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from agent_otel.collector.storage.database import libpq_conninfo
from agent_otel.collector.storage.writer import is_data_error, is_retryable, is_unavailable

Kind = tuple[bool, bool, bool]  # (unavailable, retryable, about the values)
UNAVAILABLE: Kind = (True, False, False)
RETRYABLE: Kind = (False, True, False)
DATA: Kind = (False, False, True)
DATABASE_STATE: Kind = (False, False, False)


def kind(exc: BaseException) -> Kind:
    return is_unavailable(exc), is_retryable(exc), is_data_error(exc)


def raised(action: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the error's kind is what each test checks
        action()
    return info.value


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(libpq_conninfo(pg_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE gate (v integer CHECK (v > 0))")
        yield conn


PG_CASES = {
    "check violation": ("INSERT INTO gate VALUES (-1)", DATA),
    "integer out of range": ("SELECT 2147483647::int4 + 1", DATA),
    "value too large to index": (
        "CREATE TABLE big (t text); CREATE INDEX ON big (t);"
        " INSERT INTO big SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i",
        DATA,
    ),
    "missing table": ("SELECT * FROM no_such_table", DATABASE_STATE),
    "read-only transaction": ("SET transaction_read_only = on; INSERT INTO gate VALUES (1)", DATABASE_STATE),
}


@pytest.mark.parametrize("case", PG_CASES)
def test_postgresql_errors(case: str, pg: psycopg.Connection[tuple[object, ...]], pg_url: str) -> None:
    sql, expected = PG_CASES[case]
    *setup, statement = sql.split("; ")  # run in one transaction, rolled back after the error

    def through_the_driver() -> None:
        with pg.transaction():
            for step in setup:
                pg.execute(step)
            pg.execute(statement)

    driver = raised(through_the_driver)
    assert isinstance(driver, psycopg.Error)
    assert kind(driver) == expected
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            for step in setup:
                conn.execute(text(step))
            wrapped = raised(lambda: conn.execute(text(statement)))
        assert isinstance(wrapped, DBAPIError)
        assert kind(wrapped) == expected
    finally:
        engine.dispose()


def test_postgresql_lock_timeout_is_retryable(pg: psycopg.Connection[tuple[object, ...]], pg_url: str) -> None:
    with psycopg.connect(libpq_conninfo(pg_url)) as holder:
        holder.execute("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")
        pg.execute("SET lock_timeout = '50ms'")
        assert kind(raised(lambda: pg.execute("SELECT * FROM gate"))) == RETRYABLE
        holder.rollback()


def test_postgresql_lost_connection_is_unavailable(pg_url: str) -> None:
    with psycopg.connect(libpq_conninfo(pg_url), autocommit=True) as victim:
        pid = victim.info.backend_pid
        with psycopg.connect(libpq_conninfo(pg_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert kind(raised(lambda: victim.execute("SELECT 1"))) == UNAVAILABLE
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(libpq_conninfo(pg_url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert kind(raised(lambda: conn.execute(text("SELECT 1")))) == UNAVAILABLE
    finally:
        engine.dispose()


def test_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "errors.db"
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("CREATE TABLE gate (v integer CHECK (v > 0))")
    assert kind(raised(lambda: conn.execute("INSERT INTO gate VALUES (-1)"))) == DATA
    # SQLite reports a missing table, a read-only or a corrupt file all as OperationalError:
    # the writer fails fast and probes, as for an outage
    assert kind(raised(lambda: conn.execute("SELECT * FROM no_such_table"))) == UNAVAILABLE
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    assert kind(raised(lambda: conn.execute("BEGIN IMMEDIATE"))) == RETRYABLE
    holder.execute("ROLLBACK")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as wrapped:
            error = raised(lambda: wrapped.execute(text("INSERT INTO gate VALUES (-1)")))
            assert isinstance(error, DBAPIError) and kind(error) == DATA
            error = raised(lambda: wrapped.execute(text("SELECT * FROM no_such_table")))
            assert isinstance(error, DBAPIError) and kind(error) == UNAVAILABLE
    finally:
        engine.dispose()
        holder.close()
        conn.close()


def test_errors_of_our_own_code_are_about_the_values() -> None:
    """A span whose values our code raises on (a row that cannot be built) is rejected alone."""
    assert kind(ValueError("bad value")) == DATA
