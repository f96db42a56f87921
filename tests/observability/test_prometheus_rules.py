"""The Prometheus files in collector/prometheus/: valid for promtool, and every alert unit-tested
both firing and not firing (promtool test rules)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.prometheus_server import PROMETHEUS_DIR

pytestmark = pytest.mark.prometheus

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))


def _rules(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def _run(promtool: str, *args: str | Path, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run([promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_the_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["agent-otel-alerts.yml", "agent-otel-recording.yml"]
    assert TEST_FILES, "no promtool rule tests"


def test_scrape_config_is_valid(promtool: str) -> None:
    output = _run(promtool, "check", "config", "prometheus.yml")
    assert "2 rule files found" in output  # rule_files: rules/*.yml resolves next to the config


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_valid(promtool: str, path: Path) -> None:
    output = _run(promtool, "check", "rules", path)
    assert "SUCCESS" in output


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, path: Path) -> None:
    output = _run(promtool, "test", "rules", path.name, cwd=path.parent)
    assert "SUCCESS" in output and "FAILED" not in output


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules("alert")}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
    assert (firing | quiet) - alerts == set(), "tests name alerts that do not exist"


def test_every_recording_rule_is_tested() -> None:
    tested = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {check["expr"].split("{")[0].strip() for check in case.get("promql_expr_test", [])}
    assert {rule["record"] for rule in _rules("record")} - tested == set()


def test_the_issue_s_alerts_are_all_there() -> None:
    alerts = {rule["alert"]: rule for rule in _rules("alert")}
    assert {
        "AgentSuccessRateLow",  # seed 002: success rate below 95%
        "AgentLatencyP95High",
        "AgentErrorSpike",
        "AgentCostBudgetExceeded",
        "AgentTokenBudgetExceeded",
        "AgentOtelRefusingSpans",
        "AgentOtelWriteFailures",
        "AgentOtelDatabaseDown",
        "AgentOtelRollupsBehind",
        "AgentOtelCollectorDown",
        "AgentOtelCollectorAbsent",
    } == set(alerts)
    assert "< 0.95" in alerts["AgentSuccessRateLow"]["expr"]
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_recording_rules_cover_the_issue() -> None:
    records = {rule["record"] for rule in _rules("record")}
    assert {
        "agent:agent_executions_success:ratio_rate5m",
        "agent:agent_execution_duration_seconds:p95_5m",
        "agent:agent_execution_duration_seconds:p99_5m",
        "model:agent_tokens:rate5m",
        "model:agent_cost_usd:rate5m",
    } <= records
