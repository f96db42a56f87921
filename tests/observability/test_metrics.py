"""/metrics: the contract's span-derived metrics, the collector's health, label caps, exemplars,
and `promtool check metrics` on the real output."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from sqlalchemy import text

from agent_otel.collector.metrics.health import HealthMetrics, request_refusal_reasons
from agent_otel.collector.metrics.limits import MAX_VALUE_LENGTH, OTHER, LabelLimiter, clean_label_value
from agent_otel.collector.metrics.spans import DURATION_BUCKETS, SpanMetrics
from agent_otel.collector.pipeline.rows import ExecutionRow, StepRow
from agent_otel.collector.storage.transaction import AdoptedStep, ChangeSet
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import MetricsSettings
from tests.conftest import RunningCollector
from tests.otlp_helpers import PLANTED, agent_trace, encode, finished_spans, http_exporter, sdk_provider

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
FORBIDDEN_LABELS = ("user_id", "user", "session_id", "session", "execution_id", "trace_id", "span_id")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def execution(**overrides: Any) -> ExecutionRow:
    values: dict[str, Any] = dict.fromkeys(ExecutionRow._fields)
    values.update(
        tenant_id="default",
        execution_id="t1-s1",
        started_at=NOW,
        agent_id="support-bot",
        user_id="user-0001",
        status="success",
        duration=1500,
        credits_consumed=2.0,
        completed_at=NOW,
        input_tokens=0,
        output_tokens=0,
        unpriced_llm_calls=0,
        llm_calls=0,
        tool_calls=0,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        source="genai",
    )
    values.update(overrides)
    return ExecutionRow(**values)


def step(**overrides: Any) -> StepRow:
    values: dict[str, Any] = dict.fromkeys(StepRow._fields)
    values.update(
        tenant_id="default",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="00f067aa0ba902b7",
        started_at=NOW,
        execution_id="t1-s1",
        agent_id="support-bot",
        kind="llm",
        name="chat gpt-4o",
        model="gpt-4o",
        provider="openai",
        status="success",
        duration=800,
        completed_at=NOW,
        input_tokens=1000,
        output_tokens=200,
        cost_usd=0.0045,
    )
    values.update(overrides)
    return StepRow(**values)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def health(registry: CollectorRegistry) -> HealthMetrics:
    return HealthMetrics(registry, "9.9.9")


def span_metrics(registry: CollectorRegistry, health: HealthMetrics, **settings: Any) -> SpanMetrics:
    return SpanMetrics(registry, MetricsSettings(**settings), health.label_overflow)


# --- span-derived metrics ----------------------------------------------------------------------


def test_executions_steps_tokens_and_cost_are_counted(registry: CollectorRegistry, health: HealthMetrics) -> None:
    metrics = span_metrics(registry, health)
    changes = ChangeSet(
        executions=[
            execution(llm_calls=1, tool_calls=1, input_tokens=1000, output_tokens=200, cost_usd=0.0045),
            execution(execution_id="t2-s2", status="timeout", error_code="TimeoutError", duration=90_000),
        ],
        steps=[
            step(),
            step(
                span_id="1111111111111111",
                kind="tool",
                name="execute_tool search_kb",
                tool_name="search_kb",
                model=None,
                provider=None,
                input_tokens=0,
                output_tokens=0,
                cost_usd=None,
                duration=40,
                status="error",
            ),
        ],
    )
    metrics.committed(changes)
    assert sample(registry, "agent_executions_total", agent="support-bot", status="success") == 1
    assert sample(registry, "agent_executions_total", agent="support-bot", status="timeout") == 1
    assert sample(registry, "agent_execution_duration_seconds_count", agent="support-bot") == 2
    assert sample(registry, "agent_execution_duration_seconds_sum", agent="support-bot") == pytest.approx(91.5)
    # 90 s lands in the 120 s bucket, not +Inf: buckets reach minutes
    assert sample(registry, "agent_execution_duration_seconds_bucket", agent="support-bot", le="60.0") == 1
    assert sample(registry, "agent_execution_duration_seconds_bucket", agent="support-bot", le="120.0") == 2
    assert sample(registry, "agent_credits_total", agent="support-bot") == 4
    assert sample(registry, "agent_errors_total", agent="support-bot", error_type="TimeoutError") == 1
    # tokens come from the LLM step, once (the execution's own totals are the same tokens)
    assert sample(registry, "agent_tokens_total", agent="support-bot", model="gpt-4o", type="input") == 1000
    assert sample(registry, "agent_tokens_total", agent="support-bot", model="gpt-4o", type="output") == 200
    assert sample(registry, "agent_cost_usd_total", agent="support-bot", model="gpt-4o") == pytest.approx(0.0045)
    assert sample(registry, "agent_llm_calls_total", provider="openai", model="gpt-4o", status="success") == 1
    assert sample(registry, "agent_llm_duration_seconds_count", provider="openai", model="gpt-4o") == 1
    assert sample(registry, "agent_tool_calls_total", tool="search_kb", status="error") == 1
    assert sample(registry, "agent_tool_duration_seconds_sum", tool="search_kb") == pytest.approx(0.04)


def test_tokens_on_the_execution_span_itself_and_on_adopted_steps(
    registry: CollectorRegistry, health: HealthMetrics
) -> None:
    metrics = span_metrics(registry, health)
    metrics.committed(ChangeSet(executions=[execution(input_tokens=50, output_tokens=5, model="gpt-4o")]))
    metrics.committed(
        ChangeSet(
            adopted_steps=[
                AdoptedStep("default", "t1-s1", "support-bot", "llm", "gpt-4o", "openai", 100, 10, 0.5),
                AdoptedStep("default", "t1-s1", "support-bot", "tool", None, None, 0, 0, None),
            ]
        )
    )
    assert sample(registry, "agent_tokens_total", agent="support-bot", model="gpt-4o", type="input") == 150
    assert sample(registry, "agent_tokens_total", agent="support-bot", model="gpt-4o", type="output") == 15
    assert sample(registry, "agent_cost_usd_total", agent="support-bot", model="gpt-4o") == 0.5


def test_an_orphan_llm_step_counts_its_call_but_not_yet_its_tokens(
    registry: CollectorRegistry, health: HealthMetrics
) -> None:
    """Its tokens are counted when an execution adopts it; counting them now would double count."""
    metrics = span_metrics(registry, health)
    metrics.committed(ChangeSet(steps=[step(agent_id=None, execution_id=None)]))
    assert sample(registry, "agent_llm_calls_total", provider="openai", model="gpt-4o", status="success") == 1
    assert sample(registry, "agent_tokens_total", agent="unknown", model="gpt-4o", type="input") is None


def test_exemplars_carry_the_trace_id(registry: CollectorRegistry, health: HealthMetrics) -> None:
    metrics = span_metrics(registry, health)
    metrics.committed(ChangeSet(executions=[execution(status="error", error_code="ToolError")], steps=[step()]))
    exposition = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    exemplars = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.exemplar is not None:
                exemplars[s.name] = s.exemplar.labels
    trace = {"trace_id": "0af7651916cd43dd8448eb211c80319c"}
    assert exemplars["agent_executions_total"] == trace
    assert exemplars["agent_errors_total"] == trace
    assert exemplars["agent_execution_duration_seconds_bucket"] == trace
    assert exemplars["agent_llm_duration_seconds_bucket"] == trace
    # the classic text format carries no exemplars (Prometheus asks for OpenMetrics to get them)
    assert b"trace_id" not in generate_latest(registry)


def test_each_bucket_keeps_the_exemplar_of_its_last_value(registry: CollectorRegistry, health: HealthMetrics) -> None:
    """A commit observes every row, but builds exemplars only for the last value per bucket."""
    metrics = span_metrics(registry, health)
    durations = [(40, "a"), (45, "b"), (2000, "c"), (20, "d"), (2100, "e")]  # ms: 0.05, 0.05, 2.5, 0.025, 2.5
    rows = [execution(execution_id=f"e{i}", duration=ms, trace_id=t * 32) for i, (ms, t) in enumerate(durations)]
    metrics.committed(ChangeSet(executions=rows))
    exposition = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    buckets = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == "agent_execution_duration_seconds_bucket":
                buckets[s.labels["le"]] = (s.value, s.exemplar.labels["trace_id"] if s.exemplar else None)
    assert buckets["0.025"] == (1, "d" * 32)
    assert buckets["0.05"] == (3, "b" * 32)
    assert buckets["2.5"] == (5, "e" * 32)
    assert buckets["0.01"] == (0, None)
    assert sample(registry, "agent_execution_duration_seconds_sum", agent="support-bot") == pytest.approx(4.205)


def test_a_commit_gives_the_same_series_as_observing_each_value(
    registry: CollectorRegistry, health: HealthMetrics
) -> None:
    """The histograms are filled a bucket at a time (prometheus_client's counters directly); the
    exposition must be what observing every value with ``Histogram.observe`` gives."""
    metrics = span_metrics(registry, health)
    durations = [0, 1, 10, 25, 26, 999, 1000, 60_000, 90_000, 600_000, 600_001, 10**9, 37, 37]
    rows = [execution(execution_id=f"e{i}", duration=ms, trace_id=f"{i:032x}") for i, ms in enumerate(durations)]
    metrics.committed(ChangeSet(executions=rows))
    reference = CollectorRegistry()
    histogram = Histogram(
        "agent_execution_duration_seconds", "d", ["agent"], buckets=DURATION_BUCKETS, registry=reference
    )
    for i, ms in enumerate(durations):
        histogram.labels("support-bot").observe(ms / 1000.0, exemplar={"trace_id": f"{i:032x}"})

    def series(source: CollectorRegistry) -> dict[tuple[str, str], tuple[float, str | None, float | None]]:
        out = {}
        for family in text_string_to_metric_families(generate_openmetrics(source).decode()):  # type: ignore[no-untyped-call]
            for s in family.samples:
                if s.name.startswith("agent_execution_duration_seconds") and not s.name.endswith("_created"):
                    exemplar = (s.exemplar.labels["trace_id"], s.exemplar.value) if s.exemplar else (None, None)
                    out[(s.name, s.labels.get("le", ""))] = (round(s.value, 9), *exemplar)
        return out

    got, expected = series(registry), series(reference)
    assert got == expected
    assert got[("agent_execution_duration_seconds_count", "")][0] == len(durations)


def test_duration_buckets_span_tens_of_milliseconds_to_minutes() -> None:
    assert DURATION_BUCKETS[0] <= 0.01
    assert DURATION_BUCKETS[-1] >= 300
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


def test_budgets_are_exported_only_when_set(health: HealthMetrics) -> None:
    unset = CollectorRegistry()
    span_metrics(unset, HealthMetrics(unset, "1"))
    assert sample(unset, "agent_otel_budget_cost_usd", period="day") is None
    configured = CollectorRegistry()
    span_metrics(configured, HealthMetrics(configured, "1"), daily_cost_budget_usd=25.0, daily_token_budget=10**6)
    assert sample(configured, "agent_otel_budget_cost_usd", period="day") == 25.0
    assert sample(configured, "agent_otel_budget_tokens", period="day") == 10**6


# --- label caps --------------------------------------------------------------------------------


def test_label_values_past_the_cap_fold_into_other_and_are_counted(
    registry: CollectorRegistry, health: HealthMetrics
) -> None:
    metrics = span_metrics(registry, health, max_agents=2, max_models=1)
    rows = [execution(execution_id=f"e{i}", agent_id=f"agent-{i}") for i in range(5)]
    metrics.committed(
        ChangeSet(
            executions=rows, steps=[step(agent_id="agent-0"), step(agent_id="agent-0", model="o3", span_id="2" * 16)]
        )
    )
    assert sample(registry, "agent_executions_total", agent="agent-0", status="success") == 1
    assert sample(registry, "agent_executions_total", agent="agent-1", status="success") == 1
    assert sample(registry, "agent_executions_total", agent=OTHER, status="success") == 3
    assert sample(registry, "agent_otel_label_overflow_total", label="agent") == 3
    assert sample(registry, "agent_llm_calls_total", provider="openai", model=OTHER, status="success") == 1
    assert sample(registry, "agent_otel_label_overflow_total", label="model") >= 1
    # a value admitted once stays admitted
    metrics.committed(ChangeSet(executions=[execution(execution_id="again", agent_id="agent-1")]))
    assert sample(registry, "agent_executions_total", agent="agent-1", status="success") == 2


def test_an_overflow_counts_every_row_folded_not_each_distinct_value(
    registry: CollectorRegistry, health: HealthMetrics
) -> None:
    """A commit looks each distinct value up once, yet the overflow counter counts the samples
    folded, as a lookup per row would."""
    metrics = span_metrics(registry, health, max_agents=2, max_tools=1)
    rows = [execution(execution_id=f"e{i}", agent_id=agent) for i, agent in enumerate(["a0", "a1", "a2", "a2", "a2"])]
    tools = [
        step(span_id=f"{i:016x}", kind="tool", tool_name=name) for i, name in enumerate(["search"] * 2 + ["web"] * 3)
    ]
    calls = [step(span_id=f"{i + 10:016x}", agent_id="a2") for i in range(2)]
    metrics.committed(ChangeSet(executions=rows, steps=tools + calls))
    assert sample(registry, "agent_otel_label_overflow_total", label="agent") == 3 + 2
    assert sample(registry, "agent_otel_label_overflow_total", label="tool") == 3
    assert sample(registry, "agent_executions_total", agent=OTHER, status="success") == 3
    assert sample(registry, "agent_tool_calls_total", tool=OTHER, status="success") == 3
    assert sample(registry, "agent_tool_calls_total", tool="search", status="success") == 2
    assert sample(registry, "agent_tokens_total", agent=OTHER, model="gpt-4o", type="input") == 2 * 1000


def test_label_limiter_is_bounded_under_concurrent_use(registry: CollectorRegistry, health: HealthMetrics) -> None:
    import threading

    limiter = LabelLimiter("tool", 10, health.label_overflow)
    results: list[str] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        mine = [limiter(f"tool-{offset * 100 + i}") for i in range(50)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results) - {OTHER}) == 10
    assert sample(registry, "agent_otel_label_overflow_total", label="tool") == 8 * 50 - 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, "unknown"), ("", "unknown"), ("  ", "unknown"), ("a\nb\x00c", "abc"), ("x" * 500, "x" * MAX_VALUE_LENGTH)],
)
def test_label_values_are_cleaned(raw: str | None, expected: str) -> None:
    assert clean_label_value(raw) == expected


# --- the collector's health --------------------------------------------------------------------


def test_request_refusals_and_item_refusals_are_told_apart(registry: CollectorRegistry, health: HealthMetrics) -> None:
    health.refused("http", "traces", "malformed", 1)
    health.refused("grpc", "traces", "overloaded", 1)
    health.refused("http", "traces", "timestamp_too_old", 3)
    health.refused("http", "logs", "storage_rejected", 2)
    assert (
        sample(registry, "agent_otel_requests_refused_total", transport="http", signal="traces", reason="malformed")
        == 1
    )
    assert (
        sample(registry, "agent_otel_requests_refused_total", transport="grpc", signal="traces", reason="overloaded")
        == 1
    )
    assert sample(registry, "agent_otel_spans_refused_total", transport="http", reason="timestamp_too_old") == 3
    assert sample(registry, "agent_otel_log_records_refused_total", transport="http", reason="storage_rejected") == 2
    assert sample(registry, "agent_otel_spans_refused_total", transport="http", reason="malformed") is None


def test_series_that_alerts_read_exist_at_zero(registry: CollectorRegistry, health: HealthMetrics) -> None:
    for reason in ("overloaded", "storage_unavailable", "internal", "malformed", "too_large"):
        assert reason in request_refusal_reasons()
        for transport in ("http", "grpc"):
            labels = {"transport": transport, "signal": "traces", "reason": reason}
            assert sample(registry, "agent_otel_requests_refused_total", **labels) == 0
    assert sample(registry, "agent_otel_spans_refused_total", transport="grpc", reason="storage_rejected") == 0
    for kind in ("unavailable", "write_failed", "retried"):
        assert sample(registry, "agent_otel_database_errors_total", kind=kind) == 0
    assert sample(registry, "agent_otel_spans_received_total", transport="grpc") == 0


def test_writer_and_receiver_health(registry: CollectorRegistry, health: HealthMetrics) -> None:
    health.received("http", "traces", 10)
    health.accepted("http", "traces", 8)
    health.redacted(RedactionCounts({"email": 2, "api_key": 1}))
    health.observe_commit(0.02, 8, 2)
    health.rows_written("agent_steps", 6)
    health.queue_depth(40)
    health.database_error("write_failed")
    assert sample(registry, "agent_otel_spans_received_total", transport="http") == 10
    assert sample(registry, "agent_otel_spans_accepted_total", transport="http") == 8
    assert sample(registry, "agent_otel_redactions_total", rule="email") == 2
    assert sample(registry, "agent_otel_batch_write_duration_seconds_count") == 1
    assert sample(registry, "agent_otel_batch_size_spans_sum") == 8
    assert sample(registry, "agent_otel_batch_size_requests_sum") == 2
    assert sample(registry, "agent_otel_rows_written_total", table="agent_steps") == 6
    assert sample(registry, "agent_otel_queue_depth_spans") == 40
    assert sample(registry, "agent_otel_database_errors_total", kind="write_failed") == 1
    assert sample(registry, "agent_otel_build_info", version="9.9.9", python=_python()) == 1


def _python() -> str:
    import platform

    return platform.python_version()


def test_database_up_follows_the_writer(registry: CollectorRegistry, health: HealthMetrics) -> None:
    available = [True]
    health.watch_database(lambda: available[0])
    assert sample(registry, "agent_otel_database_up") == 1
    available[0] = False
    assert sample(registry, "agent_otel_database_up") == 0
    available[0] = True  # back without a single write: the gauge must not stay at 0
    assert sample(registry, "agent_otel_database_up") == 1


# --- the real /metrics of a running collector ----------------------------------------------------


def _metrics(running: RunningCollector, openmetrics: bool = False) -> httpx.Response:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    response = httpx.get(f"{running.api}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
    return response


def _traffic(running: RunningCollector) -> list[str]:
    with sdk_provider(http_exporter(running.http_endpoint)) as tracer:
        ids = [agent_trace(tracer, user=f"user-{i}", fail_tool=i % 2 == 0)["trace_id"] for i in range(4)]
    bad = httpx.post(
        f"{running.http_endpoint}/v1/traces", content=b"\x00garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    assert bad.status_code == 400
    return ids


def test_promtool_check_metrics_passes_on_the_real_output(
    promtool: str, sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url, **{"metrics.daily_cost_budget_usd": 10.0})
    _traffic(running)
    response = _metrics(running)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.text
    for name in (
        "agent_executions_total",
        "agent_execution_duration_seconds_bucket",
        "agent_tokens_total",
        "agent_cost_usd_total",
        "agent_credits_total",
        "agent_errors_total",
        "agent_tool_calls_total",
        "agent_tool_duration_seconds_bucket",
        "agent_llm_calls_total",
        "agent_llm_duration_seconds_bucket",
        "agent_otel_spans_received_total",
        "agent_otel_requests_refused_total",
        "agent_otel_rows_written_total",
        "agent_otel_batch_write_duration_seconds_bucket",
        "agent_otel_queue_depth_spans",
        "agent_otel_rollup_backlog",
        "agent_otel_rollup_deltas_applied_total",
        "agent_otel_redactions_total",
        "agent_otel_database_errors_total",
        "agent_otel_build_info",
        "agent_otel_budget_cost_usd",
    ):
        assert f"\n{name}{{" in body or f"\n{name} " in body, f"{name} missing from /metrics"
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", "promtool lint findings"


def test_no_identifier_or_secret_reaches_a_label(
    sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url)
    _traffic(running)
    body = _metrics(running).text + _metrics(running, openmetrics=True).text
    for line in body.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        labels = line[line.index("{") + 1 : line.index("}")]
        names = {pair.split("=", 1)[0] for pair in labels.split(",") if "=" in pair}
        assert not names & set(FORBIDDEN_LABELS), line
    for planted in PLANTED:
        assert planted not in body
    assert "user-1" not in body


def test_openmetrics_exemplars_name_stored_traces(
    sqlite_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    running = collector_factory(sqlite_url)
    sent = set(_traffic(running))
    response = _metrics(running, openmetrics=True)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    exemplar_traces = {
        s.exemplar.labels["trace_id"]
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.exemplar is not None
    }
    assert exemplar_traces and exemplar_traces <= sent
    with running.engine.connect() as conn:
        stored = {row[0] for row in conn.execute(text("SELECT trace_id FROM agent_executions"))}
    assert exemplar_traces <= stored


def test_a_retried_request_is_counted_once(db_url: str, collector_factory: Callable[..., RunningCollector]) -> None:
    """Metrics come from what was inserted: an SDK retry of a committed request adds nothing."""
    running = collector_factory(db_url)
    body = encode(finished_spans(2))
    headers = {"Content-Type": "application/x-protobuf"}

    def executions() -> float:
        families = text_string_to_metric_families(_metrics(running, openmetrics=True).text)
        return sum(
            s.value for f in families if f.name == "agent_executions" for s in f.samples if s.name.endswith("_total")
        )

    for _attempt in range(3):
        assert httpx.post(f"{running.http_endpoint}/v1/traces", content=body, headers=headers).status_code == 200
    assert executions() == 2
    tokens = {"input": 0.0, "output": 0.0}
    for family in text_string_to_metric_families(_metrics(running, openmetrics=True).text):
        for s in family.samples:
            if s.name == "agent_tokens_total":
                tokens[s.labels["type"]] += s.value
    assert tokens == {"input": 2 * 2500, "output": 2 * 500}
