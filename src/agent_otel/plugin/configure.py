"""``agent_otel.configure``: a TracerProvider, the OTLP exporter and agent-otel's processors.

The plugin runs in the agent's process, not the collector's, so it does not use the collector's
``Settings``: its options come from the arguments, else from the standard ``OTEL_*`` variables
(read here and by the SDK's own exporters and ``Resource``), plus one of ours,
``AGENT_OTEL_CAPTURE_CONTENT``. ``PluginOptions.resolve`` is the only place that reads them.

Calling ``configure`` twice is safe: the second call returns the provider the first installed.
With ``set_global`` (the default) the provider becomes the global one, so auto-instrumentation
libraries (openai-v2, OpenInference, Traceloop...) send their spans through the same sanitizing
processor.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from agent_otel import semconv as sc
from agent_otel.plugin.processor import CountingSpanExporter, PluginStats, SanitizingSpanProcessor

log = logging.getLogger("agent_otel.plugin")

_TRUE = frozenset({"1", "true", "yes", "on"})
_CONTEXT_KEYS = (sc.USER_ID, sc.SESSION_ID)
PROTOCOLS = frozenset({"http/protobuf", "grpc"})


class ContextAttributesProcessor(SpanProcessor):
    """Copies the user and session from W3C baggage onto every span as it starts, so they are on
    every span beneath ``user_context`` (the plugin's and auto-instrumentation's alike). For
    providers built by hand; ``configure`` has ``SanitizingSpanProcessor`` do the same, cheaper."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            entries = baggage.get_all(parent_context)
            if entries:
                for key in _CONTEXT_KEYS:
                    value = entries.get(key)
                    if value is not None:
                        span.set_attribute(key, str(value))
        except Exception:  # never into the application
            return

    def on_end(self, span: ReadableSpan) -> None:
        pass


@dataclass(frozen=True)
class PluginOptions:
    """Resolved options of the plugin (arguments win over the environment)."""

    protocol: str
    endpoint: str | None
    headers: dict[str, str] | None
    timeout: float
    capture_content: bool
    service_name: str | None
    metrics: bool

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        service_name: str | None = None,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        capture_content: bool | None = None,
        metrics: bool | None = None,
    ) -> PluginOptions:
        env = os.environ if environ is None else environ
        protocol = (
            protocol
            or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol not in PROTOCOLS:
            raise ValueError(f"unsupported OTLP protocol {protocol[:40]!r}: use 'http/protobuf' or 'grpc'")
        if capture_content is None:
            capture_content = env.get("AGENT_OTEL_CAPTURE_CONTENT", "").strip().lower() in _TRUE
        if metrics is None:
            metrics = env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() == "otlp"
        if timeout is None:
            raw = env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
            try:
                timeout = float(raw) / 1000.0 if raw else 10.0  # the variables are in milliseconds
            except ValueError:
                raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds, not {str(raw)[:20]!r}") from None
        return cls(protocol, endpoint, headers, timeout, capture_content, service_name, metrics)


_lock = threading.Lock()
_installed: TracerProvider | None = None
_meter_provider: Any = None
_options: PluginOptions | None = None
STATS = PluginStats()


def capture_content_enabled() -> bool:
    return _options is not None and _options.capture_content


def _exporter(options: PluginOptions) -> SpanExporter:
    if options.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = options.endpoint
        insecure = None if endpoint is None else endpoint.startswith("http://") or "://" not in endpoint
        return GrpcExporter(endpoint=endpoint, headers=options.headers, timeout=options.timeout, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    endpoint = options.endpoint
    if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=options.headers, timeout=options.timeout)


def _install_metrics(options: PluginOptions, resource: Resource) -> Any:
    """GenAI client metrics (no content, no user ids from our API) to the same collector."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if options.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        exporter: Any = GrpcMetrics(endpoint=options.endpoint, headers=options.headers, timeout=options.timeout)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        endpoint = options.endpoint
        if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/metrics"):
            endpoint = endpoint.rstrip("/").removesuffix("/v1/traces") + "/v1/metrics"
        exporter = HttpMetrics(endpoint=endpoint, headers=options.headers, timeout=options.timeout)
    provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)])
    metrics.set_meter_provider(provider)
    return provider


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: dict[str, str] | None = None,
    capture_content: bool | None = None,
    resource_attributes: dict[str, Any] | None = None,
    exporter: SpanExporter | None = None,
    timeout: float | None = None,
    metrics: bool | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Install (once) a TracerProvider exporting sanitized spans over OTLP.

    ``endpoint`` is the collector's OTLP/HTTP base URL (``http://127.0.0.1:4318``) or, with
    ``protocol="grpc"``, its gRPC address; unset, the SDK reads ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    ``exporter`` replaces the OTLP exporter (tests, benchmarks). ``capture_content`` keeps prompts
    and completions (secrets redacted); off by default. Raises ``ValueError`` for an unknown
    protocol; never raises because the collector is unreachable.
    """
    global _installed, _meter_provider, _options
    with _lock:
        if _installed is not None:
            return _installed
        options = PluginOptions.resolve(
            service_name=service_name,
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            timeout=timeout,
            capture_content=capture_content,
            metrics=False if exporter is not None and metrics is None else metrics,
        )
        attributes = dict(resource_attributes or {})
        if service_name:
            attributes["service.name"] = service_name
        resource = Resource.create(attributes)
        provider = TracerProvider(resource=resource)
        span_exporter = CountingSpanExporter(exporter or _exporter(options), STATS)
        provider.add_span_processor(
            SanitizingSpanProcessor(
                BatchSpanProcessor(span_exporter),
                capture_content=options.capture_content,
                stats=STATS,
                baggage_keys=_CONTEXT_KEYS,
            )
        )
        if set_global:
            trace.set_tracer_provider(provider)
            if options.metrics:
                try:
                    _meter_provider = _install_metrics(options, resource)
                except Exception as exc:  # metrics are a bonus: never fail configure for them
                    log.warning("agent-otel could not set up metrics export: %s", type(exc).__name__)
        _installed = provider
        _options = options
        return provider


def installed() -> TracerProvider | None:
    return _installed


def shutdown() -> None:
    """Flush and stop what ``configure`` installed (safe to call when nothing was)."""
    global _installed, _meter_provider, _options
    with _lock:
        if _installed is not None:
            _installed.force_flush()
            _installed.shutdown()
            _installed = None
        if _meter_provider is not None:
            _meter_provider.shutdown()
            _meter_provider = None
        _options = None


def stats() -> dict[str, Any]:
    """The plugin's own counters: exported and failed spans, dropped spans, redactions."""
    return STATS.snapshot()
