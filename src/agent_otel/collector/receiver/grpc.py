"""OTLP/gRPC adapter: TraceService, LogsService and MetricsService ``Export`` onto the core.

Handlers take the raw request bytes (the core decodes once); errors become gRPC status codes
with ``RetryInfo`` in the trailers for retryable ones (both the standard
``grpc-status-details-bin`` and the ``google.rpc.retryinfo-bin`` key the Python SDK reads).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from agent_otel.collector.receiver.core import LOGS, METRICS, TRACES, ReceiverCore, response_message
from agent_otel.collector.receiver.decode import PROTOBUF
from agent_otel.collector.receiver.errors import InternalError, ReceiverError

log = logging.getLogger(__name__)

SERVICES = {
    TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _trailers(error: ReceiverError) -> tuple[tuple[str, bytes], ...]:
    if not error.retry_after:
        return ()
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after))
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message)
    status.details.add().Pack(retry)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry.SerializeToString()),
    )


def _handler(core: ReceiverCore, signal: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            core.check_size(len(request))
            metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
            outcome = await core.export(signal, request, PROTOBUF, metadata, "grpc")
        except ReceiverError as exc:
            error: ReceiverError = exc
        except Exception as exc:  # a bug must not take the service down, nor leak data
            log.error("unexpected %s while handling gRPC %s export", type(exc).__name__, signal)
            error = InternalError("internal error")
        else:
            return bytes(response_message(outcome).SerializeToString())
        context.set_trailing_metadata(_trailers(error))
        await context.abort(error.grpc_code, error.message)
        raise AssertionError("abort returns by raising")

    return export


def add_otlp_services(server: grpc.aio.Server, core: ReceiverCore) -> None:
    for signal, service in SERVICES.items():
        handler = grpc.unary_unary_rpc_method_handler(_handler(core, signal))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
