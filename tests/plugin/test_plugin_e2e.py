"""The plugin end to end: an agent instrumented with agent_otel's API exports (OTLP/HTTP and
gRPC, through the real exporters) to a running collector, and the rows are complete: execution,
steps, tokens, credits, user and session, feedback, and no content stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

import agent_otel
from tests.conftest import RunningCollector, wait_for_rollups
from tests.conventions.test_golden import dump_database

PROMPT = "Refund order 1182 for dana@example.com, card 4539148803436467, key sk-proj-PLANTEDplantedPLANTED0123456789ab"


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


@pytest.fixture
def no_plugin() -> Iterator[None]:
    agent_otel.shutdown()
    yield
    agent_otel.shutdown()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_plugin_rows(running_collector: RunningCollector, protocol: str, no_plugin: None) -> None:
    endpoint = running_collector.http_endpoint if protocol == "http/protobuf" else running_collector.grpc_endpoint
    agent_otel.configure(service_name="refund-service", endpoint=endpoint, protocol=protocol, set_global=False)
    before = agent_otel.stats()

    @agent_otel.tool("lookup_order")
    def lookup(order: str) -> dict[str, str]:
        return {"order": order, "status": "paid"}

    with (
        agent_otel.user_context(user_id="user-77", session_id="sess-77"),
        agent_otel.agent("refund-bot", intent="refund", feature="support") as run,
    ):
        run.set_input(PROMPT)
        run.record_credits(2.5)
        with agent_otel.llm("gpt-4o-mini", provider="openai", **{"gen_ai.input.messages": PROMPT}) as call:
            call.record_tokens(input=1000, output=100)
        lookup("1182")
        with agent_otel.llm("gpt-4o-mini", provider="openai") as call:
            call.record_tokens(input=500, output=50)
        run.set_output("Refunded.")
        agent_otel.feedback(rating=4, comment="quick! reach me at dana@example.com")
    agent_otel.feedback(agent="refund-bot", execution_id=run.execution_id, favorite=True, user_id="user-77")
    agent_otel.shutdown()  # flushes: the exporter returns once the collector committed
    after = agent_otel.stats()
    assert after["failed_spans"] == before["failed_spans"]
    assert after["exported_spans"] - before["exported_spans"] == 5  # agent, 2 LLM, tool, later feedback

    engine = running_collector.engine
    (execution,) = rows(engine, "SELECT * FROM agent_executions")
    assert execution["execution_id"] == run.execution_id
    assert execution["agent_id"] == "refund-bot" and execution["status"] == "success"
    assert execution["user_id"] == "user-77" and execution["session_id"] == "sess-77"
    assert (execution["input_tokens"], execution["output_tokens"]) == (1500, 150)
    assert execution["llm_calls"] == 2 and execution["tool_calls"] == 1
    assert (
        execution["credits_consumed"] == 2.5 and execution["intent"] == "refund" and execution["feature"] == "support"
    )
    assert execution["input_size"] == len(PROMPT) and execution["input_type"] == "text"
    assert execution["output_size"] == len("Refunded.") and execution["source"] == "agent_otel"
    assert execution["cost_usd"] == pytest.approx((1500 * 0.15 + 150 * 0.60) / 1e6)
    steps = rows(engine, "SELECT kind, tool_name, execution_id FROM agent_steps ORDER BY started_at")
    assert [s["kind"] for s in steps] == ["llm", "tool", "llm"] and steps[1]["tool_name"] == "lookup_order"
    assert {s["execution_id"] for s in steps} == {run.execution_id}

    feedback = {r["rating"]: r for r in rows(engine, "SELECT * FROM agent_feedback")}
    assert set(feedback) == {4, None}
    assert feedback[4]["execution_id"] == run.execution_id and feedback[4]["user_id"] == "user-77"
    assert feedback[4]["agent_id"] == "refund-bot" and "dana@example.com" not in feedback[4]["comment"]
    assert feedback[None]["is_favorite"] is True or feedback[None]["is_favorite"] == 1
    assert feedback[None]["execution_id"] == run.execution_id and feedback[None]["agent_id"] == "refund-bot"

    if getattr(running_collector.collector, "rollups", None) is not None:  # analytics wired in (issue 4)
        wait_for_rollups(engine)
        (interaction,) = rows(engine, "SELECT * FROM user_agent_interactions")
        assert interaction["user_id"] == "user-77" and interaction["agent_id"] == "refund-bot"
        assert interaction["total_executions"] == 1 and interaction["rating"] == 4
        assert interaction["is_favorite"] in (True, 1) and "dana@example.com" not in interaction["feedback"]

    dump = dump_database(engine)
    for planted in (PROMPT, "dana@example.com", "4539148803436467", "sk-proj-PLANTEDplanted"):
        assert planted not in dump
