"""GET /api/admin/workflows/{trace_id} and /api/admin/sessions/{session_id} on rows made from
real captured traces (Traceloop's @workflow > @agent, openai-agents' workflow root > agent > turn)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCollector
from tests.conventions.test_golden import send_http

FIXTURES = Path(__file__).parents[1] / "testdata" / "otlp"
TOKEN = "workflow-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def trace_of(name: str) -> str:
    return str(json.loads((FIXTURES / name / "expected_rows.json").read_text())["execution"]["trace_id"])


@pytest.fixture
def collector(db_url: str, collector_factory: Callable[..., RunningCollector]) -> RunningCollector:
    running = collector_factory(db_url, admin_token=TOKEN)
    for name in ("traceloop/tool_call", "openai-agents/tool_call", "openai-v2/error_429"):
        send_http(running, FIXTURES / name)
    return running


def get(collector: RunningCollector, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{collector.api}{path}", headers=kwargs.pop("headers", AUTH), **kwargs)


def test_workflow_tree_with_a_workflow_wrapper(collector: RunningCollector) -> None:
    response = get(collector, f"/api/admin/workflows/{trace_of('traceloop/tool_call')}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    workflow = body["workflow"]
    assert workflow["name"] == "weather-workflow.workflow"
    (execution,) = workflow["executions"]
    assert execution["agent_name"] == "weather-agent" and execution["status"] == "success"
    assert [s["kind"] for s in execution["steps"]] == ["llm", "tool", "llm"]
    assert [s["input_tokens"] for s in execution["steps"]] == [61, 0, 83]
    assert execution["steps"][1]["tool_name"] == "get_weather" and execution["steps"][1]["status"] == "success"
    assert all(s["duration_ms"] >= 0 for s in execution["steps"]) and execution["steps"][0]["cost_usd"] > 0
    (outside,) = workflow["spans_outside_executions"]
    assert outside["kind"] == "chain" and outside["parent_span_id"] is None
    totals = workflow["totals"]
    assert (totals["input_tokens"], totals["output_tokens"], totals["total_tokens"]) == (144, 39, 183)
    assert totals["llm_calls"] == 2 and totals["tool_calls"] == 1 and totals["executions"] == 1
    assert totals["cost_usd"] == pytest.approx(execution["cost_usd"]) and totals["cost_usd"] > 0
    assert totals["status"] == "success" and totals["steps"] == 4
    assert totals["steps_by_kind"] == {"chain": 1, "llm": 2, "tool": 1}


def test_workflow_steps_nest_by_parent_span(collector: RunningCollector) -> None:
    workflow = get(collector, f"/api/admin/workflows/{trace_of('openai-agents/tool_call')}").json()["workflow"]
    (execution,) = workflow["executions"]
    assert execution["agent_name"] == "weather-agent"
    turns = execution["steps"]
    assert [t["name"] for t in turns] == ["turn", "turn"]
    assert [s["kind"] for s in turns[0]["steps"]] == ["llm", "tool"] and [s["kind"] for s in turns[1]["steps"]] == [
        "llm"
    ]
    assert [s["name"] for s in workflow["spans_outside_executions"]] == ["weather-workflow"]
    assert [s["name"] for s in workflow["spans_outside_executions"][0]["steps"]] == ["weather-workflow"]


def test_failed_root_call_is_its_own_execution(collector: RunningCollector) -> None:
    workflow = get(collector, f"/api/admin/workflows/{trace_of('openai-v2/error_429')}").json()["workflow"]
    (execution,) = workflow["executions"]
    assert execution["status"] == "failed" and execution["error_code"] == "RateLimitError"
    assert execution["http_status"] == 429 and execution["steps"] == [] and execution["steps_by_kind"] == {"llm": 1}
    assert workflow["totals"]["status"] == "failed" and workflow["totals"]["success_rate"] == 0


def test_session(collector: RunningCollector) -> None:
    body = get(collector, "/api/admin/sessions/sess-2f6c1a9e").json()
    session = body["session"]
    assert body["status"] == "success" and session["users"] == ["user-8841"]
    assert session["workflows"] == 3 and len(session["executions"]) == 3
    totals = session["totals"]
    assert totals["executions"] == 3 and totals["successful_executions"] == 2 and totals["failed_executions"] == 1
    assert totals["input_tokens"] == 288 and totals["output_tokens"] == 78
    assert totals["agents"] == ["fixture-openai-v2", "weather-agent"]
    limited = get(collector, "/api/admin/sessions/sess-2f6c1a9e", params={"limit": 1}).json()["session"]
    assert len(limited["executions"]) == 1 and limited["truncated"] and limited["totals"]["executions"] == 3


def test_errors(collector: RunningCollector) -> None:
    trace = trace_of("traceloop/tool_call")
    assert get(collector, f"/api/admin/workflows/{trace}", headers={}).status_code == 401
    assert (
        get(
            collector, f"/api/admin/workflows/{trace}", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
        ).status_code
        == 403
    )
    assert get(collector, "/api/admin/workflows/not-a-trace").status_code == 400
    assert get(collector, f"/api/admin/workflows/{'0' * 31}1").status_code == 404
    assert get(collector, "/api/admin/sessions/no-such-session").status_code == 404
    assert get(collector, "/api/admin/sessions/sess-2f6c1a9e", params={"limit": 0}).status_code == 422
    assert get(collector, f"/api/admin/workflows/{trace.upper()}").status_code == 200
