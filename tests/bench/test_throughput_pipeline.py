"""The benchmark's line on the collector's writer and rollup applier, read from the collector's
own metrics (the real ``HealthMetrics`` families, so a renamed family fails here)."""

from __future__ import annotations

from bench.throughput import PipelineFigures, histogram_totals
from prometheus_client import CollectorRegistry, generate_latest

from agent_otel.collector.metrics.health import HealthMetrics


def exposition(commits: list[tuple[float, int, int]], rounds: list[float]) -> str:
    registry = CollectorRegistry()
    metrics = HealthMetrics(registry, "test")
    for seconds, spans, requests in commits:
        metrics.observe_commit(seconds, spans, requests)
    for seconds in rounds:
        metrics.rollup_applied(10, seconds)
    return generate_latest(registry).decode()


def test_the_figures_are_what_the_collector_did_between_two_scrapes() -> None:
    before = histogram_totals(exposition([(0.1, 1_000, 2)], [0.5]))
    after = histogram_totals(exposition([(0.1, 1_000, 2), (0.2, 4_000, 8), (0.3, 4_000, 8)], [0.5, 0.4, 0.6]))
    figures = PipelineFigures.between(before, after, elapsed=2.0)
    assert (figures.groups, figures.spans, figures.requests, figures.rounds) == (2, 8_000, 16, 2)
    assert abs(figures.write_seconds - 0.5) < 1e-9
    assert abs(figures.round_seconds - 1.0) < 1e-9
    assert figures.describe() == (
        "2 groups of 4,000 spans (8.0 requests), 250 ms each, 0.25 being written at a time on average;"
        " rollup applier 2 rounds of 500 ms, busy 50%"
    )


def test_families_are_summed_over_label_sets_and_absent_ones_are_zero() -> None:
    text = (
        "# TYPE agent_otel_batch_write_duration_seconds histogram\n"
        'agent_otel_batch_write_duration_seconds_sum{worker="0"} 1.5\n'
        'agent_otel_batch_write_duration_seconds_sum{worker="1"} 2.5\n'
        'agent_otel_batch_write_duration_seconds_count{worker="0"} 3\n'
        'agent_otel_batch_write_duration_seconds_count{worker="1"} 4\n'
    )
    totals = histogram_totals(text)
    assert totals["agent_otel_batch_write_duration_seconds_sum"] == 4.0
    assert totals["agent_otel_batch_write_duration_seconds_count"] == 7.0
    assert totals["agent_otel_rollup_apply_duration_seconds_count"] == 0.0


def test_a_run_without_commits_says_so() -> None:
    empty = histogram_totals("")
    assert PipelineFigures.between(empty, empty, 1.0).describe() == "no group committed"
