"""Pure decoding of OTLP request bodies: gzip, protobuf and OTLP/JSON.

OTLP/JSON differs from protobuf's canonical JSON mapping: trace and span ids are hex strings,
not base64. ``_fix_ids`` rewrites them before ``ParseDict``. Unknown fields are ignored, as the
OTLP specification requires of receivers.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent_otel.collector.receiver.errors import MalformedRequest, PayloadTooLarge

M = TypeVar("M", bound=Message)

PROTOBUF: Final = "protobuf"
JSON: Final = "json"
_ID_FIELDS: Final = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_MAX_JSON_DEPTH: Final = 64


def _decompress(body: bytes, limit: int, wbits: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedRequest(f"body is not valid {name}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise MalformedRequest(f"{name} body is truncated")
    return out


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes; a body that inflates further is refused (gzip bombs)."""
    return _decompress(body, limit, 16 + zlib.MAX_WBITS, "gzip")


def inflate(body: bytes, limit: int) -> bytes:
    """HTTP ``deflate``: zlib-wrapped by the standard, raw deflate from some clients."""
    if body[:1] == b"\x78":
        return _decompress(body, limit, zlib.MAX_WBITS, "deflate")
    return _decompress(body, limit, -zlib.MAX_WBITS, "deflate")


def _hex_to_b64(value: Any, field: str) -> Any:
    if not isinstance(value, str) or not value:
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedRequest(f"{field} must be a hex string") from None
    return base64.b64encode(raw).decode("ascii")


def _valid_text(value: str) -> str:
    """Protobuf refuses strings that are not valid UTF-8 (lone surrogates from JSON escapes)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _fix_ids(node: Any, depth: int = 0) -> None:
    """Hex ids to base64, and invalid UTF-8 text repaired, in place, in one walk."""
    if depth > _MAX_JSON_DEPTH:
        raise MalformedRequest(f"JSON nesting deeper than {_MAX_JSON_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS:
                node[key] = _hex_to_b64(value, key)
            elif isinstance(value, dict | list):
                _fix_ids(value, depth + 1)
            elif isinstance(value, str):
                node[key] = _valid_text(value)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                _fix_ids(item, depth + 1)
            elif isinstance(item, str):
                node[index] = _valid_text(item)


def _parse(cls: type[M], body: bytes, encoding: str) -> M:
    if encoding == PROTOBUF:
        try:
            return cast(M, cls.FromString(body))
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise MalformedRequest(f"body is not a valid {cls.__name__} protobuf message") from exc
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses lone surrogate escapes ("\ud800"), which JSON's grammar allows; the
        # standard parser takes them and the sanitizer repairs the text, so the span is kept
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise MalformedRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedRequest(f"JSON body must be an object ({cls.__name__})")
    _fix_ids(data)
    message = cls()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True, max_recursion_depth=_MAX_JSON_DEPTH)
    except (json_format.ParseError, ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise MalformedRequest(f"JSON body is not a valid OTLP {cls.__name__}: {_short(exc)}") from None
    return cast(M, message)


def _short(exc: BaseException) -> str:
    """The field json_format complained about, without the offending value (it may be a secret)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(":", 1)[0][:120]


def decode_traces(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    return _parse(ExportTraceServiceRequest, body, encoding)


def decode_logs(body: bytes, encoding: str) -> ExportLogsServiceRequest:
    return _parse(ExportLogsServiceRequest, body, encoding)


def decode_metrics(body: bytes, encoding: str) -> ExportMetricsServiceRequest:
    return _parse(ExportMetricsServiceRequest, body, encoding)


DECODERS: Final[dict[str, Callable[[bytes, str], Message]]] = {
    "traces": decode_traces,
    "logs": decode_logs,
    "metrics": decode_metrics,
}
