"""The benchmark's summary of repeated runs: each target's figure is its own median over the runs."""

from __future__ import annotations

from bench.loadgen import SendResult
from bench.throughput import Outcome, Scenario, spread

SCENARIO = Scenario("PostgreSQL, OTLP/HTTP, default", "postgresql", "http", 1_000_000)


def outcome(acked: int, persisted: float, raw: float | None, p99_s: float = 0.9) -> Outcome:
    sent = SendResult(acknowledged_spans=acked, seconds=1.0, latencies=[0.1] * 98 + [p99_s, p99_s])
    return Outcome(SCENARIO, sent, persisted, 0.8, 0.9, 300.0, 240.0, raw)


def test_the_medians_of_persisted_and_of_the_ratio_are_not_those_of_the_median_acked_run() -> None:
    runs = [
        outcome(30_000, 29_000, 50_000),  # the median run by acked: ratio 0.58
        outcome(35_000, 25_000, 62_500),  # ratio 0.40
        outcome(20_000, 19_000, 45_000),  # ratio 0.42
    ]
    line = spread(SCENARIO.name, runs)
    assert line.startswith("PostgreSQL, OTLP/HTTP, default: acked 20,000 to 35,000 spans/s")
    assert "persisted 19,000 to 29,000 (median 25,000)" in line
    assert "persisted / raw 0.40 to 0.58 (median 0.42)" in line
    assert "ack p99 900 to 900 ms" in line


def test_an_even_number_of_runs_takes_the_mean_of_the_middle_two() -> None:
    runs = [outcome(30_000, 30_000, 60_000), outcome(31_000, 26_000, 50_000)]
    line = spread(SCENARIO.name, runs)
    assert "(median 28,000)" in line
    assert "persisted / raw 0.50 to 0.52 (median 0.51)" in line


def test_sqlite_runs_have_no_ratio() -> None:
    runs = [outcome(24_000, 23_500, None), outcome(25_000, 24_000, None), outcome(22_000, 21_000, None)]
    line = spread("SQLite, OTLP/HTTP, default", runs)
    assert "persisted 21,000 to 24,000 (median 23,500)" in line
    assert "persisted / raw" not in line
