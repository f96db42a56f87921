"""Write docs/schema.md from the SQLAlchemy metadata (a test checks it is up to date).

.venv/bin/python tools/gen_schema_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import Identity

from agent_otel.collector.storage.schema import metadata

TARGET = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


def render() -> str:
    lines = [
        "# Schema",
        "",
        "Generated from `src/agent_otel/collector/storage/schema.py` by `tools/gen_schema_docs.py`;"
        " do not edit by hand. Migrations in `migrations/versions/` create exactly this (`agent-otel db check`).",
        "Timestamps are UTC (`timestamptz` on PostgreSQL). Raw tables are partitioned by day on PostgreSQL.",
        "On a SQLite file the rollup tables (`agent_metrics`, `agent_metric_users`, `user_agent_interactions`,"
        " `usage_daily`) live in a file of their own beside it, `<name>.rollups<suffix>`, which the collector's"
        " connections attach as the schema `rollups` (migration `0006_sqlite_rollups_file`; see"
        " [analytics.md](analytics.md#on-a-sqlite-file-the-rollups-file)).",
        "",
    ]
    for table in metadata.sorted_tables:
        key = ", ".join(c.name for c in table.primary_key.columns)
        partition = table.dialect_options["postgresql"].get("partition_by")
        lines += [
            f"## `{table.name}`",
            "",
            f"Primary key: ({key})" + (f"; partitioned by {partition}" if partition else ""),
            "",
        ]
        lines += ["| column | type | null | default | note |", "|---|---|---|---|---|"]
        for column in table.columns:
            server_default = column.server_default
            if server_default is None:
                default = ""
            elif isinstance(server_default, Identity):
                default = "identity"
            else:
                default = server_default.arg.text  # type: ignore[attr-defined]
            lines.append(
                f"| `{column.name}` | {column.type.compile()} | {'yes' if column.nullable else 'no'} | {default} |"
                f" {column.comment or ''} |"
            )
        indexes = sorted(table.indexes, key=lambda i: i.name or "")
        if indexes:
            lines += [
                "",
                "Indexes: "
                + "; ".join(
                    f"`{i.name}` ({', '.join(c.name for c in i.columns)})"
                    + (
                        " where " + str(i.dialect_options["postgresql"]["where"])
                        if i.dialect_options["postgresql"].get("where") is not None
                        else ""
                    )
                    for i in indexes
                ),
            ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.exists() and TARGET.read_text() == text else 1)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
