"""Alembic environment for agent-otel.

Run through ``agent-otel db ...`` (which passes an open connection), or with plain ``alembic``
and ``AGENT_OTEL_DB_URL`` set. Revisions are self-contained: they never import the models.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=config.attributes.get("target_metadata"),
        render_as_batch=True,  # SQLite needs batch mode for ALTER TABLE
        include_name=config.attributes.get("include_name"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("AGENT_OTEL_DB_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _run(conn)
