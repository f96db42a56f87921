"""``agent_otel_unpriced_llm_calls_total{model}``: LLM calls stored without a cost.

A model missing from the price table is counted, never priced at zero (see ``pricing.py``).
Counted from what was committed, so a retried request is not counted twice: each new LLM step
with tokens and no cost, plus executions whose own span carried tokens of an unpriced model
(no LLM steps). The ``model`` label is capped like every label fed by traffic.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from agent_otel.collector.metrics.limits import LabelLimiter
from agent_otel.collector.storage.transaction import ChangeSet


class UnpricedMetrics:
    """A commit listener."""

    def __init__(self, registry: CollectorRegistry, max_models: int, overflow: Counter) -> None:
        self.model = LabelLimiter("unpriced_model", max_models, overflow)
        self.calls = Counter(
            "agent_otel_unpriced_llm_calls",
            "LLM calls stored with tokens but no cost: their model is missing from the price table",
            ["model"],
            registry=registry,
        )

    def committed(self, changes: ChangeSet) -> None:
        for step in changes.steps:
            if step.kind == "llm" and step.cost_usd is None and (step.input_tokens or step.output_tokens):
                self.calls.labels(self.model(step.model)).inc()
        for row in changes.executions:
            if row.llm_calls == 0 and row.unpriced_llm_calls:
                self.calls.labels(self.model(row.model)).inc(row.unpriced_llm_calls)
