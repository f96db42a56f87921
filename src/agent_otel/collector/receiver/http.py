"""OTLP/HTTP adapter: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics`` onto the receiver core.

Content types ``application/x-protobuf`` and ``application/json``; ``Content-Encoding`` gzip or
deflate. Success answers in the request's content type; errors carry a ``google.rpc.Status``
body and, when retryable, ``Retry-After`` (the OTLP/HTTP specification).
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import json_format
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent_otel.collector.receiver.core import LOGS, METRICS, TRACES, ReceiverCore, response_message
from agent_otel.collector.receiver.decode import JSON, PROTOBUF
from agent_otel.collector.receiver.errors import InternalError, ReceiverError, UnsupportedMediaType

log = logging.getLogger(__name__)

PROTOBUF_TYPE = "application/x-protobuf"
JSON_TYPE = "application/json"


def _encoding_of(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF_TYPE, "application/protobuf"):
        return PROTOBUF
    if media == JSON_TYPE:
        return JSON
    raise UnsupportedMediaType(f"unsupported Content-Type {media[:60]!r}: use {PROTOBUF_TYPE} or {JSON_TYPE}")


def _render(message: Any, encoding: str, status: int, headers: dict[str, str] | None = None) -> Response:
    if encoding == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
        return Response(body, status, headers, media_type=JSON_TYPE)
    return Response(message.SerializeToString(), status, headers, media_type=PROTOBUF_TYPE)


def error_response(error: ReceiverError, encoding: str) -> Response:
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return _render(status, encoding, error.http_status, headers)


async def _read_body(request: Request, core: ReceiverCore) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit():
        core.check_size(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        core.check_size(size)  # stops reading a body far over the limit
        chunks.append(chunk)
    return b"".join(chunks)


def create_otlp_http_app(core: ReceiverCore) -> Starlette:
    def endpoint(signal: str):  # type: ignore[no-untyped-def]
        async def handle(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            reply_encoding = JSON if (content_type or "").lower().startswith(JSON_TYPE) else PROTOBUF
            try:
                encoding = _encoding_of(content_type)
                body = core.decompress(await _read_body(request, core), request.headers.get("content-encoding"))
            except ReceiverError as exc:  # refused before the core saw it: count it here
                core.metrics.refused("http", signal, exc.reason, 1)
                return error_response(exc, reply_encoding)
            try:
                outcome = await core.export(signal, body, encoding, request.headers, "http")
            except ReceiverError as exc:
                return error_response(exc, reply_encoding)
            except Exception as exc:  # a bug must not take the endpoint down, nor leak data
                log.error("unexpected %s while handling /v1/%s", type(exc).__name__, signal)
                return error_response(InternalError("internal error"), reply_encoding)
            return _render(response_message(outcome), encoding, 200)

        return handle

    routes = [Route(f"/v1/{signal}", endpoint(signal), methods=["POST"]) for signal in (TRACES, LOGS, METRICS)]
    return Starlette(routes=routes)
