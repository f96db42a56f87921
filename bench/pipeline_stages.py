"""Per-span cost of each pure pipeline stage, in microseconds (no sockets, no database).

    python bench/pipeline_stages.py [--spans 50000]

Normalize runs as in the collector (the C span scanner over the protobuf bytes); the object walk
it replaces is printed for comparison. Used to decide what to optimise: the ingest target (issue 7)
leaves roughly 40 us of Python per span on this 2-core machine once PostgreSQL and the load
generator have their share. The stages run with the collector's garbage-collector thresholds
(``service.tune_gc``); the total with CPython's defaults, which this script printed before
2026-12-07's thirteenth session and which earlier sessions quote as the machine's speed, follows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent_otel.collector.pipeline.assemble import StoredState, assemble, totals_for
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.pipeline.pricing import PriceBook, Pricer, builtin_prices
from agent_otel.collector.pipeline.rows import execution_row, step_row
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.decode import decode_traces
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import SanitizerSettings
from bench.loadgen import build_bodies


def timed(label: str, spans: int, fn: Callable[[], Any], results: dict[str, float]) -> Any:
    best = float("inf")
    value = None
    for _ in range(3):
        # CPU time of this process, not wall time: the figure holds on a busy machine
        started = time.process_time()
        value = fn()
        best = min(best, time.process_time() - started)
    results[label] = best / spans * 1e6
    return value


def stages(bodies: list[bytes], spans: int) -> tuple[dict[str, float], float]:
    """Each stage's CPU microseconds per span, and the normalizer's object walk for comparison."""
    normalizer = Normalizer(SpanSanitizer(SanitizerSettings()))
    pricer = Pricer(PriceBook(builtin_prices()))
    limits = Limits(time.time_ns(), 86_400 * 10**9, 3650 * 86_400 * 10**9, 32)
    results: dict[str, float] = {}

    requests = timed("decode", spans, lambda: [decode_traces(b, "protobuf") for b in bodies], results)
    # the collector's path: the C scanner reads the protobuf bytes (the request was decoded too,
    # which validates it); the object walk is the reference without a C compiler
    batches = timed(
        "normalize + sanitize",
        spans,
        lambda: [
            normalizer.traces(r, "default", limits, RedactionCounts(), b) for r, b in zip(requests, bodies, strict=True)
        ],
        results,
    )
    objects = Normalizer(SpanSanitizer(SanitizerSettings()), compiled=False)
    walk: dict[str, float] = {}
    timed("objects", spans, lambda: [objects.traces(r, "default", limits, RedactionCounts()) for r in requests], walk)
    timed("price", spans, lambda: [pricer.apply(b) for b in batches], results)
    records = [s for b in batches for s in b.spans]
    assembly = timed("assemble", spans, lambda: assemble(records, StoredState()), results)

    def to_rows() -> int:
        step_rows = [step_row(p) for p in assembly.steps]
        by_execution: dict[str, list[Any]] = {}
        for row in step_rows:
            by_execution.setdefault(row.execution_id, []).append(
                (row.kind, row.model, row.provider, row.input_tokens, row.output_tokens, row.cost_usd, True)
            )
        executions = [
            execution_row(p, totals_for(p.record, by_execution.get(p.execution_id, ()))) for p in assembly.executions
        ]
        return len(step_rows) + len(executions)

    timed("rows", spans, to_rows, results)
    return results, walk["objects"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=50_000)
    args = parser.parse_args()
    built = build_bodies(args.spans, 512, 99)
    bodies = [body for body, _ in built]
    spans = sum(count for _, count in built)
    # First with CPython's default collector thresholds, as this script measured before
    # 2026-12-07's thirteenth session (figures in docs/performance.md compare with this total):
    # about half of it was the cyclic collector re-scanning the records in flight, which the
    # collector's processes do not pay (service.tune_gc). Then as the collector runs.
    untuned, _ = stages(bodies, spans)
    from agent_otel.collector.service import tune_gc

    tune_gc()
    results, walk = stages(bodies, spans)
    total = sum(results.values())
    print(f"{spans} spans, {len(bodies)} requests of 512; CPU microseconds per span (best of 3), with the")
    print("collector's garbage-collector thresholds (service.tune_gc):")
    for label, micros in results.items():
        print(f"  {label:24s} {micros:6.2f}")
    print(f"  {'total':24s} {total:6.2f}  -> {1e6 / total:,.0f} spans/s on one core for these stages")
    print(f"  (normalize + sanitize through protobuf objects, without the C scanner: {walk:.2f})")
    print(
        f"with CPython's default thresholds (this script's figure before 2026-12-07's thirteenth session):"
        f" total {sum(untuned.values()):.2f} ("
        + ", ".join(f"{label} {micros:.2f}" for label, micros in untuned.items())
        + ")"
    )


if __name__ == "__main__":
    main()
