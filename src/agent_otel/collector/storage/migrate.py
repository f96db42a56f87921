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
from sqlalchemy import Connection, Engine

from agent_otel.collector.storage.schema import metadata

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
        ctx = MigrationContext.configure(
            conn, opts={"include_name": _include_name, "compare_type": True, "target_metadata": metadata}
        )
        for diff in compare_metadata(ctx, metadata):
            problems.append(_describe(diff))
    return problems


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
