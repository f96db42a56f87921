"""The built wheel is what a user installs: it must carry the migrations and the data files, and
``agent-otel db upgrade`` must work from it alone (not from the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build isolation: the wheel is built the way pip builds it for a user (fresh setuptools)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("agent_otel-*.whl")
    return built


def test_the_wheel_ships_every_migration_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert revisions, "no migrations in the checkout"
    for revision in revisions:
        assert f"agent_otel/_migrations/versions/{revision}" in names
    assert "agent_otel/_migrations/env.py" in names
    data = sorted(p.name for p in (ROOT / "src" / "agent_otel" / "data").iterdir() if p.suffix in (".yaml", ".json"))
    for name in data:
        assert f"agent_otel/data/{name}" in names
    assert "agent_otel/py.typed" in names


def test_db_upgrade_runs_from_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    db = tmp_path / "wheel.db"
    env = {**os.environ, "PYTHONPATH": str(unpacked), "AGENT_OTEL_DB_URL": f"sqlite:///{db}"}
    script = (
        "import agent_otel, sys; from agent_otel.cli import main;"
        f" assert agent_otel.__file__.startswith({str(unpacked)!r}), agent_otel.__file__;"
        " sys.exit(main(['db', 'upgrade']))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    head = sorted(p.stem for p in (ROOT / "migrations" / "versions").glob("0*.py"))[-1]
    assert f"at revision {head}" in done.stdout + done.stderr
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agent_executions", "agent_steps", "rollup_outbox"} <= tables
    with sqlite3.connect(tmp_path / "wheel.rollups.db") as conn:  # the rollup tables' own file
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"usage_daily", "agent_metrics", "rollup_rounds"} <= tables
