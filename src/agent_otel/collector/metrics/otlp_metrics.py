"""OTLP metrics received on ``/v1/metrics``: the GenAI client metrics re-exposed on ``/metrics``.

SDKs configured with one endpoint send metrics too. ``GenAiMetricsSink`` (the receiver core's
``MetricsSink``) keeps the two GenAI client histograms of the OpenTelemetry semantic conventions
and serves them as a ``prometheus_client`` custom collector, named by the OpenTelemetry-to-
Prometheus rules (dots become underscores; the unit becomes a suffix: ``s`` -> ``_seconds``; a
unit in braces such as ``{token}`` adds nothing):

    gen_ai.client.operation.duration (s)   -> gen_ai_client_operation_duration_seconds
    gen_ai.client.token.usage ({token})    -> gen_ai_client_token_usage

The name comes from the metric's name, the semantic conventions' unit for it: Traceloop reports
its token histogram in ``token`` rather than ``{token}`` and still lands in the same family.
Every other metric is counted by name (``agent_otel_otlp_metric_points_total{metric}``, capped).

Labels are an allow-list, never the data points' own keys (Traceloop puts user and session ids
on its points): ``gen_ai_operation_name``, ``gen_ai_provider_name`` (``gen_ai.system`` on older
libraries), ``gen_ai_request_model``, ``gen_ai_response_model``, ``gen_ai_token_type`` and
``error_type`` (normalised like the span's: ``RateLimitError``). Each label's values are capped by
a ``LabelLimiter``.

Temporality: a cumulative point is turned into the increase since the previous point of the same
stream (resource, scope, metric, attributes); a restarted stream (new start time, or a count that
went down) counts in full; a delta point is an increase already. Increases from every stream that
maps to one label set are added, so the exposed histograms are monotonic sums across resources.
Bucket boundaries: a series keeps the boundaries of its first point; a point with other boundaries
(one library on the SDK's default millisecond buckets) is folded into them by counting each of its
buckets at the smallest kept boundary at or above its own upper bound (never under-counting any
``le``). Exponential histograms are counted, not re-exposed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import Counter
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from agent_otel.collector.metrics.limits import LabelLimiter
from agent_otel.collector.pipeline.normalize import any_value, normalize_error_type

AGGREGATION_TEMPORALITY_DELTA: Final = 1

# metric name -> (Prometheus family name, help)
KEPT: Final[dict[str, tuple[str, str]]] = {
    "gen_ai.client.operation.duration": (
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration reported by instrumented clients (OTLP gen_ai.client.operation.duration)",
    ),
    "gen_ai.client.token.usage": (
        "gen_ai_client_token_usage",
        "Tokens per GenAI operation reported by instrumented clients (OTLP gen_ai.client.token.usage)",
    ),
}
# Prometheus label -> the data point keys that feed it, best first
LABELS: Final[dict[str, tuple[str, ...]]] = {
    "gen_ai_operation_name": ("gen_ai.operation.name",),
    "gen_ai_provider_name": ("gen_ai.provider.name", "gen_ai.system"),
    "gen_ai_request_model": ("gen_ai.request.model",),
    "gen_ai_response_model": ("gen_ai.response.model",),
    "gen_ai_token_type": ("gen_ai.token.type",),
    "error_type": ("error.type",),
}
LABEL_NAMES: Final = tuple(LABELS)
_LIMIT_KIND: Final = {
    "gen_ai_operation_name": "otlp_operation",
    "gen_ai_provider_name": "otlp_provider",
    "gen_ai_request_model": "otlp_model",
    "gen_ai_response_model": "otlp_model",
    "gen_ai_token_type": "otlp_token_type",
    "error_type": "otlp_error_type",
}
_KEYS: Final = frozenset(key for keys in LABELS.values() for key in keys)


@dataclass
class _Series:
    """One exposed histogram series: boundaries, per-bucket counts (len(bounds)+1), sum."""

    bounds: tuple[float, ...]
    buckets: list[float]
    total: float = 0.0

    def add(self, bounds: tuple[float, ...], buckets: Iterable[float], total: float) -> None:
        if bounds == self.bounds:
            for i, value in enumerate(buckets):
                self.buckets[i] += value
        else:
            upper = [*bounds, float("inf")]
            for bound, value in zip(upper, buckets, strict=False):
                self.buckets[bisect.bisect_left(self.bounds, bound)] += value
        self.total += total


@dataclass
class _Stream:
    """The last cumulative point of one OTLP stream."""

    start: int
    count: int
    total: float
    buckets: tuple[int, ...]


@dataclass
class SinkLimits:
    max_streams: int = 10_000
    max_metric_names: int = 200
    max_label_values: dict[str, int] = field(
        default_factory=lambda: {
            "otlp_operation": 50,
            "otlp_provider": 50,
            "otlp_model": 100,
            "otlp_token_type": 10,
            "otlp_error_type": 100,
        }
    )


class GenAiMetricsSink(Collector):
    """Receives OTLP metrics requests (``accept``) and exposes the kept ones (``collect``)."""

    def __init__(self, overflow: Counter, limits: SinkLimits | None = None, registry: Any = None) -> None:
        self.limits = limits or SinkLimits()
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[str, ...]], _Series] = {}
        self._streams: dict[tuple[Any, ...], _Stream] = {}
        self.streams_dropped = 0
        self._limiters = {kind: LabelLimiter(kind, cap, overflow) for kind, cap in self.limits.max_label_values.items()}
        self._names = LabelLimiter("otlp_metric", self.limits.max_metric_names, overflow)
        self.points = Counter(
            "agent_otel_otlp_metric_points",
            "OTLP metric data points received on /v1/metrics, by metric name (capped)",
            ["metric"],
            registry=registry,
        )

    # -- MetricsSink ---------------------------------------------------------------------------

    def accept(self, request: Any, tenant: str) -> tuple[int, int]:
        received = 0
        counted: dict[str, int] = {}
        with self._lock:
            for resource_metrics in request.resource_metrics:
                resource = resource_metrics.resource.SerializeToString(deterministic=True)
                for scope_metrics in resource_metrics.scope_metrics:
                    scope = (scope_metrics.scope.name, scope_metrics.scope.version)
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        if kind is None:
                            continue
                        data = getattr(metric, kind)
                        points = len(data.data_points)
                        received += points
                        counted[metric.name] = counted.get(metric.name, 0) + points
                        if kind == "histogram" and metric.name in KEPT:
                            delta = data.aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA
                            for point in data.data_points:
                                self._histogram_point(tenant, resource, scope, metric.name, point, delta)
        for name, points in counted.items():
            self.points.labels(self._names(name)).inc(points)
        return received, 0

    def _labels(self, point: Any) -> tuple[str, ...]:
        found: dict[str, Any] = {}
        for kv in point.attributes:
            if kv.key in _KEYS:
                found[kv.key] = any_value(kv.value)
        values: list[str] = []
        for label, keys in LABELS.items():
            raw = next((found[k] for k in keys if found.get(k) not in (None, "")), None)
            if raw is None:
                values.append("")
                continue
            text = str(raw)
            if label == "error_type":
                text = normalize_error_type(text)
            values.append(self._limiters[_LIMIT_KIND[label]](text))
        return tuple(values)

    def _histogram_point(
        self, tenant: str, resource: bytes, scope: tuple[str, str], name: str, point: Any, delta: bool
    ) -> None:
        bounds = tuple(point.explicit_bounds)
        buckets = tuple(point.bucket_counts)
        if len(buckets) != len(bounds) + 1:
            return  # malformed: bucket counts must be one more than the boundaries
        count, total = point.count, point.sum
        if not delta:
            key = (tenant, resource, scope, name, _attrs(point))
            last = self._streams.get(key)
            if last is None and len(self._streams) >= self.limits.max_streams:
                self.streams_dropped += 1
                return
            self._streams[key] = _Stream(point.start_time_unix_nano, count, total, buckets)
            if last is not None and last.start == point.start_time_unix_nano and count >= last.count:
                buckets = tuple(b - a for a, b in zip(last.buckets, buckets, strict=False))
                total -= last.total
                count -= last.count
            if count == 0:
                return
        series_key = (name, self._labels(point))
        series = self._series.get(series_key)
        if series is None:
            series = _Series(bounds, [0.0] * (len(bounds) + 1))
            self._series[series_key] = series
        series.add(bounds, buckets, total)

    # -- prometheus_client Collector -------------------------------------------------------------

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            snapshot = [
                (name, labels, series.bounds, list(series.buckets), series.total)
                for (name, labels), series in sorted(self._series.items())
            ]
        families: dict[str, HistogramMetricFamily] = {}
        for name, labels, bounds, buckets, total in snapshot:
            family_name, help_text = KEPT[name]
            family = families.get(name)
            if family is None:
                family = families[name] = HistogramMetricFamily(family_name, help_text, labels=LABEL_NAMES)
            cumulative, running = [], 0.0
            for bound, value in zip([*bounds, float("inf")], buckets, strict=True):
                running += value
                cumulative.append((_le(bound), running))
            family.add_metric(list(labels), cumulative, total)
        yield from families.values()

    def describe(self) -> Iterator[HistogramMetricFamily]:
        return iter(())


def _attrs(point: Any) -> bytes:
    """A stream's identity: its attributes, serialised in key order."""
    return b"\x00".join(kv.SerializeToString(deterministic=True) for kv in sorted(point.attributes, key=_key))


def _key(kv: Any) -> str:
    return str(kv.key)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
