"""Metrics derived from what the collector committed (never from what it merely received, so
a retried request is not counted twice). User, session and execution ids are never labels.

The contract's metric families (``agent_executions_total{agent,status}`` and the rest) are
counted when a transaction commits, from its ``ChangeSet``: executions and their duration,
credits and errors; every LLM and tool step; tokens and cost per agent and model. Tokens are
counted once each: on the LLM steps when there are any, on the execution span when it carries
them itself, and on stored orphan steps when an execution later adopts them.

Exemplars carry the trace id (``trace_id``), so a latency spike on a Grafana panel links to the
trace; they appear in the OpenMetrics exposition, which Prometheus asks for when scraping.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.samples import Exemplar

from agent_otel.collector.metrics.limits import LabelLimiter, clean_label_value
from agent_otel.collector.storage.transaction import ChangeSet
from agent_otel.settings import MetricsSettings

# Agent latencies run from tens of milliseconds (a cached answer) to minutes (a research agent).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Tools are usually faster (an index lookup) but a browser or a test run takes minutes.
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _tally(table: dict[tuple[str, str], list[Any]], key: tuple[str, str], trace: str) -> None:
    """One more row of ``key``: [rows, the last trace id given]."""
    entry = table.get(key)
    if entry is None:
        table[key] = [1, trace]
    else:
        entry[0] += 1
        entry[1] = trace or entry[1]


class SpanMetrics:
    """A commit listener that turns each committed change set into Prometheus samples."""

    def __init__(self, registry: CollectorRegistry, settings: MetricsSettings, overflow: Counter) -> None:
        self.agent = LabelLimiter("agent", settings.max_agents, overflow)
        self.model = LabelLimiter("model", settings.max_models, overflow)
        self.tool = LabelLimiter("tool", settings.max_tools, overflow)
        self.error_type = LabelLimiter("error_type", settings.max_error_types, overflow)
        self.provider = LabelLimiter("provider", settings.max_providers, overflow)
        self.executions = Counter(
            "agent_executions", "Agent executions, by agent and status", ["agent", "status"], registry=registry
        )
        self.duration = Histogram(
            "agent_execution_duration_seconds",
            "Agent execution duration",
            ["agent"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "agent_tokens",
            "LLM tokens, by agent, model and type (input or output)",
            ["agent", "model", "type"],
            registry=registry,
        )
        self.cost = Counter(
            "agent_cost_usd", "LLM cost in US dollars (priced models only)", ["agent", "model"], registry=registry
        )
        self.credits = Counter("agent_credits", "Credits consumed", ["agent"], registry=registry)
        self.errors = Counter(
            "agent_errors",
            "Executions that did not succeed, by agent and error type",
            ["agent", "error_type"],
            registry=registry,
        )
        self.tool_calls = Counter(
            "agent_tool_calls", "Tool calls, by tool and status", ["tool", "status"], registry=registry
        )
        self.tool_duration = Histogram(
            "agent_tool_duration_seconds", "Tool call duration", ["tool"], buckets=TOOL_BUCKETS, registry=registry
        )
        self.llm_calls = Counter(
            "agent_llm_calls",
            "LLM calls, by provider, model and status",
            ["provider", "model", "status"],
            registry=registry,
        )
        self.llm_duration = Histogram(
            "agent_llm_duration_seconds",
            "LLM call duration",
            ["provider", "model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # upper bounds per histogram, for finding the bucket a value falls in (``le`` is inclusive)
        self._bounds = {
            id(self.duration): DURATION_BUCKETS,
            id(self.llm_duration): DURATION_BUCKETS,
            id(self.tool_duration): TOOL_BUCKETS,
        }
        self._budgets(registry, settings)

    @staticmethod
    def _budgets(registry: CollectorRegistry, settings: MetricsSettings) -> None:
        """The configured budgets as gauges, so the alert rules need no edits (absent when unset)."""
        if settings.daily_cost_budget_usd > 0:
            cost = Gauge(
                "agent_otel_budget_cost_usd", "Configured LLM spend budget in US dollars", ["period"], registry=registry
            )
            cost.labels("day").set(settings.daily_cost_budget_usd)
        if settings.daily_token_budget > 0:
            tokens = Gauge("agent_otel_budget_tokens", "Configured LLM token budget", ["period"], registry=registry)
            tokens.labels("day").set(settings.daily_token_budget)

    def _child(self, metric: Counter | Histogram, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, cached: the lookup costs more than the increment."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def committed(self, changes: ChangeSet) -> None:
        """Rows are first tallied by their raw values (agent id and status, provider and model,
        tool name), then each distinct key is turned into labels and samples once: a commit holds
        thousands of rows and a few dozen keys, and a label lookup and a series update per row were
        most of this method's time (issue 7). Counters get one increment per series. Histograms
        get every value (their buckets need each one), but only the last value falling in each
        bucket carries an exemplar: the one the bucket would keep anyway. The label limiters count
        an overflow per row, as they would looking each row up."""
        executions: dict[tuple[str, str], list[Any]] = {}  # (agent id, status) -> [rows, last trace]
        durations: dict[str, list[tuple[float, str]]] = {}  # agent id -> (seconds, trace id)
        credits: dict[str, float] = {}
        errors: dict[tuple[str, str], list[Any]] = {}  # (agent id, error) -> [rows, last trace]
        # (agent id, model) -> [input tokens, output tokens, cost, rows, step rows]
        tokens: dict[tuple[str | None, str | None], list[Any]] = {}

        def add_tokens(
            key: tuple[str | None, str | None], tokens_in: int, tokens_out: int, cost: float | None, step: int
        ) -> None:
            entry = tokens.get(key)
            if entry is None:
                tokens[key] = [tokens_in, tokens_out, cost or 0.0, 1, step]
                return
            entry[0] += tokens_in
            entry[1] += tokens_out
            if cost:
                entry[2] += cost
            entry[3] += 1
            entry[4] += step

        for row in changes.executions:
            agent_id, trace, status = row.agent_id, row.trace_id, row.status
            _tally(executions, (agent_id, status), trace)
            values = durations.get(agent_id)
            if values is None:
                durations[agent_id] = [(row.duration / 1000.0, trace)]
            else:
                values.append((row.duration / 1000.0, trace))
            if row.credits_consumed:
                credits[agent_id] = credits.get(agent_id, 0.0) + row.credits_consumed
            if status != "success":
                _tally(errors, (agent_id, row.error_code or status), trace)
            if row.llm_calls == 0 and (row.input_tokens or row.output_tokens):
                add_tokens((agent_id, row.model), row.input_tokens, row.output_tokens, row.cost_usd, 0)

        steps: dict[tuple[str | None, ...], list[tuple[float, str]]] = {}  # (kind, names..., status)
        for step in changes.steps:
            kind = step.kind
            if kind == "tool":
                step_key: tuple[str | None, ...] = (kind, step.tool_name or step.name, step.status)
            elif kind == "llm":
                step_key = (kind, step.provider, step.model, step.status)
                if step.agent_id is not None:
                    add_tokens((step.agent_id, step.model), step.input_tokens, step.output_tokens, step.cost_usd, 1)
            else:
                continue
            values = steps.get(step_key)
            if values is None:
                steps[step_key] = [(step.duration / 1000.0, step.trace_id)]
            else:
                values.append((step.duration / 1000.0, step.trace_id))
        for adopted in changes.adopted_steps:
            if adopted.kind == "llm":
                tokens_key = (adopted.agent_id, adopted.model)
                add_tokens(tokens_key, adopted.input_tokens, adopted.output_tokens, adopted.cost_usd, 1)

        self._count(executions, durations, credits, errors, tokens, steps)

    def _count(
        self,
        executions: dict[tuple[str, str], list[Any]],
        durations: dict[str, list[tuple[float, str]]],
        credits: dict[str, float],
        errors: dict[tuple[str, str], list[Any]],
        tokens: dict[tuple[str | None, str | None], list[Any]],
        steps: dict[tuple[str | None, ...], list[tuple[float, str]]],
    ) -> None:
        """``committed``'s tallies as labels and samples, in one increment per series."""
        counts: dict[tuple[Counter, tuple[str, ...]], list[Any]] = {}
        observed: dict[tuple[Histogram, tuple[str, ...]], list[tuple[float, str]]] = {}

        def add(metric: Counter, labels: tuple[str, ...], amount: float, trace_id: str | None = None) -> None:
            entry = counts.get((metric, labels))
            if entry is None:
                counts[(metric, labels)] = [amount, trace_id]
            else:
                entry[0] += amount
                entry[1] = trace_id or entry[1]

        def observe(metric: Histogram, labels: tuple[str, ...], values: list[tuple[float, str]]) -> None:
            into = observed.get((metric, labels))
            if into is None:
                observed[(metric, labels)] = values
            else:
                into += values

        agent_rows: dict[str, int] = {}
        for (agent_id, _status), (rows, _trace) in executions.items():
            agent_rows[agent_id] = agent_rows.get(agent_id, 0) + rows
        agents = {agent_id: self.agent(agent_id, rows) for agent_id, rows in agent_rows.items()}
        for (agent_id, status), (rows, trace) in executions.items():
            add(self.executions, (agents[agent_id], status), rows, trace)
        for agent_id, values in durations.items():
            observe(self.duration, (agents[agent_id],), values)
        for agent_id, amount in credits.items():
            add(self.credits, (agents[agent_id],), amount)
        for (agent_id, error), (rows, trace) in errors.items():
            add(self.errors, (agents[agent_id], self.error_type(error, rows)), rows, trace)
        for (of_agent, model), (tokens_in, tokens_out, cost, rows, step_rows) in tokens.items():
            # an execution's own tokens: its agent's rows were counted above; steps' count here
            agent = self.agent(of_agent, step_rows) if step_rows or of_agent is None else agents[of_agent]
            label = self.model(model, rows)
            if tokens_in:
                add(self.tokens, (agent, label, "input"), tokens_in)
            if tokens_out:
                add(self.tokens, (agent, label, "output"), tokens_out)
            if cost:
                add(self.cost, (agent, label), cost)
        for key, values in steps.items():
            status = clean_label_value(key[-1])
            if key[0] == "tool":
                tool = self.tool(key[1], len(values))
                add(self.tool_calls, (tool, status), len(values))
                observe(self.tool_duration, (tool,), values)
            else:
                provider, model = self.provider(key[1], len(values)), self.model(key[2], len(values))
                add(self.llm_calls, (provider, model, status), len(values))
                observe(self.llm_duration, (provider, model), values)
        for (metric, metric_labels), (amount, trace_id) in counts.items():
            self._child(metric, metric_labels).inc(amount, exemplar={"trace_id": trace_id} if trace_id else None)
        for (histogram, histogram_labels), observations in observed.items():
            self._observe(histogram, histogram_labels, observations)

    def _observe(self, histogram: Histogram, labels: tuple[str, ...], values: list[tuple[float, str]]) -> None:
        """Adds a commit's values to a histogram series at once: each bucket's count and the sum
        in one increment each, and the last value of each bucket as its exemplar, which is what
        observing them one by one leaves. ``Histogram.observe`` takes a lock and walks the bounds
        per value, which made these observations a tenth of a writer thread's time (issue 7); the
        series' own counters (``_buckets``, ``_sum``; prometheus_client is pinned in
        constraints.txt) are used instead, and ``observe`` if a release changes them."""
        bounds = self._bounds[id(histogram)]
        child = self._child(histogram, labels)
        buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
        if not isinstance(buckets, list) or len(buckets) != len(bounds) + 1 or total is None:
            last_in_bucket = {bisect_left(bounds, seconds): index for index, (seconds, _) in enumerate(values)}
            with_exemplar = set(last_in_bucket.values())
            for index, (seconds, trace_id) in enumerate(values):
                child.observe(seconds, exemplar={"trace_id": trace_id} if index in with_exemplar else None)
            return
        counts = [0] * len(buckets)
        last: dict[int, int] = {}
        for index, (seconds, _) in enumerate(values):
            bucket = bisect_left(bounds, seconds)  # the first bound >= the value: ``le`` is inclusive
            counts[bucket] += 1
            last[bucket] = index
        total.inc(sum(seconds for seconds, _ in values))
        now = time.time()
        for bucket, count in enumerate(counts):
            if count:
                buckets[bucket].inc(count)
        for bucket, index in last.items():
            seconds, trace_id = values[index]
            buckets[bucket].set_exemplar(Exemplar({"trace_id": trace_id}, seconds, now))
