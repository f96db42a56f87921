"""Cost of the span-derived metrics per commit, and of one /metrics render (docs/observability.md).

    .venv/bin/python -m tests.observability.bench_metrics

Not a test (pytest does not collect it): a measurement, run by hand on a quiet machine.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agent_otel.collector.metrics.health import HealthMetrics
from agent_otel.collector.metrics.spans import SpanMetrics
from agent_otel.collector.storage.transaction import ChangeSet
from agent_otel.settings import MetricsSettings
from tests.observability.test_metrics import execution, step

RUNS = 20
STATUSES = ("success", "failed", "timeout", "error")


def main() -> None:
    registry = CollectorRegistry()
    health = HealthMetrics(registry, "bench")
    metrics = SpanMetrics(registry, MetricsSettings(), health.label_overflow)
    # 200 agents, 20 models, 50 tools: the default caps' order of magnitude
    changes = ChangeSet(
        executions=[
            execution(execution_id=f"e{i}", agent_id=f"agent-{i % 200}", status=STATUSES[i % 4], error_code="E")
            for i in range(1000)
        ],
        steps=[step(span_id=f"{i:016x}", agent_id=f"agent-{i % 200}", model=f"model-{i % 20}") for i in range(2000)]
        + [
            step(span_id=f"{i:016x}", kind="tool", tool_name=f"tool-{i % 50}", model=None, provider=None)
            for i in range(1000)
        ],
    )
    metrics.committed(changes)  # create every series first: steady state is what matters
    per_commit = float("inf")
    for _ in range(5):  # the best of five blocks: the machine's other work only ever adds time
        started = time.process_time()
        for _ in range(RUNS):
            metrics.committed(changes)
        per_commit = min(per_commit, (time.process_time() - started) / RUNS)
    started = time.perf_counter()
    for _ in range(RUNS):
        body = generate_latest(registry)
    text_ms = (time.perf_counter() - started) / RUNS * 1000
    started = time.perf_counter()
    for _ in range(RUNS):
        generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    openmetrics_ms = (time.perf_counter() - started) / RUNS * 1000
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    print(
        f"committed(): {per_commit * 1e3:.1f} ms per change set of 1000 executions + 3000 steps "
        f"({per_commit / 4000 * 1e6:.1f} us per row)"
    )
    print(
        f"/metrics: {text_ms:.0f} ms text, {openmetrics_ms:.0f} ms OpenMetrics, "
        f"{samples} samples, {len(body) // 1024} KiB"
    )


if __name__ == "__main__":
    main()
