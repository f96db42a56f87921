"""Alembic, driven programmatically: ``agent-otel db upgrade|downgrade|current|check``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine

from agent_otel.collector.storage.database import rollups_file_of
from agent_otel.collector.storage.schema import ROLLUP_TABLES, metadata

# Daily partitions and the DEFAULT partition are created by the collector, not by models.
_PARTITION = re.compile(r"^(agent_executions|agent_steps|agent_logs)_(default|p\d{8})$")


def migrations_dir() -> Path:
    """The migrations: ``agent_otel/_migrations`` (in a checkout, a link to ``migrations/`` at the
    repository root; a built wheel carries the files themselves, see tests/packaging), else
    ``migrations/`` found from this file in the checkout."""
    packaged = Path(str(resources.files("agent_otel") / "_migrations"))
    if (packaged / "env.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[4] / "migrations"


def _include_name(name: str | None, type_: str, _parent: dict[str, Any]) -> bool:
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


@contextmanager
def _config(connection: Connection) -> Iterator[Config]:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    cfg.attributes["target_metadata"] = metadata
    cfg.attributes["include_name"] = _include_name
    yield cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn, _config(conn) as cfg:
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn, _config(conn) as cfg:
        command.downgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    with _config(None) as cfg:  # type: ignore[arg-type]
        script = ScriptDirectory.from_config(cfg)
        heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; expected one: {heads}")
    return heads[0]


def check(engine: Engine) -> list[str]:
    """Drift between the models and the migrated database, as readable lines (empty: none)."""
    problems: list[str] = []
    cur, want = current(engine), head()
    if cur != want:
        problems.append(f"database is at revision {cur or '(none)'}, migrations head is {want}")
    with engine.connect() as conn:
        split = rollups_file_of(conn)
    if split is None:
        return problems + _compare(engine, _include_name)
    # a SQLite file with its rollup tables in a file of their own (migration 0006): each file
    # against its share of the models
    with_main = _compare(engine, lambda n, t, p: _include_name(n, t, p) and _in_main(n, t))
    rollups = create_engine(f"sqlite:///{split}")
    try:
        with_rollups = _compare(rollups, lambda n, t, p: _include_name(n, t, p) and not _in_main(n, t))
    finally:
        rollups.dispose()
    return problems + with_main + with_rollups


# the tables of the rollups file of a SQLite file, and the applier's own tables of both files
_ROLLUPS_FILE_TABLES = frozenset(ROLLUP_TABLES)
_APPLIER_TABLES = frozenset({"rollup_rounds", "rollup_agents_mark"})


def _in_main(name: str | None, type_: str) -> bool:
    return type_ != "table" or name not in _ROLLUPS_FILE_TABLES


def _compare(engine: Engine, include: Any) -> list[str]:
    def include_object(obj: Any, name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
        if type_ == "table":
            return bool(include(name, type_, {})) and name not in _APPLIER_TABLES
        table = getattr(obj, "table", None)  # an index or column follows its table
        return table is None or bool(include(table.name, "table", {}))

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda n, t, p: t != "table" or (include(n, t, p) and n not in _APPLIER_TABLES),
                "include_object": include_object,
                "compare_type": True,
                "target_metadata": metadata,
            },
        )
        return [_describe(diff) for diff in compare_metadata(ctx, metadata)]


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column-level changes come grouped
        return "; ".join(_describe(d) for d in diff)
    op, *args = diff
    names = []
    for arg in args:
        name = getattr(arg, "name", None)
        if name:
            names.append(str(name))
        elif isinstance(arg, str):
            names.append(arg)
    return f"{op}: {' '.join(names)}".strip()
