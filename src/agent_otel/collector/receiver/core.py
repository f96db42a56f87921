"""The one receiver core that both transports call: bytes in, an export outcome out.

    body -> size limit -> decompress -> decode -> authenticate -> normalize + sanitize -> price
         -> group-commit writer (waits for the commit) -> outcome (rejected counts and reasons)

The HTTP and gRPC adapters only translate transport details (headers, content types, status
codes); neither walks spans. Errors are ``ReceiverError``s (see ``errors.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from agent_otel.collector.pipeline.model import NormalizedBatch
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.receiver.decode import DECODERS, PROTOBUF, gunzip, inflate
from agent_otel.collector.receiver.errors import PayloadTooLarge, ReceiverError, UnsupportedMediaType
from agent_otel.collector.storage.writer import GroupCommitWriter
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import Settings

log = logging.getLogger(__name__)

TRACES: Final = "traces"
LOGS: Final = "logs"
METRICS: Final = "metrics"
SIGNALS: Final = (TRACES, LOGS, METRICS)


@dataclass(slots=True)
class ExportOutcome:
    signal: str
    received: int
    rejected: int
    message: str = ""


class Authenticator(Protocol):
    """Maps request headers (HTTP) or metadata (gRPC) to a tenant, or raises."""

    def tenant_for(self, headers: Mapping[str, str]) -> str: ...


class DefaultTenant:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def tenant_for(self, headers: Mapping[str, str]) -> str:
        return self.tenant


class Pricer(Protocol):
    def apply(self, batch: NormalizedBatch) -> None: ...


class MetricsSink(Protocol):
    """Receives OTLP metrics requests; returns how many data points it rejected."""

    def accept(self, request: Any, tenant: str) -> tuple[int, int]: ...


class ReceiverMetrics(Protocol):
    def received(self, transport: str, signal: str, count: int) -> None: ...
    def accepted(self, transport: str, signal: str, count: int) -> None: ...
    def refused(self, transport: str, signal: str, reason: str, count: int) -> None: ...
    def redacted(self, counts: RedactionCounts) -> None: ...


class _NoReceiverMetrics:
    def received(self, transport: str, signal: str, count: int) -> None:
        pass

    def accepted(self, transport: str, signal: str, count: int) -> None:
        pass

    def refused(self, transport: str, signal: str, reason: str, count: int) -> None:
        pass

    def redacted(self, counts: RedactionCounts) -> None:
        pass


class _CountingMetricsSink:
    """Accepts OTLP metrics (so SDKs with one endpoint see no errors) and counts data points."""

    def accept(self, request: Any, tenant: str) -> tuple[int, int]:
        points = 0
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        points += len(getattr(metric, kind).data_points)
        return points, 0


def _describe_rejections(rejected: Mapping[str, int]) -> str:
    return "rejected: " + ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(rejected.items()))


class ReceiverCore:
    def __init__(
        self,
        settings: Settings,
        normalizer: Normalizer,
        writer: GroupCommitWriter,
        *,
        authenticator: Authenticator | None = None,
        pricer: Pricer | None = None,
        metrics_sink: MetricsSink | None = None,
        metrics: ReceiverMetrics | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.normalizer = normalizer
        self.writer = writer
        self.authenticator: Authenticator = authenticator or DefaultTenant(settings.default_tenant)
        self.pricer = pricer
        self.metrics_sink: MetricsSink = metrics_sink or _CountingMetricsSink()
        self.metrics: ReceiverMetrics = metrics or _NoReceiverMetrics()
        self.clock = clock

    def check_size(self, size: int) -> None:
        limit = self.settings.ingest.max_body_bytes
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes")

    def decompress(self, body: bytes, encoding: str | None) -> bytes:
        name = (encoding or "identity").strip().lower()
        limit = self.settings.ingest.max_decompressed_bytes
        if name in ("", "identity", "none"):
            return body
        if name in ("gzip", "x-gzip"):
            return gunzip(body, limit)
        if name == "deflate":
            return inflate(body, limit)
        raise UnsupportedMediaType(f"unsupported Content-Encoding {name[:40]!r}: use gzip, deflate or none")

    def _limits(self) -> Limits:
        ingest = self.settings.ingest
        return Limits(
            now_ns=self.clock(),
            max_future_ns=int(ingest.max_future_skew_seconds * 1e9),
            max_age_ns=int(ingest.max_past_age_days * 86_400e9),
            max_events_per_span=ingest.max_events_per_span,
        )

    async def export(
        self, signal: str, body: bytes, encoding: str, headers: Mapping[str, str], transport: str
    ) -> ExportOutcome:
        """Decode, sanitize and commit one OTLP request. Raises ``ReceiverError``."""
        try:
            return await self._export(signal, body, encoding, headers, transport)
        except ReceiverError as exc:
            self.metrics.refused(transport, signal, exc.reason, 1)
            raise

    async def _export(
        self, signal: str, body: bytes, encoding: str, headers: Mapping[str, str], transport: str
    ) -> ExportOutcome:
        tenant = self.authenticator.tenant_for(headers)
        request = DECODERS[signal](body, encoding)
        if signal == METRICS:
            points, refused_points = self.metrics_sink.accept(request, tenant)
            self.metrics.received(transport, signal, points)
            self.metrics.accepted(transport, signal, points - refused_points)
            return ExportOutcome(signal, points, refused_points)
        counts: RedactionCounts = RedactionCounts()
        if signal == TRACES:
            # the protobuf bytes too: the normalizer's C scanner reads them (the request has been
            # parsed, so they are valid); OTLP/JSON requests are walked as objects
            raw = body if encoding == PROTOBUF else None
            batch = self.normalizer.traces(request, tenant, self._limits(), counts, raw)
        else:
            batch = self.normalizer.logs(
                request, tenant, self._limits(), counts, self.settings.ingest.store_untraced_logs
            )
        self.metrics.received(transport, signal, batch.received)
        if counts:
            self.metrics.redacted(counts)
        if self.pricer is not None and batch.spans:
            self.pricer.apply(batch)
        # The decoded request (its protobuf arena is a few times the body) is not needed while the
        # batch waits for its commit, which takes about a second at full load: holding it that long
        # for every request in flight was memory for nothing (issue 7's memory target).
        del request
        result = await self.writer.write(batch)
        rejected = dict(batch.rejected)
        for reason, count in result.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        total_rejected = sum(rejected.values())
        for reason, count in rejected.items():
            self.metrics.refused(transport, signal, reason, count)
        self.metrics.accepted(transport, signal, batch.received - total_rejected)
        message = _describe_rejections(rejected) if rejected else ""
        return ExportOutcome(signal, batch.received, total_rejected, message)


def response_message(outcome: ExportOutcome) -> Any:
    """The OTLP Export*ServiceResponse for an outcome, with ``partial_success`` when needed."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

    if outcome.signal == TRACES:
        response: Any = trace_pb.ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
    elif outcome.signal == LOGS:
        response = logs_pb.ExportLogsServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_log_records = outcome.rejected
    else:
        response = metrics_pb.ExportMetricsServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_data_points = outcome.rejected
    if outcome.rejected and outcome.message:
        response.partial_success.error_message = outcome.message
    return response
