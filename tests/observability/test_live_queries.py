"""Every query we ship, run for real.

One stack per module: a collector on a fresh PostgreSQL database, a real Prometheus scraping it
every second with the committed scrape job and rule files, and demo traffic sent in two rounds
while Prometheus scrapes (the same seed twice, so every series the first round creates moves in
the second and ``rate()`` has something to see). Then:

- every PromQL expression of every dashboard panel and template variable, with Grafana's
  variables expanded as Grafana would (``$agent`` = the variable's first value, ``$__rate_interval``
  = 1m for the datasource's 15 s timeInterval, ``$__range`` = the dashboards' 6 h), is sent to
  Prometheus's HTTP API the way Grafana sends it (range query, 20 s step, over 6 h; instant for
  instant targets) and must succeed and return at least one finite sample;
- every recording rule must return data, and so must the series Prometheus recorded from it;
- every alerting rule must evaluate without error. An alert's full expression returns nothing
  while it does not fire, which is the healthy state, so "returns data" is proven on the query
  that feeds each threshold: each ``(query)`` of ``(query) <op> threshold`` must return at least
  one finite sample (for ``absent(x)``: ``x`` must, and the alert must be quiet);
- every Grafana alert rule's queries must return data, and its condition evaluated on those
  results (threshold or math, as Grafana does) must select exactly the series the Prometheus
  alert expression selects at the same instant;
- every SQL query of every dashboard, with Grafana's macros expanded, runs on the same PostgreSQL
  in a read-only transaction and must return the expected columns, and rows whenever the
  tables it reads have rows (the rollup tables may still be empty: see ROLLUP_TABLES).
"""

from __future__ import annotations

import json
import math
import operator
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from agent_otel.demo import run_demo
from tests.conftest import PG_ADMIN_URL, RunningCollector, _pg_admin, _with_database, make_settings, start_collector
from tests.observability.grafana_expand import QueryContext, expand_promql, expand_sql
from tests.observability.prometheus_server import (
    PROMETHEUS_DIR,
    Prometheus,
    as_vector,
    finite_values,
    run_prometheus,
)
from tests.otlp_helpers import agent_trace, http_exporter, sdk_provider

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))}
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
GRAFANA_ALERTS = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "agent-otel-alerts.yml").read_text())
PG_UID = "agent-otel-postgres"
STEP_SECONDS = 20  # $__interval for a 6 h range on a ~1000 px wide panel, as Grafana rounds it
# Tables another component fills from the raw rows (rollups). Until it does, queries reading them
# are held to their columns only; the test output names them.
ROLLUP_TABLES = ("agent_metrics", "usage_daily", "user_agent_interactions")

pytestmark = [pytest.mark.timeout(600), pytest.mark.prometheus, pytest.mark.postgres]


# --- what we expect of each SQL panel --------------------------------------------------------------

SQL_COLUMNS: dict[tuple[str, str], list[str]] = {
    ("agent-otel-overview", "Active users"): ["active_users"],
    ("agent-otel-overview", "Active users over time"): ["time", "active_users"],
    ("agent-otel-overview", "Agents in the time range"): [
        "agent", "executions", "success_rate", "p95_seconds", "users", "tokens", "cost_usd", "last_execution",
    ],
    ("agent-otel-overview", "Agents, all time"): [
        "agent", "name", "total_executions", "total_users", "success_rate", "avg_duration_ms", "input_tokens",
        "output_tokens", "total_cost_usd", "avg_rating", "last_executed_at",
    ],
    ("agent-otel-agent", "Tool calls"): ["tool", "calls", "failed", "avg_ms", "max_ms"],
    ("agent-otel-agent", "Top users"): [
        "user_id", "total_executions", "successful_executions", "last_executed_at", "is_favorite", "rating",
        "preferred_time_of_day",
    ],
    ("agent-otel-agent", "Hourly rollups"): [
        "time", "total_executions", "successful_executions", "unsuccessful_executions", "p95_duration",
    ],
    ("agent-otel-agent", "Recent failures"): [
        "started_at", "status", "error_code", "error_message", "http_status", "duration", "trace_id",
    ],
    ("agent-otel-cost", "Cost by user"): [
        "user_id", "executions", "input_tokens", "output_tokens", "cost_usd", "credits",
    ],
    ("agent-otel-cost", "Daily cost by user"): ["time", "metric", "value"],
    ("agent-otel-cost", "Daily usage by user"): [
        "date", "user_id", "total_interactions", "successful_interactions", "unique_agents_used",
        "total_input_tokens", "total_output_tokens", "total_cost", "total_credits", "avg_satisfaction",
    ],
    ("agent-otel-cost", "Cost by model (database)"): ["time", "metric", "value"],
    ("agent-otel-cost", "Unpriced LLM calls"): ["provider", "model", "llm_calls", "input_tokens", "output_tokens"],
    ("agent-otel-cost", "Model prices"): [
        "provider", "model", "effective_from", "input_per_million", "output_per_million", "source",
    ],
    ("agent-otel-errors", "Errors by code (database)"): ["time", "metric", "value"],
    ("agent-otel-errors", "Top errors"): ["error_code", "error_message", "occurrences", "agents", "last_seen"],
    ("agent-otel-errors", "Failed steps"): ["kind", "step", "error_type", "failures", "last_seen"],
    ("agent-otel-errors", "Recent errors"): [
        "started_at", "agent", "status", "error_code", "error_message", "http_status", "trace_id",
    ],
    ("agent-otel-errors", "Error logs"): ["timestamp", "agent", "category", "event_name", "message", "trace_id"],
    ("agent-otel-users", "Active users"): ["active_users"],
    ("agent-otel-users", "Sessions"): ["sessions"],
    ("agent-otel-users", "Executions per session"): ["executions_per_session"],
    ("agent-otel-users", "New users"): ["new_users"],
    ("agent-otel-users", "Active users and sessions"): ["time", "users", "sessions"],
    ("agent-otel-users", "Daily active users"): ["time", "active_users", "interactions"],
    ("agent-otel-users", "Top users"): ["user_id", "executions", "sessions", "agents", "success_rate", "last_seen"],
    ("agent-otel-users", "Recent sessions"): [
        "session_id", "user_id", "executions", "agents", "started", "ended", "duration_seconds", "success_rate",
    ],
    ("agent-otel-users", "Executions by hour of day (UTC)"): ["hour_utc", "executions", "users"],
    ("agent-otel-users", "Favorites and ratings"): ["agent", "users", "favorites", "avg_rating", "executions"],
    ("agent-otel-users", "Recent interactions"): [
        "started_at", "agent_name", "user_id", "session_id", "status", "duration", "model", "cost_usd",
    ],
}  # fmt: skip


# --- the cases, collected from the committed files -------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    text: str
    instant: bool = False
    time_series: bool = False

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref}"


def _panel_queries(sql: bool) -> list[PanelQuery]:
    found = []
    for uid, board in DASHBOARDS.items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                is_sql = target["datasource"]["uid"] == PG_UID
                if is_sql != sql:
                    continue
                found.append(
                    PanelQuery(
                        uid,
                        panel["title"],
                        target["refId"],
                        target["rawSql"] if sql else target["expr"],
                        instant=bool(target.get("instant")),
                        time_series=target.get("format") == "time_series",
                    )
                )
    return found


PROMQL_PANELS = _panel_queries(sql=False)
SQL_PANELS = _panel_queries(sql=True)
VARIABLES = [(uid, v) for uid, board in DASHBOARDS.items() for v in board["templating"]["list"]]
RULES = [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
RECORDING = [rule for rule in RULES if "record" in rule]
ALERTING = [rule for rule in RULES if "alert" in rule]
GRAFANA_RULES = [rule for group in GRAFANA_ALERTS["groups"] for rule in group["rules"]]


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Live:
    prometheus: Prometheus
    collector: RunningCollector
    pg_url: str
    at: float  # the instant every query is evaluated at
    agent: str  # the $agent variable's value (its first option, as Grafana picks)

    def context(self) -> QueryContext:
        end = datetime.fromtimestamp(self.at, UTC)
        return QueryContext(
            start=end - timedelta(hours=6),
            end=end,
            interval=f"{STEP_SECONDS}s",
            rate_interval="1m",
            variables={"agent": self.agent},
        )


def _db_executions(collector: RunningCollector) -> int:
    from sqlalchemy import text

    with collector.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one())


def _scraped_executions(prometheus: Prometheus) -> float:
    values = finite_values(prometheus.query("sum(agent_executions_total)"))
    return values[0] if values else -1.0


def _traffic_round(collector: RunningCollector, executions: int) -> None:
    run_demo(collector.http_endpoint, executions=executions, hours=0.05, seed=7, quiet=True)
    # Spans straight from the SDK (no plugin scrubbing on the way): the collector's sanitizer redacts
    # the planted secrets in their error messages, so the redaction metrics move.
    with sdk_provider(http_exporter(collector.http_endpoint)) as tracer:
        for i in range(3):
            agent_trace(tracer, user=f"user-{i:04d}", session=f"sess-{i}", fail_tool=True)
    refused = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=b"\x00 not protobuf",
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert refused.status_code == 400


def _wait_for_scrape(prometheus: Prometheus, collector: RunningCollector) -> None:
    expected = _db_executions(collector)
    prometheus.wait_for(
        f"Prometheus to scrape {expected} executions", lambda: _scraped_executions(prometheus) == expected
    )


@pytest.fixture(scope="module")
def live(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    name = f"agent_otel_t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    pg_url = _with_database(PG_ADMIN_URL, name)
    collector: RunningCollector | None = None
    try:
        # a small cost budget (the demo exceeds it) and a large token budget (it does not), so both
        # outcomes of the budget alerts are compared between Grafana and Prometheus
        settings = make_settings(pg_url, **{"metrics.daily_cost_budget_usd": 0.01, "metrics.daily_token_budget": 10**9})
        collector = start_collector(settings)
        target = f"127.0.0.1:{collector.collector.ports['http']}"
        with run_prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"), target, RULE_FILES) as prometheus:
            prometheus.wait_for("up == 1", lambda: finite_values(prometheus.query('up{job="agent-otel"}')) == [1.0])
            _traffic_round(collector, executions=40)
            _wait_for_scrape(prometheus, collector)
            time.sleep(2)  # a few scrapes at the first round's level, so the second round is an increase
            _traffic_round(collector, executions=120)
            _wait_for_scrape(prometheus, collector)
            scraped_at = time.time()
            prometheus.wait_for(
                "the recording rules to run on the last scrape",
                lambda: (
                    max(
                        finite_values(prometheus.query("timestamp(agent:agent_execution_duration_seconds:p95_5m)")),
                        default=0.0,
                    )
                    > scraped_at + 1
                ),
            )
            values = httpx.get(
                f"{prometheus.url}/api/v1/label/agent/values", params={"match[]": "agent_executions_total"}
            ).json()["data"]
            yield Live(prometheus, collector, pg_url, time.time(), sorted(values)[0])
    finally:
        if collector is not None:
            collector.stop()
        with _pg_admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- Prometheus ----------------------------------------------------------------------------------


def test_prometheus_scrapes_the_collector_and_counts_match_the_database(live: Live) -> None:
    assert finite_values(live.prometheus.query('up{job="agent-otel"}', at=live.at)) == [1.0]
    assert _scraped_executions(live.prometheus) == _db_executions(live.collector) > 160


def test_the_rules_run_healthy_in_prometheus(live: Live) -> None:
    groups = live.prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(RULES)
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok" or r.get("lastError")]
    assert unhealthy == []


@pytest.mark.parametrize("case", PROMQL_PANELS, ids=lambda c: c.id)
def test_dashboard_promql_returns_data(live: Live, case: PanelQuery) -> None:
    ctx = live.context()
    expr = expand_promql(case.text, ctx)
    if case.instant:
        result = live.prometheus.query(expr, at=live.at)
    else:
        start, end = ctx.start.timestamp(), live.at
        result = live.prometheus.query_range(expr, start=start, end=end, step=STEP_SECONDS)
    assert finite_values(result), f"no data for {expr}"


@pytest.mark.parametrize(("dashboard", "variable"), VARIABLES, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_template_variables_return_values(live: Live, dashboard: str, variable: dict[str, Any]) -> None:
    query = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
    metric, label = query.removeprefix("label_values(").removesuffix(")").split(", ")
    response = httpx.get(f"{live.prometheus.url}/api/v1/label/{label}/values", params={"match[]": metric}).json()
    assert response["status"] == "success"
    assert {"support-bot", "research-agent", "code-reviewer", "sql-analyst", "travel-planner"} <= set(response["data"])
    assert live.agent in response["data"]


@pytest.mark.parametrize("rule", RECORDING, ids=lambda r: r["record"])
def test_recording_rules_return_data(live: Live, rule: dict[str, Any]) -> None:
    assert finite_values(live.prometheus.query(rule["expr"], at=live.at)), rule["expr"]
    assert finite_values(live.prometheus.query(rule["record"], at=live.at)), f"{rule['record']} was not recorded"


def _conditions(expr: str) -> list[tuple[str, str, float]]:
    """The generator's own parser: the one that turned these alerts into Grafana rules."""
    import importlib.util
    import sys

    module = sys.modules.get("gen_grafana")
    if module is None:
        spec = importlib.util.spec_from_file_location("gen_grafana", ROOT / "tools" / "gen_grafana.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["gen_grafana"] = module
        spec.loader.exec_module(module)
    return list(module.parse_conditions(expr))


@pytest.mark.parametrize("rule", ALERTING, ids=lambda r: r["alert"])
def test_alert_rules_evaluate_and_their_queries_return_data(live: Live, rule: dict[str, Any]) -> None:
    expr = " ".join(rule["expr"].split())
    firing = live.prometheus.query(expr, at=live.at)  # must evaluate; empty while quiet
    if expr.startswith("absent("):
        inner = expr.removeprefix("absent(").removesuffix(")")
        assert finite_values(live.prometheus.query(inner, at=live.at)), inner
        assert firing == [], "the collector is scraped, so the absent alert must be quiet"
        return
    for query, _op, _threshold in _conditions(expr):
        assert finite_values(live.prometheus.query(query, at=live.at)), f"{rule['alert']}: no data for {query}"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def _grafana_firing(live: Live, rule: dict[str, Any]) -> set[frozenset[tuple[str, str]]]:
    """The series for which Grafana's condition holds, computed from its own queries' results."""
    results = {
        d["refId"]: as_vector(live.prometheus.query(d["model"]["expr"], at=live.at))
        for d in rule["data"]
        if "expr" in d["model"]
    }
    for ref, vector in results.items():
        assert any(math.isfinite(v) for v in vector.values()), f"{rule['title']}: query {ref} returned no data"
    condition = next(d["model"] for d in rule["data"] if d["refId"] == rule["condition"])
    if condition["type"] == "threshold":
        evaluator = condition["conditions"][0]["evaluator"]
        clauses = [(condition["expression"], {"gt": ">", "lt": "<"}[evaluator["type"]], evaluator["params"][0])]
    else:
        clauses = [
            (ref.lstrip("$"), op, float(value))
            for ref, op, value in (c.split() for c in condition["expression"].split("&&"))
        ]
    series = set.intersection(*(set(results[ref]) for ref, _op, _value in clauses))
    return {labels for labels in series if all(_COMPARE[op](results[ref][labels], value) for ref, op, value in clauses)}


@pytest.mark.parametrize("rule", GRAFANA_RULES, ids=lambda r: r["title"])
def test_grafana_alert_rules_agree_with_prometheus_on_live_data(live: Live, rule: dict[str, Any]) -> None:
    twin = next(r for r in ALERTING if r["alert"] == rule["title"])
    prometheus = {
        frozenset(s["metric"].items()) for s in live.prometheus.query(" ".join(twin["expr"].split()), at=live.at)
    }
    assert _grafana_firing(live, rule) == prometheus


def test_both_alert_outcomes_were_compared(live: Live) -> None:
    """The comparison above is not vacuous: with this traffic some conditions hold, others do not."""
    firing = {r["title"] for r in GRAFANA_RULES if _grafana_firing(live, r)}
    assert "AgentCostBudgetExceeded" in firing  # $0.01 budget
    assert "AgentTokenBudgetExceeded" not in firing  # 10^9 token budget
    assert "AgentOtelCollectorDown" not in firing


def test_exemplars_reach_prometheus_with_stored_trace_ids(live: Live) -> None:
    data = live.prometheus.api(
        "query_exemplars", query="agent_execution_duration_seconds_bucket", start=live.at - 600, end=live.at
    )
    traces = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
    assert traces
    with psycopg.connect(live.pg_url) as conn:
        stored = {row[0] for row in conn.execute("SELECT trace_id FROM agent_executions")}
    assert traces <= stored


# --- PostgreSQL ------------------------------------------------------------------------------------


def test_every_sql_panel_has_expectations() -> None:
    assert {(q.dashboard, q.panel) for q in SQL_PANELS} == set(SQL_COLUMNS)


def _table_has_rows(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone() == (True,)


@pytest.mark.parametrize("case", SQL_PANELS, ids=lambda c: c.id)
def test_dashboard_sql_runs_and_returns_the_expected_columns(
    live: Live, case: PanelQuery, record_property: Callable[[str, object], None]
) -> None:
    query = expand_sql(case.text, live.context())
    with psycopg.connect(live.pg_url, options="-c default_transaction_read_only=on") as conn:
        cursor = conn.execute(query)  # type: ignore[call-overload]
        columns = [c.name for c in cursor.description or []]
        rows = cursor.fetchall()
        assert columns == SQL_COLUMNS[(case.dashboard, case.panel)], query
        if case.time_series:
            assert columns[0] == "time"
            assert all(
                isinstance(row[0], datetime | float | int) or hasattr(row[0], "as_integer_ratio") for row in rows
            )
        empty_rollups = [t for t in ROLLUP_TABLES if t in query and not _table_has_rows(conn, t)]
    if empty_rollups:
        record_property("rows_not_required", f"rollup tables still empty: {empty_rollups}")
        return
    assert rows, f"no rows for {query}"
