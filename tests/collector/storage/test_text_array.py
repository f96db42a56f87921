"""``text_array``: the lookups' id arrays, sent as one literal when that is safe (issue 7)."""

from __future__ import annotations

import psycopg
import pytest

from agent_otel.collector.storage.store import text_array

pytestmark = pytest.mark.postgres

TRICKY = [
    ["a,b", "c"],
    ["NULL", "x"],
    ["x", "null"],
    ['quo"te', "back\\slash"],
    ["{brace}", "sp ace"],
    ["", "x"],
    ["ünïcode", "x"],
]


def test_plain_ids_become_one_literal() -> None:
    ids = ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "default", "tenant-1", "a.b:c_d"]
    assert text_array(ids) == "{" + ",".join(ids) + "}"


@pytest.mark.parametrize("values", TRICKY)
def test_anything_else_is_left_to_the_driver(values: list[str]) -> None:
    assert text_array(values) is values


@pytest.mark.parametrize(
    "values", [["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "default", "nullable", "xnull"], *TRICKY]
)
def test_postgresql_reads_back_the_same_array(pg_url: str, values: list[str]) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone()
    assert row is not None
    assert row[0] == values
