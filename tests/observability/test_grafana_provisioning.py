"""grafana/: dashboards valid against Grafana's schema, every datasource uid and alert refId
resolvable, and the Grafana alert rules saying exactly what the Prometheus alert rules say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
SCHEMA_DIR = ROOT / "tools" / "grafana-schema"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILTIN_UIDS = {"-- Grafana --", "__expr__"}
FORBIDDEN_LABELS = re.compile(r"\b(user_id|user|session_id|session|execution_id)\s*(=|!=|=~|!~)|by \([^)]*\buser")


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def _datasources() -> dict[str, dict[str, Any]]:
    found = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            found[source["uid"]] = source
    return found


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((GRAFANA / "provisioning" / "alerting" / "agent-otel-alerts.yml").read_text())
    assert document["apiVersion"] == 1
    return [rule for group in document["groups"] for rule in group["rules"]]


def _prometheus_alerts() -> dict[str, dict[str, Any]]:
    path = ROOT / "collector" / "prometheus" / "rules" / "agent-otel-alerts.yml"
    return {rule["alert"]: rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])  # collapsed rows
    return panels


def test_committed_grafana_files_are_generated_and_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_grafana.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"run .venv/bin/python tools/gen_grafana.py\n{result.stderr}"


def test_the_schema_is_generated_from_the_pinned_grafana_schema_package() -> None:
    schema = json.loads((SCHEMA_DIR / "dashboard.schema.json").read_text())
    lock = json.loads((SCHEMA_DIR / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@grafana/schema"]["version"]
    assert f"@grafana/schema {pinned}" in schema["$comment"]
    assert json.loads((SCHEMA_DIR / "package.json").read_text())["devDependencies"]["@grafana/schema"] == pinned
    assert "ts-json-schema-generator" in (SCHEMA_DIR / "generate.mjs").read_text()
    assert schema["definitions"]["Panel"]["additionalProperties"] is False  # strict: typos are errors


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_validates_against_grafana_s_schema(path: Path) -> None:
    schema = json.loads((SCHEMA_DIR / "dashboard.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(json.loads(path.read_text()))]
    assert errors == []


def test_the_schema_rejects_a_broken_dashboard() -> None:
    """The schema is strict enough to catch what a hand edit gets wrong."""
    schema = json.loads((SCHEMA_DIR / "dashboard.schema.json").read_text())
    board = json.loads(DASHBOARD_FILES[0].read_text())
    board["panels"][0]["gridpos"] = board["panels"][0].pop("gridPos")  # misspelt key
    del board["schemaVersion"]
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(board)]
    assert any("schemaVersion" in m for m in messages)
    assert any("gridpos" in m for m in messages)


def test_the_issue_s_dashboards_are_there() -> None:
    boards = {board["uid"]: board for board in _dashboards().values()}
    assert set(boards) == {
        "agent-otel-overview",
        "agent-otel-agent",
        "agent-otel-cost",
        "agent-otel-errors",
        "agent-otel-users",
        "agent-otel-collector",
    }
    titles = {uid: {p["title"] for p in _panels(b)} for uid, b in boards.items()}
    assert {"Requests per minute", "Success rate", "Latency percentiles", "Active users"} <= titles[
        "agent-otel-overview"
    ]
    assert [v["name"] for v in boards["agent-otel-agent"]["templating"]["list"]] == ["agent"]
    assert {"Cost per hour by model", "Tokens per second by model", "Cost by user"} <= titles["agent-otel-cost"]
    # cost by user comes from SQL, never from Prometheus labels
    by_user = [p for p in _panels(boards["agent-otel-cost"]) if "by user" in p["title"]]
    assert by_user and all(p["datasource"]["uid"] == "agent-otel-postgres" for p in by_user)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    assert 8 <= len(board["uid"]) <= 40
    panels = _panels(board)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "panel titles must be unique within a dashboard"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and (target.get("expr") or target.get("rawSql")), panel["title"]
            assert target["datasource"]["uid"] == panel["datasource"]["uid"]


def test_every_datasource_uid_referenced_exists() -> None:
    sources = _datasources()
    assert set(sources) == {"agent-otel-prometheus", "agent-otel-postgres"}
    assert sources["agent-otel-prometheus"]["type"] == "prometheus"
    assert sources["agent-otel-postgres"]["type"] == "grafana-postgresql-datasource"
    referenced: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and "uid" in ds:
                referenced.append((where, ds["uid"]))
                if ds["uid"] in sources:
                    assert ds.get("type") == sources[ds["uid"]]["type"], where
            if "datasourceUid" in node:
                referenced.append((where, node["datasourceUid"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for name, board in _dashboards().items():
        walk(board, name)
    walk(_alert_rules(), "alert rules")
    assert len(referenced) > 100
    unknown = [(where, uid) for where, uid in referenced if uid not in sources and uid not in BUILTIN_UIDS]
    assert unknown == []


def test_the_dashboards_provider_points_where_the_dashboards_are_mounted() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "agent-otel.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "collector" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{path}:ro" in mounts


def test_no_promql_uses_identifiers_as_labels() -> None:
    exprs = [t["expr"] for b in _dashboards().values() for p in _panels(b) for t in p["targets"] if "expr" in t]
    exprs += [d["model"]["expr"] for r in _alert_rules() for d in r["data"] if "expr" in d["model"]]
    assert exprs
    assert [e for e in exprs if FORBIDDEN_LABELS.search(e)] == []


def test_every_alert_condition_refers_to_existing_queries() -> None:
    rules = _alert_rules()
    uids = [rule["uid"] for rule in rules]
    assert len(uids) == len(set(uids)) and all(len(uid) <= 40 for uid in uids)
    for rule in rules:
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs, rule["title"]
        for query in rule["data"]:
            assert query["model"]["refId"] == query["refId"]
            model = query["model"]
            if model.get("type") == "threshold":
                assert model["expression"] in refs - {query["refId"]}, rule["title"]
            elif model.get("type") == "math":
                used = set(re.findall(r"\$([A-Z]+)", model["expression"]))
                assert used and used <= refs - {query["refId"]}, rule["title"]
            else:
                assert query["datasourceUid"] == "agent-otel-prometheus" and model["expr"], rule["title"]
        assert rule["noDataState"] in ("OK", "NoData", "Alerting") and rule["execErrState"] in ("Error", "Alerting")


_OPS = {"gt": ">", "lt": "<"}


def grafana_condition_as_promql(rule: dict[str, Any]) -> str:
    """Rebuild the Prometheus expression a Grafana rule stands for: `(query) op threshold and ...`."""
    queries = {d["refId"]: d["model"]["expr"] for d in rule["data"] if "expr" in d["model"]}
    condition = next(d["model"] for d in rule["data"] if d["refId"] == rule["condition"])
    if condition["type"] == "threshold":
        evaluator = condition["conditions"][0]["evaluator"]
        parts = [(condition["expression"], _OPS[evaluator["type"]], evaluator["params"][0])]
    else:
        parts = []
        for clause in condition["expression"].split("&&"):
            ref, op, value = clause.split()
            parts.append((ref.lstrip("$"), op, json.loads(value)))
    return " and ".join(f"({queries[ref]}) {op} {value}" for ref, op, value in parts)


def _normal(expr: str) -> str:
    text = " ".join(expr.split())
    return re.sub(r"\s*\)", ")", re.sub(r"\(\s*", "(", text))


def test_grafana_alerts_state_the_prometheus_conditions() -> None:
    prometheus = _prometheus_alerts()
    grafana = {rule["title"]: rule for rule in _alert_rules()}
    assert set(prometheus) - set(grafana) == {"AgentOtelCollectorAbsent"}  # covered by noDataState, below
    assert set(grafana) <= set(prometheus)
    for name, rule in grafana.items():
        twin = prometheus[name]
        assert _normal(grafana_condition_as_promql(rule)) == _normal(twin["expr"]), name
        assert rule["for"] == twin["for"], name
        assert rule["labels"] == twin["labels"], name
    assert grafana["AgentOtelCollectorDown"]["noDataState"] == "Alerting"  # no target at all = down


def test_grafana_annotations_use_grafana_s_value_syntax() -> None:
    for rule in _alert_rules():
        for text in rule["annotations"].values():
            assert not re.search(r"\$value\b", text), rule["title"]
