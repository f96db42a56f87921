"""Trace assembly rules (pure): which spans are executions and where each step belongs."""

from __future__ import annotations

from datetime import UTC, datetime

from agent_otel.collector.pipeline.assemble import (
    StoredExecution,
    StoredState,
    StoredStep,
    assemble,
    derived_execution_id,
    needs_lookup,
    totals_for,
)
from agent_otel.collector.pipeline.model import Category, SpanRecord

T = "0af7651916cd43dd8448eb211c80319c"
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def span(span_id: str, parent: str | None, category: Category, **kw: object) -> SpanRecord:
    record = SpanRecord(
        tenant_id="default",
        trace_id=str(kw.pop("trace", T)),
        span_id=span_id,
        parent_span_id=parent,
        category=category,
        name=str(kw.pop("name", f"{category.value} {span_id}")),
        start_ns=1_000,
        end_ns=2_000_000,
        status="success",
        source="genai",
        service_name="svc",
    )
    for key, value in kw.items():
        setattr(record, key, value)
    return record


def stored_step(span_id: str, parent: str | None, execution: str | None = None, **kw: object) -> StoredStep:
    values: dict[str, object] = {
        "kind": "llm",
        "model": "gpt-4o",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": 0.001,
        "priced": True,
    }
    values.update(kw)
    return StoredStep(
        span_id,
        parent,
        execution,
        "bot" if execution else None,
        str(values["kind"]),
        NOW,
        values["model"],  # type: ignore[arg-type]
        values["provider"],  # type: ignore[arg-type]
        int(values["input_tokens"]),  # type: ignore[call-overload]
        int(values["output_tokens"]),  # type: ignore[call-overload]
        values["cost_usd"],  # type: ignore[arg-type]
        bool(values["priced"]),
    )


def test_agent_span_is_execution_and_children_are_its_steps() -> None:
    spans = [
        span("a" * 16, None, Category.AGENT, agent_id="bot", agent_name="bot"),
        span("b" * 16, "a" * 16, Category.LLM),
        span("c" * 16, "a" * 16, Category.TOOL, tool_name="search"),
        span("d" * 16, "c" * 16, Category.OTHER, name="GET /search"),  # plain HTTP span under the tool
    ]
    out = assemble(spans, StoredState())
    assert [e.execution_id for e in out.executions] == [derived_execution_id(T, "a" * 16)]
    assert [(s.kind, s.execution_id) for s in out.steps] == [
        ("llm", out.executions[0].execution_id),
        ("tool", out.executions[0].execution_id),
    ]
    # a plain str, not the Category member: database drivers dump an Enum by its name ("LLM")
    assert {type(s.kind) for s in out.steps} == {str}
    assert out.ignored == 1  # the HTTP span links nothing and is not kept


def test_nested_agent_is_its_own_execution_and_a_step_of_the_outer_one() -> None:
    spans = [
        span("a" * 16, None, Category.AGENT, agent_id="outer", agent_name="outer"),
        span("b" * 16, "a" * 16, Category.AGENT, agent_id="inner", agent_name="inner"),
        span("c" * 16, "b" * 16, Category.LLM),
        span("d" * 16, "a" * 16, Category.LLM),
    ]
    out = assemble(spans, StoredState())
    by_agent = {e.agent_id: e for e in out.executions}
    assert by_agent["inner"].parent_execution_id == by_agent["outer"].execution_id
    steps = {(s.record.span_id, s.kind): s.execution_id for s in out.steps}
    assert steps[("b" * 16, "agent")] == by_agent["outer"].execution_id
    assert steps[("c" * 16, "llm")] == by_agent["inner"].execution_id  # nearest agent wins
    assert steps[("d" * 16, "llm")] == by_agent["outer"].execution_id


def test_root_becomes_execution_when_trace_has_no_agent_span() -> None:
    spans = [
        span("a" * 16, None, Category.OTHER, name="POST /chat"),
        span("b" * 16, "a" * 16, Category.OTHER, name="handler"),
        span("c" * 16, "b" * 16, Category.LLM),
    ]
    out = assemble(spans, StoredState())
    assert [e.record.span_id for e in out.executions] == ["a" * 16]
    assert out.executions[0].agent_id == "svc"  # no agent name anywhere: the service name
    # the bridging "handler" span is kept so the LLM step's ancestry stays connected
    assert {(s.record.span_id, s.kind) for s in out.steps} == {("b" * 16, "span"), ("c" * 16, "llm")}


def test_lone_llm_root_is_execution_and_its_own_step() -> None:
    out = assemble([span("a" * 16, None, Category.LLM, model="gpt-4o")], StoredState())
    assert len(out.executions) == 1
    assert [(s.kind, s.execution_id) for s in out.steps] == [("llm", out.executions[0].execution_id)]


def test_plain_trace_without_genai_is_ignored() -> None:
    out = assemble([span("a" * 16, None, Category.OTHER), span("b" * 16, "a" * 16, Category.OTHER)], StoredState())
    assert out.executions == [] and out.steps == [] and out.ignored == 2


def test_children_arriving_first_are_orphans_then_adopted() -> None:
    first = assemble([span("b" * 16, "a" * 16, Category.LLM)], StoredState())
    assert [(s.kind, s.execution_id) for s in first.steps] == [("llm", None)]

    stored = StoredState(steps={("default", T, "b" * 16): stored_step("b" * 16, "a" * 16)})
    second = assemble([span("a" * 16, None, Category.AGENT, agent_id="bot", agent_name="bot")], stored)
    execution = second.executions[0].execution_id
    assert [(a.span_id, a.execution_id, a.agent_id) for a in second.adoptions] == [("b" * 16, execution, "bot")]


def test_orphan_chains_through_stored_orphans() -> None:
    stored = StoredState(
        steps={
            ("default", T, "c" * 16): stored_step("c" * 16, "b" * 16),
            ("default", T, "b" * 16): stored_step("b" * 16, "a" * 16, kind="tool"),
        }
    )
    out = assemble([span("a" * 16, None, Category.AGENT, agent_id="bot", agent_name="bot")], stored)
    assert sorted(a.span_id for a in out.adoptions) == ["b" * 16, "c" * 16]


def test_late_child_of_stored_execution_resolves_through_database() -> None:
    stored = StoredState(executions={("default", T): [StoredExecution("exec-1", "bot", "a" * 16, NOW)]})
    out = assemble([span("b" * 16, "a" * 16, Category.TOOL, tool_name="x")], stored)
    assert [(s.kind, s.execution_id, s.agent_id) for s in out.steps] == [("tool", "exec-1", "bot")]


def test_retried_root_execution_is_planned_again_not_turned_into_a_step() -> None:
    root = span("a" * 16, None, Category.LLM)
    stored = StoredState(
        executions={("default", T): [StoredExecution(derived_execution_id(T, "a" * 16), "svc", "a" * 16, NOW)]}
    )
    out = assemble([root], stored)
    assert len(out.executions) == 1  # the insert will find its key and do nothing


def test_application_execution_id_wins() -> None:
    out = assemble(
        [span("a" * 16, None, Category.AGENT, execution_id="run-42", agent_id="b", agent_name="b")], StoredState()
    )
    assert out.executions[0].execution_id == "run-42"


def test_needs_lookup_asks_only_for_what_is_missing() -> None:
    spans = [
        span("a" * 16, None, Category.AGENT),
        span("b" * 16, "a" * 16, Category.LLM),
        span("c" * 16, "f" * 16, Category.LLM, trace="1" * 32),
    ]
    traces, external, exec_traces = needs_lookup(spans)
    assert traces == {("default", T), ("default", "1" * 32)}
    assert external == {("default", "1" * 32, "f" * 16)}
    assert exec_traces == {("default", "1" * 32)}


def test_totals_sum_llm_steps_and_pick_the_main_model() -> None:
    totals = totals_for(
        None,
        [
            ("llm", "gpt-4o-mini", "openai", 100, 10, 0.01, True),
            ("llm", "gpt-4o", "openai", 1000, 200, None, False),
            ("tool", None, None, 0, 0, None, True),
        ],
    )
    assert (totals.input_tokens, totals.output_tokens, totals.llm_calls, totals.tool_calls) == (1100, 210, 2, 1)
    assert totals.cost_usd == 0.01 and totals.unpriced_llm_calls == 1
    assert totals.model == "gpt-4o"  # most tokens


def test_totals_fall_back_to_the_execution_span_without_llm_steps() -> None:
    own = span("a" * 16, None, Category.AGENT, input_tokens=50, output_tokens=7, model="m", cost_usd=0.5)
    totals = totals_for(own, [("tool", None, None, 0, 0, None, True)])
    assert (totals.input_tokens, totals.output_tokens, totals.cost_usd, totals.model) == (50, 7, 0.5, "m")
