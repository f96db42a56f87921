"""OTLP metrics captured from real libraries, re-exposed on /metrics under the
OpenTelemetry-to-Prometheus names, with an allow-list of labels (never user or session ids),
cumulative and delta temporality, and everything else counted by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from agent_otel.collector.metrics.otlp_metrics import GenAiMetricsSink, SinkLimits
from tests.conftest import RunningCollector

FIXTURES = Path(__file__).parents[1] / "testdata" / "otlp"
DURATION = "gen_ai_client_operation_duration_seconds"
TOKENS = "gen_ai_client_token_usage"


def post_metrics(collector: RunningCollector, body: bytes) -> None:
    response = httpx.post(
        f"{collector.http_endpoint}/v1/metrics", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text


def samples(text: str, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], sample: str, **labels: str) -> float:
    return sum(v for (name, lbls), v in found.items() if name == sample and labels.items() <= dict(lbls).items())


def test_fixture_metrics_are_reexposed(sqlite_url: str, collector_factory: Callable[..., RunningCollector]) -> None:
    collector = collector_factory(sqlite_url)
    openai_v2 = (FIXTURES / "openai-v2/tool_call/002-metrics.binpb").read_bytes()
    traceloop = (FIXTURES / "traceloop/tool_call/002-metrics.binpb").read_bytes()
    post_metrics(collector, openai_v2)
    post_metrics(collector, traceloop)
    post_metrics(collector, openai_v2)  # the same cumulative points again: no increase
    text = httpx.get(f"{collector.api}/metrics").text

    assert "user-8841" not in text and "sess-2f6c1a9e" not in text and "weather-workflow" not in text
    durations = samples(text, DURATION)
    chat = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai"}
    # openai-v2: 2 chat calls (request and response model); Traceloop: 2 chat calls (response model only)
    assert value(durations, f"{DURATION}_count", gen_ai_request_model="gpt-4o-mini", **chat) == 2
    assert value(durations, f"{DURATION}_count", gen_ai_response_model="gpt-4o-mini-2024-07-18", **chat) == 4
    assert value(durations, f"{DURATION}_count", gen_ai_operation_name="execute_tool") == 1
    assert value(durations, f"{DURATION}_bucket", le="+Inf", **chat) == 4
    tokens = samples(text, TOKENS)
    assert value(tokens, f"{TOKENS}_sum", gen_ai_operation_name="chat", gen_ai_token_type="input") == 144 * 2
    assert value(tokens, f"{TOKENS}_sum", gen_ai_operation_name="chat", gen_ai_token_type="output") == 39 * 2
    labels = {name for (_, lbls) in {**durations, **tokens} for name, _ in lbls}
    assert labels <= {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "gen_ai_token_type",
        "error_type",
        "le",
    }
    counted = samples(text, "agent_otel_otlp_metric_points")
    assert value(counted, "agent_otel_otlp_metric_points_total", metric="gen_ai.client.generation.choices") == 3
    assert value(counted, "agent_otel_otlp_metric_points_total", metric="gen_ai.client.operation.duration") == 3 + 1 + 3


def test_error_type_is_normalised(sqlite_url: str, collector_factory: Callable[..., RunningCollector]) -> None:
    collector = collector_factory(sqlite_url)
    post_metrics(collector, (FIXTURES / "openai-v2/error_500/002-metrics.binpb").read_bytes())
    post_metrics(collector, (FIXTURES / "traceloop/error_500/002-metrics.binpb").read_bytes())
    durations = samples(httpx.get(f"{collector.api}/metrics").text, DURATION)
    # openai-v2: the chat call ("<class 'openai.InternalServerError'>") and its invoke_agent span
    # ("openai.InternalServerError"); Traceloop: the chat call ("InternalServerError", its only label)
    assert value(durations, f"{DURATION}_count", error_type="InternalServerError") == 3
    assert value(durations, f"{DURATION}_count", error_type="InternalServerError", gen_ai_operation_name="chat") == 1


def _histogram_request(
    temporality: int, count: int, total: float, start: int, bounds: list[float], buckets: list[int], user: str = "u-1"
) -> ExportMetricsServiceRequest:
    point = metrics_pb2.HistogramDataPoint(
        start_time_unix_nano=start,
        time_unix_nano=start + 1,
        count=count,
        sum=total,
        explicit_bounds=bounds,
        bucket_counts=buckets,
    )
    for key, text in (("gen_ai.operation.name", "chat"), ("gen_ai.system", "anthropic"), ("user.id", user)):
        kv = point.attributes.add()
        kv.key, kv.value.string_value = key, text
    metric = metrics_pb2.Metric(name="gen_ai.client.operation.duration", unit="s")
    metric.histogram.aggregation_temporality = temporality
    metric.histogram.data_points.append(point)
    request = ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.append(metric)
    return request


def _sink() -> tuple[GenAiMetricsSink, CollectorRegistry]:
    registry = CollectorRegistry()
    overflow = Counter("overflow", "label overflow", ["label"], registry=registry)
    sink = GenAiMetricsSink(
        overflow, SinkLimits(max_label_values={**SinkLimits().max_label_values, "otlp_provider": 1})
    )
    registry.register(sink)
    return sink, registry


def _count(registry: CollectorRegistry, **labels: str) -> float:
    return sum(
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == f"{DURATION}_count" and labels.items() <= s.labels.items()
    )


def test_delta_points_add_and_cumulative_points_count_increases() -> None:
    sink, registry = _sink()
    delta, cumulative = 1, 2
    for _ in range(2):
        assert sink.accept(_histogram_request(delta, 3, 1.5, 100, [1.0], [2, 1]), "t") == (1, 0)
    assert _count(registry, gen_ai_provider_name="anthropic") == 6
    sink.accept(_histogram_request(cumulative, 4, 2.0, 500, [1.0], [3, 1], user="u-2"), "t")
    sink.accept(_histogram_request(cumulative, 5, 2.5, 500, [1.0], [3, 2], user="u-2"), "t")  # +1
    assert _count(registry) == 6 + 4 + 1
    sink.accept(_histogram_request(cumulative, 2, 0.5, 900, [1.0], [2, 0], user="u-2"), "t")  # restarted stream
    assert _count(registry) == 13
    # other boundaries fold into the series' own: nothing lost at +Inf
    sink.accept(_histogram_request(delta, 2, 9.0, 100, [0.5, 5.0], [1, 0, 1]), "t")
    assert _count(registry) == 15
    assert "u-1" not in repr([s for f in registry.collect() for s in f.samples])


def test_label_values_are_capped() -> None:
    sink, registry = _sink()
    sink.accept(_histogram_request(1, 1, 0.1, 1, [1.0], [1, 0]), "t")
    other = _histogram_request(1, 1, 0.1, 1, [1.0], [1, 0])
    point = other.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
    for kv in point.attributes:
        if kv.key == "gen_ai.system":
            kv.value.string_value = "someone-else"
    sink.accept(other, "t")
    assert _count(registry, gen_ai_provider_name="anthropic") == 1
    assert _count(registry, gen_ai_provider_name="__other__") == 1
