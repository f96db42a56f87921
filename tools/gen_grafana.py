"""Write the Grafana dashboards and Grafana alert rules that ship in ``grafana/``.

.venv/bin/python tools/gen_grafana.py           # write grafana/dashboards/*.json and the alert rules
.venv/bin/python tools/gen_grafana.py --check   # exit 1 when a committed file differs (a test runs this)

Why generated: six dashboards share datasource references, panel shapes and a grid layout, and
Python keeps them consistent and reviewable; the JSON is what users copy. The Grafana alert rules
are derived from ``collector/prometheus/rules/agent-otel-alerts.yml`` (every Prometheus alert is
written as ``(query) <op> threshold`` conditions joined by ``and``), so both alerting paths
evaluate the same queries against the same thresholds by construction.

Datasource uids are fixed (``agent-otel-prometheus``, ``agent-otel-postgres``): a user who
provisions ``grafana/`` gets working panels without editing anything.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS_OUT = ROOT / "grafana" / "provisioning" / "alerting" / "agent-otel-alerts.yml"
PROMETHEUS_ALERTS = ROOT / "collector" / "prometheus" / "rules" / "agent-otel-alerts.yml"

PROM = {"type": "prometheus", "uid": "agent-otel-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "agent-otel-postgres"}
EXPR = {"type": "__expr__", "uid": "__expr__"}
SCHEMA_VERSION = 39  # Grafana 11; newer Grafana migrates it on load
TAGS = ["agent-otel"]

Json = dict[str, Any]


# --- queries ---------------------------------------------------------------------------------


def prom(expr: str, legend: str = "__auto", instant: bool = False, table: bool = False, exemplar: bool = False) -> Json:
    target: Json = {
        "datasource": PROM,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }
    if table:
        target["format"] = "table"
    if exemplar:
        target["exemplar"] = True  # trace ids scraped with the histogram (OpenMetrics exemplars)
    return target


def sql(raw: str, time_series: bool = False) -> Json:
    text = "\n".join(line.rstrip() for line in raw.strip().splitlines())
    return {
        "datasource": PG,
        "editorMode": "code",
        "format": "time_series" if time_series else "table",
        "rawQuery": True,
        "rawSql": text,
    }


# --- panels ----------------------------------------------------------------------------------


def _datasource(targets: list[Json]) -> Json:
    sources = {t["datasource"]["uid"] for t in targets}
    if len(sources) != 1:
        raise ValueError("a panel reads one datasource")
    return dict(targets[0]["datasource"])


def _with_refs(targets: list[Json]) -> list[Json]:
    return [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(targets)]


def _thresholds(steps: list[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


GREEN = [("green", None)]


@dataclass
class Spec:
    kind: str
    title: str
    description: str
    targets: list[Json]
    width: int
    height: int
    unit: str | None = None
    thresholds: list[tuple[str, float | None]] | None = None
    options: Json | None = None
    custom: Json | None = None
    decimals: int | None = None


def timeseries(
    title: str, description: str, targets: list[Json], unit: str, width: int = 12, height: int = 8, stack: bool = False
) -> Spec:
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": True}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    options = {
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["mean", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return Spec("timeseries", title, description, targets, width, height, unit, GREEN, options, custom)


def stat(
    title: str,
    description: str,
    target: Json,
    unit: str,
    width: int = 6,
    thresholds: list[tuple[str, float | None]] | None = None,
    decimals: int | None = None,
) -> Spec:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "textMode": "auto",
        "orientation": "auto",
    }
    return Spec("stat", title, description, [target], width, 4, unit, thresholds or GREEN, options, decimals=decimals)


def table(
    title: str, description: str, target: Json, width: int = 24, height: int = 8, unit: str | None = None
) -> Spec:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return Spec("table", title, description, [target], width, height, unit, GREEN, options)


def bargauge(title: str, description: str, target: Json, unit: str, width: int = 12, height: int = 8) -> Spec:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    }
    return Spec("bargauge", title, description, [target], width, height, unit, GREEN, options)


def barchart(title: str, description: str, target: Json, unit: str, width: int = 12, height: int = 8) -> Spec:
    options = {
        "orientation": "vertical",
        "showValue": "auto",
        "stacking": "none",
        "groupWidth": 0.7,
        "barWidth": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "none"},
        "xTickLabelRotation": 0,
    }
    return Spec("barchart", title, description, [target], width, height, unit, GREEN, options)


def layout(specs: list[Spec]) -> list[Json]:
    """Flow panels left to right on Grafana's 24-column grid."""
    panels: list[Json] = []
    x = y = row_height = 0
    for number, spec in enumerate(specs, start=1):
        if x + spec.width > 24:
            x, y, row_height = 0, y + row_height, 0
        defaults: Json = {"thresholds": _thresholds(spec.thresholds or GREEN), "color": {"mode": "palette-classic"}}
        if spec.kind in ("stat", "bargauge"):
            defaults["color"] = {"mode": "thresholds"}
        if spec.unit:
            defaults["unit"] = spec.unit
        if spec.decimals is not None:
            defaults["decimals"] = spec.decimals
        if spec.custom:
            defaults["custom"] = spec.custom
        panels.append(
            {
                "id": number,
                "type": spec.kind,
                "title": spec.title,
                "description": spec.description,
                "datasource": _datasource(spec.targets),
                "gridPos": {"h": spec.height, "w": spec.width, "x": x, "y": y},
                "targets": _with_refs(spec.targets),
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": spec.options or {},
            }
        )
        x += spec.width
        row_height = max(row_height, spec.height)
    return panels


def dashboard(uid: str, title: str, description: str, specs: list[Spec], variables: list[Json] | None = None) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "agent-otel dashboards",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
            }
        ],
        "templating": {"list": variables or []},
        "panels": layout(specs),
    }


# --- the dashboards ----------------------------------------------------------------------------

RATE = "[$__rate_interval]"
SUCCESS_RATIO = (
    f'(sum(rate(agent_executions_total{{status="success"}}{RATE})) or vector(0))'
    f" / sum(rate(agent_executions_total{RATE}))"
)
SUCCESS_STEPS: list[tuple[str, float | None]] = [("red", None), ("orange", 0.9), ("green", 0.95)]


def overview() -> Json:
    specs = [
        stat(
            "Requests per minute",
            "Agent executions committed per minute, all agents.",
            prom(f"sum(rate(agent_executions_total{RATE})) * 60"),
            "reqpm",
        ),
        stat(
            "Success rate",
            "Share of executions with status success (seed 002: should stay above 95%).",
            prom(SUCCESS_RATIO),
            "percentunit",
            thresholds=SUCCESS_STEPS,
            decimals=1,
        ),
        stat(
            "p95 latency",
            "95th percentile of execution duration, all agents.",
            prom(f"histogram_quantile(0.95, sum by (le) (rate(agent_execution_duration_seconds_bucket{RATE})))"),
            "s",
        ),
        stat(
            "Active users",
            "Distinct users with at least one execution in the time range (from the database: user ids are never "
            "Prometheus labels).",
            sql("SELECT count(DISTINCT user_id) AS active_users FROM agent_executions WHERE $__timeFilter(started_at)"),
            "short",
        ),
        timeseries(
            "Requests per minute by agent",
            "Executions per minute, by agent.",
            [prom(f"sum by (agent) (rate(agent_executions_total{RATE})) * 60", "{{agent}}")],
            "reqpm",
        ),
        timeseries(
            "Success rate by agent",
            "Recording rule agent:agent_executions_success:ratio_rate5m (5-minute window).",
            [prom("agent:agent_executions_success:ratio_rate5m", "{{agent}}")],
            "percentunit",
        ),
        timeseries(
            "Latency percentiles",
            "p50, p95 and p99 of execution duration, all agents.",
            [
                prom(
                    f"histogram_quantile({q}, sum by (le) (rate(agent_execution_duration_seconds_bucket{RATE})))",
                    f"p{int(q * 100)}",
                    exemplar=True,
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
        ),
        timeseries(
            "p95 latency by agent",
            "Recording rule agent:agent_execution_duration_seconds:p95_5m.",
            [prom("agent:agent_execution_duration_seconds:p95_5m", "{{agent}}")],
            "s",
        ),
        timeseries(
            "Active users over time",
            "Distinct users per interval (database).",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(started_at, $__interval), count(DISTINCT user_id) AS active_users
                    FROM agent_executions
                    WHERE $__timeFilter(started_at)
                    GROUP BY 1
                    ORDER BY 1
                    """,
                    time_series=True,
                )
            ],
            "short",
        ),
        timeseries(
            "Executions by status",
            "Executions per minute by status: success, failed (refused, rate limited), timeout, error.",
            [prom(f"sum by (status) (rate(agent_executions_total{RATE})) * 60", "{{status}}")],
            "reqpm",
            stack=True,
        ),
        table(
            "Agents in the time range",
            "Per agent, from the execution rows: volume, success rate, p95, users and cost.",
            sql(
                """
                SELECT agent_id AS agent,
                       count(*) AS executions,
                       avg(CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END) AS success_rate,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) / 1000.0 AS p95_seconds,
                       count(DISTINCT user_id) AS users,
                       sum(input_tokens + output_tokens) AS tokens,
                       sum(cost_usd) AS cost_usd,
                       max(started_at) AS last_execution
                FROM agent_executions
                WHERE $__timeFilter(started_at)
                GROUP BY agent_id
                ORDER BY executions DESC
                """
            ),
        ),
        table(
            "Agents, all time",
            "The agent_summary view: every agent seen, with totals from the monthly rollups.",
            sql(
                """
                SELECT agent_id AS agent, name, total_executions, total_users, success_rate,
                       avg_duration_ms, input_tokens, output_tokens, total_cost_usd, avg_rating, last_executed_at
                FROM agent_summary
                ORDER BY total_executions DESC NULLS LAST
                """
            ),
        ),
    ]
    return dashboard(
        "agent-otel-overview",
        "agent-otel / Overview",
        "Requests, success rate, latency and active users across all agents.",
        specs,
    )


AGENT_VARIABLE: Json = {
    "name": "agent",
    "label": "Agent",
    "type": "query",
    "datasource": PROM,
    "query": "label_values(agent_executions_total, agent)",
    "refresh": 2,
    "sort": 1,
    "includeAll": False,
    "multi": False,
    "hide": 0,
    "options": [],
    "current": {"text": "", "value": ""},
}
A = '{agent="$agent"}'


def agent_drilldown() -> Json:
    specs = [
        stat(
            "Requests per minute",
            "Executions of this agent per minute.",
            prom(f"sum(rate(agent_executions_total{A}{RATE})) * 60"),
            "reqpm",
            width=4,
        ),
        stat(
            "Success rate",
            "Share of this agent's executions that succeeded.",
            prom(
                f'(sum(rate(agent_executions_total{{agent="$agent",status="success"}}{RATE})) or vector(0))'
                f" / sum(rate(agent_executions_total{A}{RATE}))"
            ),
            "percentunit",
            width=4,
            thresholds=SUCCESS_STEPS,
            decimals=1,
        ),
        stat(
            "p95 latency",
            "95th percentile of this agent's execution duration.",
            prom(f"histogram_quantile(0.95, sum by (le) (rate(agent_execution_duration_seconds_bucket{A}{RATE})))"),
            "s",
            width=4,
        ),
        stat(
            "Errors per minute",
            "Executions that did not succeed, per minute.",
            prom(f"sum(rate(agent_errors_total{A}{RATE})) * 60"),
            "short",
            width=4,
        ),
        stat(
            "Cost in range",
            "LLM cost of this agent over the dashboard's time range (priced models only).",
            prom('sum(increase(agent_cost_usd_total{agent="$agent"}[$__range]))'),
            "currencyUSD",
            width=4,
        ),
        stat(
            "Tokens in range",
            "Input and output tokens over the time range.",
            prom('sum(increase(agent_tokens_total{agent="$agent"}[$__range]))'),
            "short",
            width=4,
        ),
        timeseries(
            "Executions by status",
            "Executions per minute by status.",
            [prom(f"sum by (status) (rate(agent_executions_total{A}{RATE})) * 60", "{{status}}")],
            "reqpm",
            stack=True,
        ),
        timeseries(
            "Latency percentiles",
            "Recording rules agent:agent_execution_duration_seconds:p50_5m, p95_5m and p99_5m.",
            [prom(f"agent:agent_execution_duration_seconds:{p}_5m{A}", p) for p in ("p50", "p95", "p99")],
            "s",
        ),
        timeseries(
            "Errors by type",
            "Failed executions per minute, by error type.",
            [prom(f"sum by (error_type) (rate(agent_errors_total{A}{RATE})) * 60", "{{error_type}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Tokens by model",
            "Tokens per second by model and type (input, output).",
            [prom(f"sum by (model, type) (rate(agent_tokens_total{A}{RATE}))", "{{model}} {{type}}")],
            "short",
        ),
        timeseries(
            "Cost per hour by model",
            "US dollars per hour at the current rate, by model.",
            [prom(f"sum by (model) (rate(agent_cost_usd_total{A}{RATE})) * 3600", "{{model}}")],
            "currencyUSD",
        ),
        timeseries(
            "Credits per minute",
            "Credits consumed per minute.",
            [prom(f"sum(rate(agent_credits_total{A}{RATE})) * 60", "credits")],
            "short",
        ),
        table(
            "Tool calls",
            "This agent's tool calls in the time range (database: tools are not labelled by agent in Prometheus).",
            sql(
                """
                SELECT coalesce(tool_name, name) AS tool,
                       count(*) AS calls,
                       sum(CASE WHEN status = 'success' THEN 0 ELSE 1 END) AS failed,
                       avg(duration) AS avg_ms,
                       max(duration) AS max_ms
                FROM agent_steps
                WHERE kind = 'tool' AND agent_id = '$agent' AND $__timeFilter(started_at)
                GROUP BY 1
                ORDER BY calls DESC
                """
            ),
            width=12,
        ),
        table(
            "Top users",
            "Users of this agent (user_agent_interactions): executions, favorite, rating, preferred hour (UTC).",
            sql(
                """
                SELECT user_id, total_executions, successful_executions, last_executed_at,
                       is_favorite, rating, preferred_time_of_day
                FROM user_agent_interactions
                WHERE agent_id = '$agent'
                ORDER BY total_executions DESC
                LIMIT 20
                """
            ),
            width=12,
        ),
        timeseries(
            "Hourly rollups",
            "Executions, failures and p95 (ms) per hour from agent_metrics.",
            [
                sql(
                    """
                    SELECT period_start AS "time", total_executions, successful_executions,
                           failed_executions + timeout_executions + error_executions AS unsuccessful_executions,
                           p95_duration
                    FROM agent_metrics
                    WHERE period = 'hour' AND agent_id = '$agent' AND $__timeFilter(period_start)
                    ORDER BY 1
                    """,
                    time_series=True,
                )
            ],
            "short",
        ),
        table(
            "Recent failures",
            "The last executions of this agent that did not succeed; error messages are scrubbed.",
            sql(
                """
                SELECT started_at, status, error_code, error_message, http_status, duration, trace_id
                FROM agent_executions
                WHERE agent_id = '$agent' AND status <> 'success' AND $__timeFilter(started_at)
                ORDER BY started_at DESC
                LIMIT 50
                """
            ),
            width=12,
        ),
    ]
    return dashboard(
        "agent-otel-agent",
        "agent-otel / Agent",
        "One agent: traffic, success, latency, errors, tokens, cost, tools and users.",
        specs,
        [AGENT_VARIABLE],
    )


def cost() -> Json:
    specs = [
        stat(
            "Cost in range",
            "LLM cost over the time range, all agents (priced models only).",
            prom("sum(increase(agent_cost_usd_total[$__range]))"),
            "currencyUSD",
        ),
        stat(
            "Tokens in range",
            "Input and output tokens over the time range.",
            prom("sum(increase(agent_tokens_total[$__range]))"),
            "short",
        ),
        stat(
            "Cost budget used (24 h)",
            "Cost of the last 24 hours over metrics.daily_cost_budget_usd. Empty when no budget is set.",
            prom('sum(increase(agent_cost_usd_total[1d])) / max(agent_otel_budget_cost_usd{period="day"})'),
            "percentunit",
            thresholds=[("green", None), ("orange", 0.8), ("red", 1.0)],
        ),
        stat(
            "Token budget used (24 h)",
            "Tokens of the last 24 hours over metrics.daily_token_budget. Empty when no budget is set.",
            prom('sum(increase(agent_tokens_total[1d])) / max(agent_otel_budget_tokens{period="day"})'),
            "percentunit",
            thresholds=[("green", None), ("orange", 0.8), ("red", 1.0)],
        ),
        timeseries(
            "Cost per hour by model",
            "Recording rule model:agent_cost_usd:rate5m, in US dollars per hour.",
            [prom("model:agent_cost_usd:rate5m * 3600", "{{model}}")],
            "currencyUSD",
            stack=True,
        ),
        timeseries(
            "Tokens per second by model",
            "Recording rule model:agent_tokens:rate5m, by model and type.",
            [prom("model:agent_tokens:rate5m", "{{model}} {{type}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Cost per hour by agent",
            "US dollars per hour at the current rate, by agent.",
            [prom(f"sum by (agent) (rate(agent_cost_usd_total{RATE})) * 3600", "{{agent}}")],
            "currencyUSD",
            stack=True,
        ),
        bargauge(
            "Cost by model in range",
            "LLM cost per model over the time range.",
            prom("sort_desc(sum by (model) (increase(agent_cost_usd_total[$__range])))", "{{model}}", instant=True),
            "currencyUSD",
        ),
        timeseries(
            "LLM calls per minute",
            "LLM calls by provider and model.",
            [prom(f"sum by (provider, model) (rate(agent_llm_calls_total{RATE})) * 60", "{{provider}} {{model}}")],
            "short",
        ),
        timeseries(
            "LLM p95 latency by model",
            "Recording rule model:agent_llm_duration_seconds:p95_5m.",
            [prom("model:agent_llm_duration_seconds:p95_5m", "{{provider}} {{model}}")],
            "s",
        ),
        table(
            "Cost by user",
            "Per user, from the execution rows in the time range (user ids are never Prometheus labels).",
            sql(
                """
                SELECT user_id,
                       count(*) AS executions,
                       sum(input_tokens) AS input_tokens,
                       sum(output_tokens) AS output_tokens,
                       sum(cost_usd) AS cost_usd,
                       sum(credits_consumed) AS credits
                FROM agent_executions
                WHERE $__timeFilter(started_at) AND user_id IS NOT NULL
                GROUP BY user_id
                ORDER BY cost_usd DESC NULLS LAST
                LIMIT 25
                """
            ),
            width=12,
        ),
        timeseries(
            "Daily cost by user",
            "usage_daily.total_cost per user and day (seed 004's ai_usage_stats).",
            [
                sql(
                    """
                    SELECT date::timestamp AS "time", user_id AS metric, total_cost AS value
                    FROM usage_daily
                    WHERE date >= $__timeFrom()::date AND date <= $__timeTo()::date
                    ORDER BY 1, 2
                    """,
                    time_series=True,
                )
            ],
            "currencyUSD",
            stack=True,
        ),
        table(
            "Daily usage by user",
            "usage_daily: interactions, tokens, cost, credits and satisfaction per user and day.",
            sql(
                """
                SELECT date, user_id, total_interactions, successful_interactions, unique_agents_used,
                       total_input_tokens, total_output_tokens, total_cost, total_credits, avg_satisfaction
                FROM usage_daily
                WHERE date >= $__timeFrom()::date AND date <= $__timeTo()::date
                ORDER BY date DESC, total_cost DESC
                LIMIT 100
                """
            ),
            width=12,
        ),
        timeseries(
            "Cost by model (database)",
            "Hourly cost per model from the execution rows, for ranges older than Prometheus keeps.",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(started_at, '1h'), coalesce(model, 'unknown') AS metric,
                           sum(cost_usd) AS value
                    FROM agent_executions
                    WHERE $__timeFilter(started_at) AND cost_usd IS NOT NULL
                    GROUP BY 1, 2
                    ORDER BY 1
                    """,
                    time_series=True,
                )
            ],
            "currencyUSD",
            stack=True,
        ),
        table(
            "Unpriced LLM calls",
            "LLM calls on models without a price (add them to the price file to see their cost).",
            sql(
                """
                SELECT coalesce(provider, 'unknown') AS provider, coalesce(model, 'unknown') AS model,
                       count(*) AS llm_calls, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
                FROM agent_steps
                WHERE kind = 'llm' AND cost_usd IS NULL AND $__timeFilter(started_at)
                GROUP BY 1, 2
                ORDER BY llm_calls DESC
                """
            ),
            width=12,
        ),
        table(
            "Model prices",
            "model_prices: US dollars per million tokens, by provider, model and effective date.",
            sql(
                """
                SELECT provider, model, effective_from, input_per_million, output_per_million, source
                FROM model_prices
                ORDER BY provider, model, effective_from DESC
                """
            ),
            width=12,
        ),
    ]
    return dashboard(
        "agent-otel-cost",
        "agent-otel / Cost and tokens",
        "LLM cost and tokens by model, by agent and by user, and the daily budgets.",
        specs,
    )


def errors() -> Json:
    specs = [
        stat(
            "Errors per minute",
            "Executions that did not succeed, per minute, all agents.",
            prom(f"sum(rate(agent_errors_total{RATE})) * 60"),
            "short",
        ),
        stat(
            "Error ratio",
            "Share of executions that did not succeed.",
            prom(f"1 - ({SUCCESS_RATIO})"),
            "percentunit",
            thresholds=[("green", None), ("orange", 0.05), ("red", 0.1)],
            decimals=1,
        ),
        stat(
            "Failed LLM calls in range",
            "LLM calls whose status is not success over the time range.",
            prom('sum(increase(agent_llm_calls_total{status!="success"}[$__range]))'),
            "short",
        ),
        stat(
            "Failed tool calls in range",
            "Tool calls whose status is not success over the time range.",
            prom('sum(increase(agent_tool_calls_total{status!="success"}[$__range]))'),
            "short",
        ),
        timeseries(
            "Errors by agent and type",
            "Failed executions per minute by agent and error type.",
            [prom(f"sum by (agent, error_type) (rate(agent_errors_total{RATE})) * 60", "{{agent}} {{error_type}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Error ratio by agent",
            "1 - agent:agent_executions_success:ratio_rate5m.",
            [prom("1 - agent:agent_executions_success:ratio_rate5m", "{{agent}}")],
            "percentunit",
        ),
        timeseries(
            "LLM call failures",
            "Failed LLM calls per minute by provider, model and status.",
            [
                prom(
                    f'sum by (provider, model, status) (rate(agent_llm_calls_total{{status!="success"}}{RATE})) * 60',
                    "{{provider}} {{model}} {{status}}",
                )
            ],
            "short",
        ),
        timeseries(
            "Tool call failures",
            "Failed tool calls per minute by tool and status.",
            [
                prom(
                    f'sum by (tool, status) (rate(agent_tool_calls_total{{status!="success"}}{RATE})) * 60',
                    "{{tool}} {{status}}",
                )
            ],
            "short",
        ),
        timeseries(
            "Errors by code (database)",
            "Unsuccessful executions per interval and error code, from the execution rows.",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(started_at, $__interval), coalesce(error_code, status) AS metric,
                           count(*) AS value
                    FROM agent_executions
                    WHERE status <> 'success' AND $__timeFilter(started_at)
                    GROUP BY 1, 2
                    ORDER BY 1
                    """,
                    time_series=True,
                )
            ],
            "short",
            stack=True,
        ),
        table(
            "Top errors",
            "Most frequent error code and (scrubbed) message pairs in the time range.",
            sql(
                """
                SELECT coalesce(error_code, status) AS error_code,
                       left(coalesce(error_message, ''), 200) AS error_message,
                       count(*) AS occurrences,
                       count(DISTINCT agent_id) AS agents,
                       max(started_at) AS last_seen
                FROM agent_executions
                WHERE status <> 'success' AND $__timeFilter(started_at)
                GROUP BY 1, 2
                ORDER BY occurrences DESC
                LIMIT 20
                """
            ),
            width=12,
        ),
        table(
            "Failed steps",
            "LLM, tool and retrieval steps that failed, by kind, name and error type.",
            sql(
                """
                SELECT kind, coalesce(tool_name, model, name) AS step, coalesce(error_type, status) AS error_type,
                       count(*) AS failures, max(started_at) AS last_seen
                FROM agent_steps
                WHERE status <> 'success' AND $__timeFilter(started_at)
                GROUP BY 1, 2, 3
                ORDER BY failures DESC
                LIMIT 20
                """
            ),
            width=12,
        ),
        table(
            "Recent errors",
            "The last unsuccessful executions, with their trace id.",
            sql(
                """
                SELECT started_at, agent_id AS agent, status, error_code, error_message, http_status, trace_id
                FROM agent_executions
                WHERE status <> 'success' AND $__timeFilter(started_at)
                ORDER BY started_at DESC
                LIMIT 50
                """
            ),
            width=12,
        ),
        table(
            "Error logs",
            "agent_logs rows at level error (span events and OTLP log records), scrubbed.",
            sql(
                """
                SELECT "timestamp", agent_id AS agent, category, event_name, message, trace_id
                FROM agent_logs
                WHERE level = 'error' AND $__timeFilter("timestamp")
                ORDER BY "timestamp" DESC
                LIMIT 50
                """
            ),
            width=12,
        ),
    ]
    return dashboard(
        "agent-otel-errors",
        "agent-otel / Errors",
        "What fails: executions, LLM calls and tools, by agent, type and message.",
        specs,
    )


def users() -> Json:
    specs = [
        stat(
            "Active users",
            "Distinct users with an execution in the time range.",
            sql("SELECT count(DISTINCT user_id) AS active_users FROM agent_executions WHERE $__timeFilter(started_at)"),
            "short",
        ),
        stat(
            "Sessions",
            "Distinct sessions in the time range.",
            sql("SELECT count(DISTINCT session_id) AS sessions FROM agent_executions WHERE $__timeFilter(started_at)"),
            "short",
        ),
        stat(
            "Executions per session",
            "Average number of executions in a session.",
            sql(
                """
                SELECT CASE WHEN count(DISTINCT session_id) > 0
                            THEN count(session_id)::float / count(DISTINCT session_id) END AS executions_per_session
                FROM agent_executions
                WHERE $__timeFilter(started_at)
                """
            ),
            "short",
            decimals=1,
        ),
        stat(
            "New users",
            "Users whose first execution with any agent falls in the time range (user_agent_interactions).",
            sql(
                """
                SELECT count(*) AS new_users
                FROM (SELECT user_id, min(first_executed_at) AS first_seen
                      FROM user_agent_interactions
                      GROUP BY user_id) AS u
                WHERE $__timeFilter(first_seen)
                """
            ),
            "short",
        ),
        timeseries(
            "Active users and sessions",
            "Distinct users and sessions per interval.",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(started_at, $__interval),
                           count(DISTINCT user_id) AS users,
                           count(DISTINCT session_id) AS sessions
                    FROM agent_executions
                    WHERE $__timeFilter(started_at)
                    GROUP BY 1
                    ORDER BY 1
                    """,
                    time_series=True,
                )
            ],
            "short",
        ),
        timeseries(
            "Daily active users",
            "Users and interactions per day from usage_daily.",
            [
                sql(
                    """
                    SELECT date::timestamp AS "time", count(*) AS active_users, sum(total_interactions) AS interactions
                    FROM usage_daily
                    WHERE date >= $__timeFrom()::date AND date <= $__timeTo()::date
                    GROUP BY date
                    ORDER BY date
                    """,
                    time_series=True,
                )
            ],
            "short",
        ),
        table(
            "Top users",
            "Most active users in the time range.",
            sql(
                """
                SELECT user_id,
                       count(*) AS executions,
                       count(DISTINCT session_id) AS sessions,
                       count(DISTINCT agent_id) AS agents,
                       avg(CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END) AS success_rate,
                       max(started_at) AS last_seen
                FROM agent_executions
                WHERE $__timeFilter(started_at) AND user_id IS NOT NULL
                GROUP BY user_id
                ORDER BY executions DESC
                LIMIT 25
                """
            ),
            width=12,
        ),
        table(
            "Recent sessions",
            "Recent sessions: executions, agents, span of time and success rate.",
            sql(
                """
                SELECT session_id, user_id,
                       count(*) AS executions,
                       count(DISTINCT agent_id) AS agents,
                       min(started_at) AS started,
                       max(completed_at) AS ended,
                       extract(epoch FROM max(completed_at) - min(started_at)) AS duration_seconds,
                       avg(CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END) AS success_rate
                FROM agent_executions
                WHERE session_id IS NOT NULL AND $__timeFilter(started_at)
                GROUP BY session_id, user_id
                ORDER BY started DESC
                LIMIT 50
                """
            ),
            width=12,
        ),
        barchart(
            "Executions by hour of day (UTC)",
            "When users use agents.",
            sql(
                """
                SELECT lpad(extract(hour FROM started_at AT TIME ZONE 'UTC')::int::text, 2, '0') AS hour_utc,
                       count(*) AS executions,
                       count(DISTINCT user_id) AS users
                FROM agent_executions
                WHERE $__timeFilter(started_at)
                GROUP BY 1
                ORDER BY 1
                """
            ),
            "short",
        ),
        table(
            "Favorites and ratings",
            "Per agent, from user_agent_interactions: users, favorites, average rating.",
            sql(
                """
                SELECT agent_id AS agent,
                       count(*) AS users,
                       sum(CASE WHEN is_favorite THEN 1 ELSE 0 END) AS favorites,
                       avg(rating) AS avg_rating,
                       sum(total_executions) AS executions
                FROM user_agent_interactions
                GROUP BY agent_id
                ORDER BY users DESC
                """
            ),
            width=12,
        ),
        table(
            "Recent interactions",
            "The recent_interactions view (last 7 days), newest first.",
            sql(
                """
                SELECT started_at, agent_name, user_id, session_id, status, duration, model, cost_usd
                FROM recent_interactions
                WHERE $__timeFilter(started_at)
                ORDER BY started_at DESC
                LIMIT 50
                """
            ),
        ),
    ]
    return dashboard(
        "agent-otel-users",
        "agent-otel / Users and sessions",
        "Who uses the agents, in which sessions, when, and what they think of them (database only).",
        specs,
    )


def collector_health() -> Json:
    specs = [
        stat(
            "Collectors up",
            'Scraped agent-otel collectors answering (up{job="agent-otel"}).',
            prom('sum(up{job="agent-otel"})'),
            "short",
            thresholds=[("red", None), ("green", 1)],
        ),
        stat(
            "Database up",
            "0 when any collector's writer waits for its database.",
            prom("min(agent_otel_database_up)"),
            "short",
            thresholds=[("red", None), ("green", 1)],
        ),
        stat(
            "Queue depth",
            "Spans accepted but not yet committed, all collectors.",
            prom("sum(agent_otel_queue_depth_spans)"),
            "short",
        ),
        stat(
            "Spans accepted per second",
            "Spans committed and acknowledged per second.",
            prom(f"sum(rate(agent_otel_spans_accepted_total{RATE}))"),
            "short",
        ),
        timeseries(
            "Spans received and accepted",
            "Per second, by transport. Received minus accepted is what was refused.",
            [
                prom(f"sum by (transport) (rate(agent_otel_spans_received_total{RATE}))", "received {{transport}}"),
                prom(f"sum by (transport) (rate(agent_otel_spans_accepted_total{RATE}))", "accepted {{transport}}"),
            ],
            "short",
        ),
        timeseries(
            "Refused",
            "Spans refused one by one (partial success) and whole requests refused, by reason.",
            [
                prom(f"sum by (reason) (rate(agent_otel_spans_refused_total{RATE}))", "spans: {{reason}}"),
                prom(
                    f"sum by (signal, reason) (rate(agent_otel_requests_refused_total{RATE}))",
                    "requests: {{signal}} {{reason}}",
                ),
            ],
            "short",
        ),
        timeseries(
            "Rows written",
            "Rows inserted per second, by table.",
            [prom(f"sum by (table) (rate(agent_otel_rows_written_total{RATE}))", "{{table}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Batch write latency",
            "Time to write and commit one group of requests: p50 and p99.",
            [
                prom(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(agent_otel_batch_write_duration_seconds_bucket{RATE})))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
        ),
        timeseries(
            "Batch size",
            "Average spans and requests per commit (group commit grows batches under load).",
            [
                prom(
                    f"sum(rate(agent_otel_batch_size_spans_sum{RATE}))"
                    f" / sum(rate(agent_otel_batch_size_spans_count{RATE}))",
                    "spans per commit",
                ),
                prom(
                    f"sum(rate(agent_otel_batch_size_requests_sum{RATE}))"
                    f" / sum(rate(agent_otel_batch_size_requests_count{RATE}))",
                    "requests per commit",
                ),
            ],
            "short",
        ),
        timeseries(
            "Queue depth by collector",
            "Spans waiting for the writer, per collector.",
            [prom("agent_otel_queue_depth_spans", "{{instance}}")],
            "short",
        ),
        timeseries(
            "Database errors",
            "Writer errors per second by kind: unavailable, write_failed, retried (deadlocks).",
            [prom(f"sum by (kind) (rate(agent_otel_database_errors_total{RATE}))", "{{kind}}")],
            "short",
        ),
        timeseries(
            "Redactions by rule",
            "Values the sanitizer redacted per second, by rule.",
            [prom(f"sum by (rule) (rate(agent_otel_redactions_total{RATE}))", "{{rule}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Label overflow",
            "Samples folded into __other__ per second, by label: raise the metrics.max_* cap when this moves.",
            [prom(f"sum by (label) (rate(agent_otel_label_overflow_total{RATE}))", "{{label}}")],
            "short",
        ),
        table(
            "Build",
            "Version of each scraped collector.",
            prom("agent_otel_build_info", instant=True, table=True),
            width=12,
        ),
    ]
    return dashboard(
        "agent-otel-collector",
        "agent-otel / Collector health",
        "The collector itself: ingest, refusals, writes, queue, database, redactions, label caps.",
        specs,
    )


def all_dashboards() -> dict[str, Json]:
    boards = [overview(), agent_drilldown(), cost(), errors(), users(), collector_health()]
    return {f"{board['uid']}.json": board for board in boards}


# --- Grafana alert rules from the Prometheus alerting rules --------------------------------------

CONDITION = re.compile(r"^\((?P<query>.*)\)\s*(?P<op><=|>=|<|>|==|!=)\s*(?P<value>-?[0-9.]+(?:e-?[0-9]+)?)$", re.S)
# Prometheus alerts with no Grafana twin: Grafana covers them with noDataState (see below).
PROMETHEUS_ONLY = {"AgentOtelCollectorAbsent"}
# No data means the target is gone: the alert that says "down" must fire then.
NO_DATA_ALERTING = {"AgentOtelCollectorDown"}


def split_and(expr: str) -> list[str]:
    """Split a PromQL expression at its top-level ``and`` operators."""
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    quote: str | None = None
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith("and", i) and (i == 0 or expr[i - 1].isspace()):
            end = i + 3
            if end < len(expr) and expr[end].isspace():
                parts.append(expr[start:i])
                start = end
                i = end
                continue
        i += 1
    parts.append(expr[start:])
    return [" ".join(p.split()) for p in parts]


def parse_conditions(expr: str) -> list[tuple[str, str, float]]:
    """``(q1) < 0.95 and (q2) >= 10`` -> [(q1, "<", 0.95), (q2, ">=", 10.0)]."""
    conditions = []
    for part in split_and(expr):
        match = CONDITION.match(part)
        if match is None:
            raise ValueError(f"alert condition {part!r} is not written as (query) <op> threshold")
        query = match["query"].strip()
        if query.count("(") != query.count(")"):
            raise ValueError(f"unbalanced parentheses in {part!r}")
        conditions.append((query, match["op"], float(match["value"])))
    return conditions


def _number(value: float) -> int | float:
    return int(value) if value == int(value) else value


def _range_seconds(query: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    ranges = [int(n) * units[u] for n, u in re.findall(r"\[(\d+)([smhd])\]", query)]
    return max([600, *ranges])


def _grafana_template(text: str) -> str:
    # Grafana exposes each query's value as $values.<refId>.Value; $value is a debug string there.
    return re.sub(r"\$value\b", "$values.A.Value", text)


def grafana_rule(rule: Json) -> Json:
    name = rule["alert"]
    conditions = parse_conditions(rule["expr"])
    data: list[Json] = []
    for index, (query, _op, _value) in enumerate(conditions):
        ref = chr(ord("A") + index)
        data.append(
            {
                "refId": ref,
                "relativeTimeRange": {"from": _range_seconds(query), "to": 0},
                "datasourceUid": PROM["uid"],
                "model": {
                    "refId": ref,
                    "datasource": PROM,
                    "editorMode": "code",
                    "expr": query,
                    "instant": True,
                    "range": False,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                    "legendFormat": "__auto",
                },
            }
        )
    condition_ref = chr(ord("A") + len(conditions))
    simple = {">": "gt", "<": "lt"}
    if len(conditions) == 1 and conditions[0][1] in simple:
        model: Json = {
            "refId": condition_ref,
            "datasource": EXPR,
            "type": "threshold",
            "expression": "A",
            "conditions": [{"evaluator": {"type": simple[conditions[0][1]], "params": [_number(conditions[0][2])]}}],
        }
    else:
        expression = " && ".join(
            f"${chr(ord('A') + i)} {op} {_number(value)}" for i, (_q, op, value) in enumerate(conditions)
        )
        model = {"refId": condition_ref, "datasource": EXPR, "type": "math", "expression": expression}
    data.append({"refId": condition_ref, "datasourceUid": EXPR["uid"], "model": model})
    slug = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    return {
        "uid": slug[:40],
        "title": name,
        "condition": condition_ref,
        "data": data,
        "noDataState": "Alerting" if name in NO_DATA_ALERTING else "OK",
        "execErrState": "Error",
        "for": rule.get("for", "0s"),
        "annotations": {key: _grafana_template(value) for key, value in rule.get("annotations", {}).items()},
        "labels": dict(rule.get("labels", {})),
        "isPaused": False,
    }


ALERTS_HEADER = """\
# Grafana alert rules for agent-otel: the conditions of collector/prometheus/rules/agent-otel-alerts.yml,
# for users who alert from Grafana. Generated by tools/gen_grafana.py; do not edit by hand.
# Queries read the datasource uid agent-otel-prometheus (grafana/provisioning/datasources/).
# Route them with your own contact points and notification policies (label severity).
"""


class _NoAliases(yaml.SafeDumper):
    """Shared dicts (datasource refs) are written out in full, not as YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def grafana_alerts() -> str:
    source = yaml.safe_load(PROMETHEUS_ALERTS.read_text())
    groups = []
    for group in source["groups"]:
        rules = [grafana_rule(rule) for rule in group["rules"] if rule["alert"] not in PROMETHEUS_ONLY]
        groups.append({"orgId": 1, "name": group["name"], "folder": "agent-otel", "interval": "1m", "rules": rules})
    body = yaml.dump(
        {"apiVersion": 1, "groups": groups}, Dumper=_NoAliases, sort_keys=False, width=10_000, allow_unicode=True
    )
    return ALERTS_HEADER + body


def outputs() -> dict[Path, str]:
    files = {DASHBOARDS / name: json.dumps(board, indent=2) + "\n" for name, board in all_dashboards().items()}
    files[ALERTS_OUT] = grafana_alerts()
    return files


def main(argv: list[str]) -> int:
    files = outputs()
    if "--check" in argv:
        stale = [
            str(path.relative_to(ROOT)) for path, text in files.items() if not path.exists() or path.read_text() != text
        ]
        extra = sorted(str(p.relative_to(ROOT)) for p in DASHBOARDS.glob("*.json") if p not in files)
        for name in stale + extra:
            print(f"stale or unexpected: {name}", file=sys.stderr)
        return 1 if stale or extra else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
