"""Migrations: upgrade -> downgrade -> upgrade on both databases, nothing left behind, no drift,
and the CLI commands around them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from sqlalchemy import Engine, inspect, text

from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.schema import ROLLUP_TABLES, metadata


def _objects(engine: Engine) -> tuple[set[str], set[str]]:
    """Tables and views, on a SQLite file those of its rollups file and the TEMP views too."""
    with engine.connect() as conn:
        inspector = inspect(conn)
        tables, views = set(inspector.get_table_names()), set(inspector.get_view_names())
        if "rollups" in inspector.get_schema_names():
            tables |= set(inspector.get_table_names(schema="rollups"))
            views |= set(inspector.get_temp_view_names())
        return tables, views


def test_upgrade_downgrade_upgrade_leaves_no_drift(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    tables, views = _objects(engine)
    assert set(metadata.tables) <= tables
    assert {"agent_summary", "recent_interactions"} <= views
    if engine.dialect.name == "sqlite":  # a file: the rollup tables in a file of their own
        with engine.connect() as conn:
            assert set(ROLLUP_TABLES) <= set(inspect(conn).get_table_names(schema="rollups"))
            assert not set(ROLLUP_TABLES) & set(inspect(conn).get_table_names())
    assert migrate.current(engine) == migrate.head()
    assert migrate.check(engine) == []

    migrate.downgrade(engine, "base")
    tables, views = _objects(engine)
    assert tables <= {"alembic_version"}, tables  # every table the migrations added is gone (both files)
    assert views == set()
    assert migrate.current(engine) is None

    migrate.upgrade(engine)
    assert migrate.check(engine) == []
    with engine.begin() as conn:  # the views work against the tables
        assert conn.execute(text("SELECT count(*) FROM agent_summary")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM recent_interactions")).scalar_one() == 0


def test_each_revision_downgrades_cleanly(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """Walk the chain one revision at a time, down to base, and back."""
    from alembic.script import ScriptDirectory

    engine = engine_for(db_url)
    with migrate._config(None) as cfg:  # type: ignore[arg-type]
        revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]
    assert revisions[-1] == migrate.head()
    for revision in revisions:
        migrate.upgrade(engine, revision)
        assert migrate.current(engine) == revision
    for previous in [*revisions[-2::-1], "base"]:
        migrate.downgrade(engine, previous)
        assert migrate.current(engine) == (None if previous == "base" else previous)
    migrate.upgrade(engine)
    assert migrate.check(engine) == []


def test_check_reports_drift(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_executions_session"))
        conn.execute(text("CREATE TABLE stray_table (id integer primary key)"))
    problems = migrate.check(engine)
    assert any("ix_executions_session" in p for p in problems)
    assert any("stray_table" in p for p in problems)


def _cli(*args: str, env_db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_OTEL_DB_URL": env_db}
    return subprocess.run(
        [sys.executable, "-m", "agent_otel", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_db_cli_commands(db_url: str) -> None:
    assert "(empty" in _cli("db", "current", env_db=db_url).stdout
    upgraded = _cli("db", "upgrade", env_db=db_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert migrate.head() in _cli("db", "current", env_db=db_url).stdout
    checked = _cli("db", "check", env_db=db_url)
    assert checked.returncode == 0 and "no drift" in checked.stdout
    down = _cli("db", "downgrade", "base", env_db=db_url)
    assert down.returncode == 0 and "(empty)" in down.stdout
    drift = _cli("db", "check", env_db=db_url)
    assert drift.returncode == 1 and "database is at revision (none)" in drift.stdout


def test_bad_database_url_is_a_clear_error() -> None:
    result = _cli("db", "current", env_db="mysql://root@localhost/x")
    assert result.returncode == 2
    assert "unsupported database URL scheme 'mysql'" in result.stderr
