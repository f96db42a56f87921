"""Trace assembly: which spans are executions, and which execution each step belongs to.

A pure function of (the spans of one write group, what the database already holds for their
traces). The writer queries the stored state, calls ``assemble``, then inserts.

Rules (the README repeats them):
1. A span classified as an agent (``invoke_agent``, OpenInference AGENT, Traceloop agent) is an
   execution. A nested agent is its own execution (with ``parent_execution_id``) and also an
   ``agent`` step of the outer one.
2. In a trace with no agent span, the root span is the execution, provided the trace carries
   GenAI work (the root itself or a descendant is an LLM, tool, retrieval or chain span). An LLM
   or tool root is then also its own first step, so its tokens are counted the same way.
3. Every other GenAI span is a step of its nearest execution ancestor. Plain spans (HTTP, SQL)
   are kept only when they link a GenAI step to its execution.
4. Spans whose ancestry is not known yet (their parent arrives in a later request: children end
   first) are stored with ``execution_id`` NULL and adopted when the ancestor arrives.
5. An execution's tokens, cost and model come from its LLM steps; when it has none, from the
   execution span's own attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from agent_otel.collector.pipeline.model import GENAI_CATEGORIES, Category, SpanRecord

Key = tuple[str, str, str]  # tenant, trace id, span id


@dataclass(frozen=True, slots=True)
class StoredExecution:
    execution_id: str
    agent_id: str
    span_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StoredStep:
    """A step already in the database (an orphan, or a resolved parent of a new span)."""

    span_id: str
    parent_span_id: str | None
    execution_id: str | None
    agent_id: str | None
    kind: str
    started_at: datetime
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    priced: bool


@dataclass(slots=True)
class StoredState:
    """What the database holds for the traces of a write group (per tenant and trace)."""

    executions: dict[tuple[str, str], list[StoredExecution]] = field(default_factory=dict)
    steps: dict[Key, StoredStep] = field(default_factory=dict)
    # log rows stored before their span's execution was known: (tenant, trace, span, log id, time)
    orphan_logs: list[tuple[str, str, str, str, datetime]] = field(default_factory=list)

    def execution_by_span(self, tenant: str, trace: str, span: str) -> StoredExecution | None:
        for execution in self.executions.get((tenant, trace), ()):
            if execution.span_id == span:
                return execution
        return None


@dataclass(slots=True)
class Totals:
    """What an execution sums over its LLM steps."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    unpriced_llm_calls: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    model: str | None = None
    provider: str | None = None


@dataclass(slots=True)
class StepPlan:
    record: SpanRecord
    kind: str
    execution_id: str | None
    agent_id: str | None


@dataclass(slots=True)
class ExecutionPlan:
    record: SpanRecord
    execution_id: str
    agent_id: str
    agent_name: str
    parent_execution_id: str | None
    user_id: str | None
    session_id: str | None

    @property
    def target(self) -> tuple[str, str]:
        """(execution id, agent id): what a step of this execution records."""
        return (self.execution_id, self.agent_id)


@dataclass(slots=True)
class Adoption:
    """A stored orphan step whose execution is now known."""

    tenant_id: str
    trace_id: str
    span_id: str
    started_at: datetime
    execution_id: str
    agent_id: str


@dataclass(slots=True)
class Assembly:
    executions: list[ExecutionPlan] = field(default_factory=list)
    steps: list[StepPlan] = field(default_factory=list)
    adoptions: list[Adoption] = field(default_factory=list)
    ignored: int = 0
    # execution (tenant, execution_id) for every span key that resolved, for events and logs
    span_execution: dict[Key, tuple[str, str]] = field(default_factory=dict)


def needs_lookup(spans: Iterable[SpanRecord]) -> tuple[set[tuple[str, str]], set[Key], set[tuple[str, str]]]:
    """What to ask the database before assembling: (traces to search for orphans, parent spans
    outside the group, traces whose stored executions matter)."""
    present: set[Key] = set()
    traces: set[tuple[str, str]] = set()
    spans = list(spans)
    for span in spans:
        present.add((span.tenant_id, span.trace_id, span.span_id))
        traces.add((span.tenant_id, span.trace_id))
    external: set[Key] = set()
    exec_traces: set[tuple[str, str]] = set()
    for span in spans:
        if span.parent_span_id is not None:
            key = (span.tenant_id, span.trace_id, span.parent_span_id)
            if key not in present:
                external.add(key)
                exec_traces.add((span.tenant_id, span.trace_id))
        elif span.category is not Category.AGENT:
            exec_traces.add((span.tenant_id, span.trace_id))
    return traces, external, exec_traces


def derived_execution_id(trace_id: str, span_id: str) -> str:
    return f"{trace_id}-{span_id}"


def assemble(spans: list[SpanRecord], stored: StoredState) -> Assembly:
    return _Assembler(spans, stored).run()


class _Assembler:
    def __init__(self, spans: list[SpanRecord], stored: StoredState) -> None:
        self.stored = stored
        self.by_key: dict[Key, SpanRecord] = {}
        for span in spans:  # a span sent twice in one group: the first copy wins
            self.by_key.setdefault((span.tenant_id, span.trace_id, span.span_id), span)
        self.records = list(self.by_key.values())
        self.children: dict[Key, list[SpanRecord]] = {}
        for span in self.records:
            if span.parent_span_id is not None:
                parent = (span.tenant_id, span.trace_id, span.parent_span_id)
                self.children.setdefault(parent, []).append(span)
        self.orphan_parents = {
            (tenant, trace, step.parent_span_id)
            for (tenant, trace, _), step in stored.steps.items()
            if step.execution_id is None and step.parent_span_id is not None
        }
        self.executions: dict[Key, ExecutionPlan] = {}
        self.resolved: dict[Key, tuple[str, str] | None] = {}

    def run(self) -> Assembly:
        out = Assembly()
        self._find_executions()
        for key, plan in self.executions.items():
            parent = self._above(plan.record)
            plan.parent_execution_id = parent[0] if parent else None
            out.span_execution[key] = (plan.execution_id, plan.agent_id)
            out.executions.append(plan)
        for span in self.records:
            self._plan_step(span, out)
        for (tenant, trace, span_id), step in sorted(self.stored.steps.items()):
            if step.execution_id is None:
                target = self._walk(tenant, trace, step.parent_span_id, [])
                if target is not None:
                    out.adoptions.append(Adoption(tenant, trace, span_id, step.started_at, *target))
                    out.span_execution[(tenant, trace, span_id)] = target
        return out

    def _has_genai_below(self, key: Key, depth: int = 0) -> bool:
        if key in self.orphan_parents:
            return True
        for child in self.children.get(key, ()):
            if child.category in GENAI_CATEGORIES:
                return True
            child_key = (child.tenant_id, child.trace_id, child.span_id)
            if depth < 64 and self._has_genai_below(child_key, depth + 1):
                return True
        return False

    def _find_executions(self) -> None:
        """Rules 1 and 2."""
        stored = self.stored
        agent_traces = {(s.tenant_id, s.trace_id) for s in self.records if s.category is Category.AGENT}
        for span in self.records:
            key = (span.tenant_id, span.trace_id, span.span_id)
            if span.category is Category.AGENT:
                self.executions[key] = _execution(span, span.agent_id, span.agent_name)
                continue
            if span.parent_span_id is not None:
                continue
            trace = (span.tenant_id, span.trace_id)
            already = stored.execution_by_span(span.tenant_id, span.trace_id, span.span_id) is not None
            other_executions = any(e.span_id != span.span_id for e in stored.executions.get(trace, ()))
            if already or (
                trace not in agent_traces
                and not other_executions
                and (span.category is not Category.OTHER or self._has_genai_below(key))
            ):
                name = span.agent_name or span.workflow_name or span.service_name or span.name
                self.executions[key] = _execution(span, span.agent_id or name, name)

    def _plan_step(self, span: SpanRecord, out: Assembly) -> None:
        """Rules 3 and 4 for one span of the group."""
        key = (span.tenant_id, span.trace_id, span.span_id)
        plan = self.executions.get(key)
        if plan is not None:
            if span.category is Category.AGENT and plan.parent_execution_id is not None:
                parent = self._above(span)
                assert parent is not None
                out.steps.append(StepPlan(span, "agent", parent[0], parent[1]))
            elif span.category in _SELF_STEP:
                out.steps.append(StepPlan(span, _KIND[span.category], plan.execution_id, plan.agent_id))
            return
        if span.category is Category.OTHER and not self._has_genai_below(key):
            out.ignored += 1
            return
        target = self._above(span)
        out.steps.append(
            StepPlan(span, _KIND[span.category], target[0] if target else None, target[1] if target else None)
        )
        if target is not None:
            out.span_execution[key] = target

    def _above(self, span: SpanRecord) -> tuple[str, str] | None:
        """(execution id, agent id) of the nearest execution strictly above ``span``."""
        parent = span.parent_span_id
        if parent is None:
            return None
        plan = self.executions.get((span.tenant_id, span.trace_id, parent))
        if plan is not None:  # the common case: a step directly under its execution
            return plan.target
        return self._walk(span.tenant_id, span.trace_id, parent, [])

    def _walk(self, tenant: str, trace: str, parent: str | None, chain: list[Key]) -> tuple[str, str] | None:
        answer: tuple[str, str] | None = None
        while parent is not None and len(chain) < 256:
            key = (tenant, trace, parent)
            if key in self.resolved:
                answer = self.resolved[key]
                break
            plan = self.executions.get(key)
            if plan is not None:
                answer = plan.target
                break
            chain.append(key)
            record = self.by_key.get(key)
            if record is not None:
                parent = record.parent_span_id
                continue
            stored_exec = self.stored.execution_by_span(tenant, trace, parent)
            if stored_exec is not None:
                answer = (stored_exec.execution_id, stored_exec.agent_id)
                break
            stored_step = self.stored.steps.get(key)
            if stored_step is None:
                break  # the ancestor has not arrived yet
            if stored_step.execution_id is not None:
                answer = (stored_step.execution_id, stored_step.agent_id or "")
                break
            parent = stored_step.parent_span_id
        for key in chain:  # a non-execution span resolves to whatever its parent resolves to
            self.resolved[key] = answer
        return answer


_SELF_STEP = frozenset({Category.LLM, Category.TOOL, Category.RETRIEVAL, Category.EMBEDDING})
# a step's kind as a plain str: ``Category.value`` is a descriptor call per span (issue 7)
_KIND: Final = {category: category.value for category in Category}


def _execution(span: SpanRecord, agent_id: str | None, agent_name: str | None) -> ExecutionPlan:
    name = agent_name or span.service_name or span.name
    return ExecutionPlan(
        record=span,
        execution_id=span.execution_id or derived_execution_id(span.trace_id, span.span_id),
        agent_id=agent_id or name,
        agent_name=name,
        parent_execution_id=None,
        user_id=span.user_id,
        session_id=span.session_id,
    )


# (kind, model, provider, input tokens, output tokens, cost, priced): what rule 5 needs of a step
StepFacts = tuple[str, str | None, str | None, int, int, float | None, bool]


def totals_for(own: SpanRecord | None, steps: Iterable[StepFacts]) -> Totals:
    """Rule 5: sums over the LLM steps; the execution span's own figures when it has none."""
    totals = Totals()
    per_model: dict[tuple[str | None, str | None], int] = {}
    cost: float | None = None
    for kind, model, provider, tokens_in, tokens_out, step_cost, priced in steps:
        if kind == "tool":
            totals.tool_calls += 1
        if kind != "llm":
            continue
        totals.llm_calls += 1
        totals.input_tokens += tokens_in
        totals.output_tokens += tokens_out
        if step_cost is not None:
            cost = (cost or 0.0) + step_cost
        if not priced:
            totals.unpriced_llm_calls += 1
        per_model[(model, provider)] = per_model.get((model, provider), 0) + tokens_in + tokens_out + 1
    totals.cost_usd = cost
    if per_model:
        (totals.model, totals.provider), _ = min(
            per_model.items(), key=lambda item: (-item[1], item[0][0] or "", item[0][1] or "")
        )
    elif own is not None:
        totals.input_tokens, totals.output_tokens = own.input_tokens, own.output_tokens
        totals.cost_usd = own.cost_usd
        totals.unpriced_llm_calls = 0 if own.priced else 1
        totals.model, totals.provider = own.model, own.provider
    return totals
