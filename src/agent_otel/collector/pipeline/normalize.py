"""Normalize decoded OTLP spans and log records into sanitized records (a pure stage).

For each span: validate ids and timestamps (a bad span is rejected alone, with a reason),
read only the keys in ``conventions.READ_KEYS``, measure content keys (size and type, never the
value), classify the span (agent, LLM, tool, ...), derive status and error type, and scrub every
string kept. The span walk touches each attribute once; see issue 7 for why that matters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_otel.collector.pipeline import conventions as cv
from agent_otel.collector.pipeline.model import (
    Category,
    EventRecord,
    Feedback,
    LogRecordIn,
    NormalizedBatch,
    SpanRecord,
)
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.sanitize import RedactionCounts, text_type, type_from_mime
from agent_otel.semconv import (
    FEEDBACK_COMMENT,
    FEEDBACK_EVENT,
    FEEDBACK_FAVORITE,
    FEEDBACK_ID,
    FEEDBACK_RATING,
)

STATUS_CODE_ERROR: Final = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
MAX_TOKENS: Final = 1 << 40
MAX_DURATION_NS: Final = (2**31 - 1) * 1_000_000  # the duration column holds int32 milliseconds
_CLASS_REPR: Final = re.compile(r"^<class '([^']+)'>$")
_TIMEOUT_HINTS: Final = ("timeout", "timedout", "deadlineexceeded", "deadline_exceeded")
_CLIENT_FAILURES: Final = frozenset(
    {
        "ratelimiterror",
        "badrequesterror",
        "authenticationerror",
        "permissiondeniederror",
        "notfounderror",
        "unprocessableentityerror",
        "conflicterror",
        "contentfiltererror",
        "invalidrequesterror",
    }
)
_SEVERITY_LEVELS: Final = ((17, "error"), (13, "warn"), (9, "info"), (1, "debug"))
_EXCEPTION_KEYS: Final = frozenset({"exception.type", "exception.message", "exception.escaped"})
_FEEDBACK_KEYS: Final = frozenset({FEEDBACK_RATING, FEEDBACK_FAVORITE, FEEDBACK_COMMENT, FEEDBACK_ID})
_LOG_IDENTITY_KEYS: Final = frozenset((*cv.AGENT_NAME, *cv.AGENT_ID, *cv.USER_ID, "agent_otel.execution.id"))
_VALID_STATUSES: Final = frozenset({"success", "failed", "timeout", "error"})
_UNSEEN: Final[Any] = object()
_KEY_MEMO_SIZE: Final = 20_000
# The OpenAI SDK's APIStatusError message ("Error code: 429 - {...}"): libraries that record no
# error.type and no HTTP status (openai-agents' OpenInference spans) still carry it in the status.
_OPENAI_ERROR_CODE: Final = re.compile(r"Error code: ([1-5]\d\d)\b")
# The class the OpenAI SDK raises for each status (openai._client._make_status_error), so an error
# read from a message gets the same error type as one the library named itself.
_OPENAI_STATUS_ERRORS: Final = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}
# span events that only streaming responses produce (OpenInference; Traceloop's end in ".chunk")
_STREAMING_EVENTS: Final = frozenset({"First Token Stream Event"})
_MAX_INVOCATION_PARAMETERS: Final = 65_536

try:  # the span walk in C (``_spanscan.c``); without a C compiler, the protobuf walk in ``_read``
    from agent_otel.collector.pipeline import _spanscan
except ImportError:  # pragma: no cover - the package is built with it wherever tests run
    _spanscan = None  # type: ignore[assignment]

COMPILED_SCAN: Final = _spanscan is not None


@dataclass(frozen=True, slots=True)
class Limits:
    now_ns: int
    max_future_ns: int
    max_age_ns: int
    max_events_per_span: int


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value (arrays and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


class _Content:
    """Size and type of the content seen on one side of a span (input or output)."""

    __slots__ = ("input_size", "input_type", "output_size", "output_type")

    def __init__(self) -> None:
        self.input_size: int | None = None
        self.output_size: int | None = None
        self.input_type: str | None = None
        self.output_type: str | None = None

    def add(self, side: str, value: Any) -> None:
        size, type_ = _measure(value)
        if side == "input":
            self.input_size = (self.input_size or 0) + size
            self.input_type = self.input_type or type_
        elif side == "output":
            self.output_size = (self.output_size or 0) + size
            self.output_type = self.output_type or type_


def _varint_length(total: int) -> int:
    """Bytes of the varint length prefix in a string field of ``total`` encoded bytes."""
    width = 1
    while (total - 1 - width) >= 1 << (7 * width):
        width += 1
    return width


def _string_size(value: Any) -> int:
    """Size in bytes of a content value whose type is already known (no text decoded)."""
    if value.WhichOneof("value") == "string_value":
        total: int = value.ByteSize()
        return total - 2 if total < 130 else total - 1 - _varint_length(total)
    return _measure(value)[0]


def _measure(value: Any) -> tuple[int, str]:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        # ByteSize() is the encoded field: one tag byte and a varint length before the UTF-8
        # bytes; computing it in C avoids re-encoding the string to count its bytes.
        total = value.ByteSize()
        size = total - 2 if total < 130 else total - 1 - _varint_length(total)
        return size, text_type(value.string_value)
    if kind == "bytes_value":
        return len(value.bytes_value), "binary"
    if kind in ("array_value", "kvlist_value"):
        return value.ByteSize(), "json"
    if kind == "bool_value":
        return 1, "boolean"
    if kind is None:
        return 0, "empty"
    return len(str(getattr(value, kind))), "number"


def _first(values: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The first non-empty value among ``keys`` (log records: few attributes, no rank table)."""
    for key in keys:
        value = values.get(key)
        if value is not None and value != "" and value != []:
            return value
    return None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        return _as_str(value[0]) if value else None
    if isinstance(value, bytes):
        return None
    return str(value)


def _as_int(value: Any, maximum: int = MAX_TOKENS) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= maximum else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and 0 <= value <= maximum else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16:  # not "²": int() refuses it
        return min(int(value), maximum)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    # at most 1e12: no credit count or duration is that large, and every payment card number is
    # (13+ digits), so a card number sent in a numeric attribute is never stored as a number
    return number if math.isfinite(number) and 0 <= number < 1e12 else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return None


def normalize_error_type(raw: str) -> str:
    """``<class 'openai.InternalServerError'>``, ``openai.InternalServerError`` and
    ``InternalServerError`` all become ``InternalServerError`` (see the notes)."""
    text = raw.strip()
    match = _CLASS_REPR.match(text)
    if match:
        text = match.group(1)
    if "." in text and not text[0].isdigit():
        text = text.rsplit(".", 1)[-1]
    return text[:128] or "error"


def classify_status(is_error: bool, error_type: str | None, http_status: int | None, override: str | None) -> str:
    """``success``, ``failed`` (refused: 4xx, rate limits, bad requests), ``timeout`` or ``error``."""
    if override in _VALID_STATUSES:
        return override
    if not is_error:
        return "success"
    lowered = (error_type or "").lower()
    if http_status in (408, 504) or any(hint in lowered for hint in _TIMEOUT_HINTS):
        return "timeout"
    if (http_status is not None and 400 <= http_status < 500) or lowered in _CLIENT_FAILURES:
        return "failed"
    return "error"


def _category(found: dict[str, Any], name: str) -> Category:
    """Operation name (GenAI, then Traceloop's legacy request type), OpenInference span kind,
    Traceloop span kind, then the span name's shape.

    Runs for every span: each concept is read with one ``dict.get``, and ``_as_str`` is called
    only for a value that is not already text (found values are never empty strings)."""
    if (operation := found.get("operation")) is not None and operation.__class__ is not str:
        operation = _as_str(operation)
    by_operation = cv.OPERATION_CATEGORY.get(operation) if operation else None
    if by_operation is not None and cv.LEGACY_REQUEST_TYPE not in found:
        return by_operation
    if (oi_kind := found.get(cv.OPENINFERENCE_KIND)) is not None and oi_kind.__class__ is not str:
        oi_kind = _as_str(oi_kind)
    if oi_kind and (category := cv.OPENINFERENCE_CATEGORY.get(oi_kind.upper())) is not None:
        return category
    if (tl_kind := found.get(cv.TRACELOOP_KIND)) is not None and tl_kind.__class__ is not str:
        tl_kind = _as_str(tl_kind)
    if tl_kind and (category := cv.TRACELOOP_CATEGORY.get(tl_kind)) is not None:
        return category
    if by_operation is not None:
        return by_operation
    if (request_type := found.get(cv.LEGACY_REQUEST_TYPE)) is not None and request_type.__class__ is not str:
        request_type = _as_str(request_type)
    if request_type and (category := cv.OPERATION_CATEGORY.get(request_type)) is not None:
        return category
    if name.startswith("invoke_agent") or name.endswith(".agent"):
        return Category.AGENT
    if name.startswith("execute_tool") or name.endswith(".tool"):
        return Category.TOOL
    if "model" in found and "provider" in found:
        return Category.LLM
    return Category.OTHER


_OUR_CONCEPTS: Final = frozenset(cv.OUR_KEYS)
_MISC_CONCEPTS: Final = frozenset({"HTTP status", "user agent", "client IP (anonymised)", "intent", "feature"})


def _source(found: dict[str, Any]) -> str:
    if not _OUR_CONCEPTS.isdisjoint(found):
        return "agent_otel"
    if cv.OPENINFERENCE_KIND in found:
        return "openinference"
    if cv.TRACELOOP_KIND in found or cv.LEGACY_REQUEST_TYPE in found or cv.TRACELOOP_ENTITY in found:
        return "traceloop"
    if "operation" in found or "provider" in found:
        return "genai"
    return "otel"


def _provider_error_status(message: str, exception: EventRecord | None) -> int | None:
    """The HTTP status of a failed provider call, from the OpenAI SDK's error message (read on
    failed spans only)."""
    for text in (message, exception.message if exception is not None else ""):
        if text:
            match = _OPENAI_ERROR_CODE.search(text)
            if match:
                return int(match.group(1))
    return None


def _strip_affixes(name: str, prefix: str, suffix: str) -> str:
    if name.startswith(prefix + " "):
        return name[len(prefix) + 1 :]
    if name.endswith(suffix):
        return name[: -len(suffix)]
    return name


def _invalid(trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int, limits: Limits) -> str | None:
    """Why a span is refused on its own (ids, timestamps), or None."""
    if len(trace_id) != 16 or not any(trace_id):
        return "invalid_trace_id"
    if len(span_id) != 8 or not any(span_id):
        return "invalid_span_id"
    if parent and (len(parent) != 8 or not any(parent)):
        return "invalid_parent_span_id"
    if start == 0 or end == 0:
        return "missing_timestamp"
    if end < start:
        return "negative_duration"
    if end - start > MAX_DURATION_NS:
        return "duration_too_long"
    if start > limits.now_ns + limits.max_future_ns:
        return "timestamp_in_future"
    if start < limits.now_ns - limits.max_age_ns:
        return "timestamp_too_old"
    return None


# The concepts the C scanner reads when it builds a record itself, in the order of its ``K_*``
# constants (``_spanscan.c``, "records").
_RECIPE_KEYS: Final = (
    "operation",
    cv.LEGACY_REQUEST_TYPE,
    cv.OPENINFERENCE_KIND,
    cv.TRACELOOP_KIND,
    cv.TRACELOOP_ENTITY,
    "agent name",
    "agent id",
    "gen_ai.agent.description",
    "gen_ai.agent.version",
    "tool name",
    "user id",
    "session id",
    "workflow",
    "model",
    "provider",
    "input tokens",
    "output tokens",
    "streaming",
    "finish reason",
    cv.INVOCATION_PARAMETERS,
    "error type",
    "input.mime_type",
    "output.mime_type",
)


def _recipe() -> Any:
    """What the C scanner needs to build ``SpanRecord``s itself: the record class and every field's
    default (it fills each slot without calling the dataclass constructor), the category tables,
    the concept sets and names. Checked there: a field it sets that the record lacks fails here,
    at start-up, not on a span."""
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(SpanRecord):
        if f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, None, f.default_factory))
        else:
            fields.append((f.name, None if f.default is dataclasses.MISSING else f.default, None))
    if len(fields) != len(SpanRecord.__slots__):
        raise TypeError("SpanRecord must keep every field in __slots__")
    return _spanscan.recipe(
        {
            "record_type": SpanRecord,
            "fields": tuple(fields),
            "categories": (Category.AGENT, Category.TOOL, Category.LLM, Category.CHAIN, Category.OTHER),
            "category_maps": (cv.OPERATION_CATEGORY, cv.OPENINFERENCE_CATEGORY, cv.TRACELOOP_CATEGORY),
            "concept_sets": (_OUR_CONCEPTS, _MISC_CONCEPTS),
            "keys": _RECIPE_KEYS,
            "text_type": text_type,
        }
    )


class Normalizer:
    """Turns decoded requests into ``NormalizedBatch``es. Holds configuration only, no state.

    ``compiled``: walk spans with the C scanner when the request's protobuf bytes are given
    (the default when it is built); False keeps the protobuf-object walk (the reference)."""

    def __init__(self, sanitizer: SpanSanitizer, *, compiled: bool = True) -> None:
        self.sanitizer = sanitizer
        self._content_side = sanitizer.content_keys.side
        self._key_kinds: dict[str, tuple[str, int] | str | None] = {}
        self._scan = _spanscan.scan if compiled and _spanscan is not None else None
        self._recipe = _recipe() if self._scan is not None else None

    # -- traces ------------------------------------------------------------------------------

    def traces(
        self, request: Any, tenant_id: str, limits: Limits, counts: RedactionCounts, body: bytes | None = None
    ) -> NormalizedBatch:
        """``request`` is the decoded request; ``body``, when given, its protobuf encoding, which
        the C scanner reads instead of the request's objects (same result, a fraction of the CPU;
        it hands back None for anything it does not handle exactly like protobuf)."""
        if body is not None and self._scan is not None:
            # redactions counted while building records in C are kept apart until the scan
            # succeeds: when it declines, the object walk counts them again from the start
            scan_counts = RedactionCounts()
            scanned = self._scan(
                body,
                self._key_kinds,
                self._classify,
                text_type,
                self._recipe,
                self,
                tenant_id,
                limits.now_ns,
                limits.max_future_ns,
                limits.max_age_ns,
                scan_counts,
            )
            if scanned is not None:
                counts.update(scan_counts)
                return self._scanned(scanned, tenant_id, limits, counts)
        batch = NormalizedBatch()
        for resource_spans in request.resource_spans:
            service = self._service_name(resource_spans.resource.attributes, counts)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    batch.received += 1
                    record_or_reason = self._span(span, tenant_id, service, limits, counts)
                    if isinstance(record_or_reason, str):
                        batch.reject(record_or_reason)
                    else:
                        batch.spans.append(record_or_reason)
        return batch

    def _scanned(self, items: list[Any], tenant_id: str, limits: Limits, counts: RedactionCounts) -> NormalizedBatch:
        """The batch from the C scanner's items (see ``_spanscan.c``): records it built itself,
        ``(raw, sanitized)`` service names of the resources whose spans follow, and span tuples
        for this method to build with ``_record``."""
        batch = NormalizedBatch()
        last_service: Any = _UNSEEN
        service: str | None = None
        spans = batch.spans
        for item in items:
            if item.__class__ is SpanRecord:
                batch.received += 1
                spans.append(item)
                continue
            if len(item) == 2:
                last_service, service = item
                continue
            (
                raw_service,
                trace_id,
                span_id,
                parent,
                name,
                start,
                end,
                status_code,
                status_message,
                found,
                input_size,
                input_type,
                output_size,
                output_type,
                span_bytes,
            ) = item
            batch.received += 1
            if raw_service is not last_service:  # one object per resource: named once per resource
                last_service = raw_service
                service = self._service_value(raw_service, counts)
            reason = _invalid(trace_id, span_id, parent, start, end, limits)
            if reason is not None:
                batch.reject(reason)
                continue
            content = _Content()
            content.input_size, content.input_type = input_size, input_type
            content.output_size, content.output_type = output_size, output_type
            events = Span.FromString(span_bytes).events if span_bytes is not None else ()
            spans.append(
                self._record(
                    tenant_id,
                    service,
                    (trace_id, span_id, parent, name, start, end),
                    found,
                    content,
                    events,
                    (status_code, status_message),
                    limits,
                    counts,
                )
            )
        return batch

    def _service_name(self, attributes: Any, counts: RedactionCounts) -> str | None:
        for kv in attributes:
            if kv.key == "service.name":
                return self._service_value(any_value(kv.value), counts)
        return None

    def _service_value(self, value: Any, counts: RedactionCounts) -> str | None:
        text = _as_str(value)
        return self.sanitizer.ident(text, counts) if text else None

    def _classify(self, key: str) -> tuple[str, int] | str | None:
        """(concept, rank) for a read key, the side for a content key, None for any other key;
        memoised per key string (keys repeat across spans) up to a bound (hostile input may
        send millions of distinct keys)."""
        info: tuple[str, int] | str | None = cv.KEY_RANK.get(key) or self._content_side(key)
        if len(self._key_kinds) < _KEY_MEMO_SIZE:
            self._key_kinds[key] = info
        return info

    def _read(self, attributes: Any, content: _Content) -> dict[str, Any]:
        """One pass over a span's attributes: concept -> the value of its best-ranked key
        (empty values never win), content keys measured, everything else skipped.

        This loop runs for every attribute of every span, so it is written flat: strings and
        integers (nearly every value) are read inline rather than through ``any_value``, and a
        content value's text is only looked at for the first value of its side (its type);
        later ones are measured with ``ByteSize`` alone."""
        found: dict[str, Any] = {}
        ranks: dict[str, int] = {}
        kinds = self._key_kinds
        for kv in attributes:
            key = kv.key
            info = kinds.get(key, _UNSEEN)
            if info is _UNSEEN:
                info = self._classify(key)
            if info is None:
                continue
            if info.__class__ is str:  # a content key: "input", "output" or "other"
                if info == "input":
                    if content.input_type is None:
                        content.add(info, kv.value)
                    else:
                        content.input_size = (content.input_size or 0) + _string_size(kv.value)
                elif info == "output":
                    if content.output_type is None:
                        content.add(info, kv.value)
                    else:
                        content.output_size = (content.output_size or 0) + _string_size(kv.value)
                continue
            concept, rank = info
            if rank >= ranks.get(concept, 99):
                continue
            any_val = kv.value
            kind = any_val.WhichOneof("value")
            if kind == "string_value":
                value: Any = any_val.string_value
                if not value:
                    continue
            elif kind == "int_value":
                value = any_val.int_value
            else:
                value = any_value(any_val)
                if value is None or value == "" or value == []:
                    continue
            found[concept] = value
            ranks[concept] = rank
        return found

    def _span(
        self, span: Any, tenant_id: str, service: str | None, limits: Limits, counts: RedactionCounts
    ) -> SpanRecord | str:
        trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        reason = _invalid(trace_id, span_id, parent, start, end, limits)
        if reason is not None:
            return reason
        content = _Content()
        found = self._read(span.attributes, content)
        status = span.status
        return self._record(
            tenant_id,
            service,
            (trace_id, span_id, parent, span.name, start, end),
            found,
            content,
            span.events,
            (status.code, status.message),
            limits,
            counts,
        )

    def _record(
        self,
        tenant_id: str,
        service: str | None,
        span: tuple[bytes, bytes, bytes, str, int, int],
        found: dict[str, Any],
        content: _Content,
        events: Any,
        status: tuple[int, str],
        limits: Limits,
        counts: RedactionCounts,
    ) -> SpanRecord:
        """A valid span's record from what either walk read: ids, name and times, the found
        concepts, the content measured, the events and the status (code, message)."""
        trace_id, span_id, parent, span_name, start, end = span
        sanitizer = self.sanitizer
        raw_name = span_name or "unnamed"
        name = sanitizer.ident(raw_name, counts)
        category = _category(found, raw_name)
        workflow_span = False
        if category is Category.AGENT and "agent name" not in found and cv.OPENINFERENCE_KIND in found:
            # An OpenInference AGENT span that names no agent is a workflow wrapper (openai-agents'
            # trace root, named after RunConfig.workflow_name, above the real agent span). As a
            # chain it is still the execution when it is the root of a trace without agents (rule 2).
            category = Category.CHAIN
            workflow_span = True

        record = SpanRecord(
            tenant_id=tenant_id,
            trace_id=trace_id.hex(),
            span_id=span_id.hex(),
            parent_span_id=parent.hex() if parent else None,
            category=category,
            name=name,
            start_ns=start,
            end_ns=end,
            status="success",
            source=_source(found),
            service_name=service,
        )
        self._identity(record, found, raw_name, counts)
        if workflow_span and record.workflow_name is None:
            record.workflow_name = name
        self._llm(record, found, counts)
        self._ours(record, found, content, counts)
        exception = self._events(record, events, limits, counts) if events else None
        self._status(record, status, found, exception, counts)
        return record

    # _identity, _llm and _status run for every span. Each concept is read with one ``dict.get``;
    # ``_as_str`` runs only for a value that is not text already (found values are never empty
    # strings): most concepts are absent from most spans, and a call per lookup was a third of
    # the normalizer's time (issue 7).

    def _identity(self, record: SpanRecord, found: dict[str, Any], raw_name: str, counts: RedactionCounts) -> None:
        sanitizer = self.sanitizer
        category = record.category
        get = found.get
        if (agent_name := get("agent name")) is not None and agent_name.__class__ is not str:
            agent_name = _as_str(agent_name)
        if category is Category.AGENT and agent_name is None:
            entity = _as_str(get(cv.TRACELOOP_ENTITY))
            agent_name = entity or _strip_affixes(raw_name, "invoke_agent", ".agent")
            if agent_name in ("invoke_agent", ""):
                agent_name = record.service_name
        if agent_name:
            record.agent_name = sanitizer.ident(agent_name, counts)
        if (agent_id := get("agent id")) is not None and agent_id.__class__ is not str:
            agent_id = _as_str(agent_id)
        if agent_id:
            record.agent_id = sanitizer.ident(agent_id, counts)
        elif record.agent_name:
            record.agent_id = record.agent_name
        if category is Category.AGENT:
            description = _as_str(get("gen_ai.agent.description"))
            version = _as_str(get("gen_ai.agent.version"))
            record.agent_description = sanitizer.text(description, counts) if description else None
            record.agent_version = sanitizer.ident(version, counts) if version else None
        elif category is Category.TOOL:
            tool = _as_str(get("tool name")) or _as_str(get(cv.TRACELOOP_ENTITY))
            tool = tool or _strip_affixes(raw_name, "execute_tool", ".tool")
            record.tool_name = sanitizer.ident(tool, counts)
        if (user := get("user id")) is not None and user.__class__ is not str:
            user = _as_str(user)
        if user:
            record.user_id = sanitizer.user(user, counts)
        if (session := get("session id")) is not None and session.__class__ is not str:
            session = _as_str(session)
        if session:
            record.session_id = sanitizer.user(session, counts)
        if (workflow := get("workflow")) is not None and workflow.__class__ is not str:
            workflow = _as_str(workflow)
        if workflow:
            record.workflow_name = sanitizer.ident(workflow, counts)

    def _llm(self, record: SpanRecord, found: dict[str, Any], counts: RedactionCounts) -> None:
        sanitizer = self.sanitizer
        get = found.get
        if (operation := get("operation")) is not None and operation.__class__ is not str:
            operation = _as_str(operation)
        if not operation:
            operation = _as_str(get(cv.LEGACY_REQUEST_TYPE))
        if operation:
            record.operation = sanitizer.ident(operation, counts)
        if (model := get("model")) is not None and model.__class__ is not str:
            model = _as_str(model)
        if model:
            record.model = sanitizer.ident(model, counts)
        if (provider := get("provider")) is not None and provider.__class__ is not str:
            provider = _as_str(provider)
        if provider:
            record.provider = sanitizer.ident(provider, counts).lower()  # scrub first: rules are case-sensitive
        if (tokens := get("input tokens")) is not None:
            record.input_tokens = _as_int(tokens) or 0
        if (tokens := get("output tokens")) is not None:
            record.output_tokens = _as_int(tokens) or 0
        streaming = get("streaming")
        if streaming is not None:
            record.streaming = _as_bool(streaming)
        if (finish := get("finish reason")) is not None and finish.__class__ is not str:
            finish = _as_str(finish)
        if finish:
            record.finish_reason = sanitizer.ident(finish, counts)[:64]
        parameters = get(cv.INVOCATION_PARAMETERS)
        if parameters is not None and (record.model is None or record.streaming is None):
            self._invocation_parameters(record, parameters, counts)

    def _invocation_parameters(self, record: SpanRecord, parameters: Any, counts: RedactionCounts) -> None:
        """OpenInference's request parameters (a JSON string): only the model (failed calls carry
        no ``llm.model_name``) and the stream flag are read; the rest (openai-agents' variant
        holds the system prompt) is never kept."""
        if not isinstance(parameters, str) or len(parameters) > _MAX_INVOCATION_PARAMETERS:
            return
        try:
            decoded = orjson.loads(parameters)
        except orjson.JSONDecodeError:
            return
        if not isinstance(decoded, dict):
            return
        model = decoded.get("model")
        if record.model is None and isinstance(model, str) and 0 < len(model) <= 128:
            record.model = self.sanitizer.ident(model, counts)
        stream = decoded.get("stream")
        if record.streaming is None and isinstance(stream, bool):
            record.streaming = stream

    def _ours(self, record: SpanRecord, found: dict[str, Any], content: _Content, counts: RedactionCounts) -> None:
        # Every lookup below usually misses: test presence before converting anything.
        if not _OUR_CONCEPTS.isdisjoint(found):
            self._our_namespace(record, found, counts)
        if not _MISC_CONCEPTS.isdisjoint(found):
            self._misc(record, found, counts)
        self._sizes(record, found, content.input_size, content.input_type, content.output_size, content.output_type)

    def _misc(self, record: SpanRecord, found: dict[str, Any], counts: RedactionCounts) -> None:
        """HTTP status, user agent, client address, intent and feature (``_MISC_CONCEPTS``)."""
        sanitizer = self.sanitizer
        value = found.get("HTTP status")
        if value is not None:
            http_status = _as_int(value, 999)
            record.http_status = http_status if http_status and http_status >= 100 else None
        value = found.get("user agent")
        if value is not None and (text := _as_str(value)):
            record.user_agent = sanitizer.ident(text, counts)
        value = found.get("client IP (anonymised)")
        if value is not None and (text := _as_str(value)):
            record.ip_address = sanitizer.ip(text, counts)
        value = found.get("intent")
        if value is not None and (text := _as_str(value)):
            record.intent = sanitizer.ident(text, counts)[:128]
        value = found.get("feature")
        if value is not None and (text := _as_str(value)):
            record.feature = sanitizer.ident(text, counts)[:128]

    @staticmethod
    def _sizes(
        record: SpanRecord,
        found: dict[str, Any],
        input_size: int | None,
        input_type: str | None,
        output_size: int | None,
        output_type: str | None,
    ) -> None:
        """Sizes and types: declared by the plugin first, else measured from content attributes."""
        if record.input_size is None:
            record.input_size = input_size
        if record.output_size is None:
            record.output_size = output_size
        if record.input_type is None:
            mime = found.get("input.mime_type")
            record.input_type = type_from_mime(str(mime)) if mime is not None and record.input_size else input_type
        if record.output_type is None:
            mime = found.get("output.mime_type")
            record.output_type = type_from_mime(str(mime)) if mime is not None and record.output_size else output_type

    def _our_namespace(self, record: SpanRecord, found: dict[str, Any], counts: RedactionCounts) -> None:
        """``agent_otel.*`` keys (the plugin's): execution id, credits, timings, sizes, status."""
        sanitizer = self.sanitizer
        execution_id = _as_str(found.get("agent_otel.execution.id"))
        if execution_id:
            record.execution_id = sanitizer.execution_id(execution_id, counts)
        record.credits = _as_float(found.get("agent_otel.credits")) or 0.0
        for attr, key in (
            ("queue_time", "agent_otel.queue_time_ms"),
            ("processing_time", "agent_otel.processing_time_ms"),
            ("response_time", "agent_otel.response_time_ms"),
        ):
            number = _as_float(found.get(key))
            if number is not None and number < 2**31:
                setattr(record, attr, int(number))
        record.input_size = _as_int(found.get("agent_otel.input.size"))
        record.output_size = _as_int(found.get("agent_otel.output.size"))
        input_type = _as_str(found.get("agent_otel.input.type"))
        if input_type:
            record.input_type = sanitizer.ident(input_type, counts)[:32]
        output_type = _as_str(found.get("agent_otel.output.type"))
        if output_type:
            record.output_type = sanitizer.ident(output_type, counts)[:32]
        status = _as_str(found.get("agent_otel.execution.status"))
        if status in _VALID_STATUSES:
            record.status = status

    def _events(self, record: SpanRecord, events: Any, limits: Limits, counts: RedactionCounts) -> EventRecord | None:
        """Keep the span's events as records; returns the first exception event, if any."""
        exception: EventRecord | None = None
        if not events:
            return None
        kept = 0
        for event in events:
            name = event.name
            if name.endswith(".chunk"):  # streaming chunk events: one per token, no value kept
                if record.streaming is None:
                    record.streaming = True
                continue
            if name in _STREAMING_EVENTS and record.streaming is None:
                record.streaming = True
            if kept >= limits.max_events_per_span:
                break
            kept += 1
            kept_event = self._event(name, event, record.start_ns, limits, counts)
            record.events.append(kept_event)
            if exception is None and name == "exception":
                exception = kept_event
        return exception

    def _event(self, name: str, event: Any, default_ns: int, limits: Limits, counts: RedactionCounts) -> EventRecord:
        sanitizer = self.sanitizer
        content = _Content()
        known: dict[str, Any] = {}
        for kv in event.attributes:
            key = kv.key
            if key in _EXCEPTION_KEYS or key in _FEEDBACK_KEYS:
                known[key] = any_value(kv.value)
            else:
                side = self._content_side(key)
                if side is not None or key.endswith(("content", "message", "body")):
                    content.add(side or "input", kv.value)
        time_ns = event.time_unix_nano
        if not limits.now_ns - limits.max_age_ns <= time_ns <= limits.now_ns + limits.max_future_ns:
            time_ns = default_ns  # missing or out of range: the span's own (validated) start
        if name == "exception":
            # scrub before normalizing: normalizing keeps the part after the last '.', which can
            # cut a secret (a JWT, a token) past the point where the scrubber recognises it
            raw_exc_type = _as_str(known.get("exception.type")) or "Exception"
            exc_type = normalize_error_type(sanitizer.ident(raw_exc_type, counts))
            message = _as_str(known.get("exception.message"))
            text = f"{exc_type}: {sanitizer.text(message, counts)}" if message else exc_type
            return EventRecord(name, time_ns, "error", "error", text, {"exception_type": exc_type})
        if name == FEEDBACK_EVENT:
            return EventRecord(name, time_ns, "info", "user_action", "feedback", None, self._feedback(known, counts))
        context: dict[str, Any] | None = None
        if content.input_size is not None:
            context = {"size": content.input_size, "type": content.input_type}
        category = "llm" if name.startswith(("gen_ai.", "llm.")) else "execution"
        clean_name = sanitizer.ident(name, counts)  # the stored event_name too, not only the message
        return EventRecord(clean_name, time_ns, "info", category, clean_name, context)

    def _feedback(self, known: dict[str, Any], counts: RedactionCounts) -> Feedback:
        rating = _as_int(known.get(FEEDBACK_RATING), 5)
        comment = _as_str(known.get(FEEDBACK_COMMENT))
        feedback_id = _as_str(known.get(FEEDBACK_ID))
        return Feedback(
            rating=rating if rating and 1 <= rating <= 5 else None,
            favorite=_as_bool(known.get(FEEDBACK_FAVORITE)),
            comment=self.sanitizer.text(comment, counts) if comment else None,
            feedback_id=self.sanitizer.ident(feedback_id, counts)[:128] if feedback_id else None,
        )

    def _status(
        self,
        record: SpanRecord,
        status: tuple[int, str],
        found: dict[str, Any],
        exception: EventRecord | None,
        counts: RedactionCounts,
    ) -> None:
        code, message = status
        if (raw_type := found.get("error type")) is not None and raw_type.__class__ is not str:
            raw_type = _as_str(raw_type)
        if code != STATUS_CODE_ERROR and raw_type is None:
            return  # not an error: the status stays as set (success, or the plugin's own)
        provider_status = _provider_error_status(message, exception)
        if record.http_status is None:
            record.http_status = provider_status
        if raw_type:
            record.error_type = normalize_error_type(self.sanitizer.ident(raw_type, counts))
        elif exception is not None and exception.context:
            record.error_type = exception.context["exception_type"]
        elif provider_status is not None:
            record.error_type = _OPENAI_STATUS_ERRORS.get(provider_status, "InternalServerError")
        else:
            record.error_type = "error"
        if message:
            record.error_message = self.sanitizer.text(message, counts)
        elif exception is not None:
            record.error_message = exception.message
        record.status = classify_status(
            True, record.error_type, record.http_status, record.status if record.status != "success" else None
        )

    # -- logs --------------------------------------------------------------------------------

    def logs(
        self, request: Any, tenant_id: str, limits: Limits, counts: RedactionCounts, store_untraced: bool
    ) -> NormalizedBatch:
        batch = NormalizedBatch()
        for resource_logs in request.resource_logs:
            service = self._service_name(resource_logs.resource.attributes, counts)
            for scope_logs in resource_logs.scope_logs:
                for log in scope_logs.log_records:
                    batch.received += 1
                    result = self._log(log, tenant_id, service, limits, counts, store_untraced)
                    if isinstance(result, str):
                        if result == "ignored":
                            batch.ignored += 1
                        else:
                            batch.reject(result)
                    else:
                        batch.logs.append(result)
        return batch

    def _log(
        self,
        log: Any,
        tenant_id: str,
        service: str | None,
        limits: Limits,
        counts: RedactionCounts,
        store_untraced: bool,
    ) -> LogRecordIn | str:
        trace_id, span_id = log.trace_id, log.span_id
        if trace_id and len(trace_id) != 16:
            return "invalid_trace_id"
        if span_id and len(span_id) != 8:
            return "invalid_span_id"
        if not any(trace_id) and not store_untraced:
            return "ignored"
        time_ns = log.time_unix_nano or log.observed_time_unix_nano
        if time_ns == 0:
            return "missing_timestamp"
        if time_ns > limits.now_ns + limits.max_future_ns:
            return "timestamp_in_future"
        if time_ns < limits.now_ns - limits.max_age_ns:
            return "timestamp_too_old"
        sanitizer = self.sanitizer
        event_name = log.event_name if hasattr(log, "event_name") else ""
        known: dict[str, Any] = {}
        content = _Content()
        for kv in log.attributes:
            key = kv.key
            if key == "event.name" and not event_name:
                event_name = _as_str(any_value(kv.value)) or ""
            elif key in _FEEDBACK_KEYS or key in _EXCEPTION_KEYS or key in _LOG_IDENTITY_KEYS:
                known[key] = any_value(kv.value)
            else:
                side = self._content_side(key)
                if side is not None:
                    content.add(side, kv.value)
        agent = _as_str(_first(known, cv.AGENT_ID)) or _as_str(_first(known, cv.AGENT_NAME))
        user = _as_str(_first(known, cv.USER_ID))
        execution = _as_str(known.get("agent_otel.execution.id"))
        level = "info"
        for threshold, name in _SEVERITY_LEVELS:
            if log.severity_number >= threshold:
                level = name
                break
        else:
            if log.severity_text:
                lowered = log.severity_text.lower()
                level = "warn" if lowered.startswith("warn") else lowered if lowered in ("error", "debug") else "info"
        feedback = self._feedback(known, counts) if event_name == FEEDBACK_EVENT else None
        body_kind = log.body.WhichOneof("value")
        context: dict[str, Any] | None = None
        if event_name.startswith(("gen_ai.", "llm.")) or body_kind in ("kvlist_value", "array_value", "bytes_value"):
            # GenAI events carry prompts and completions in the body: size and type only
            size, type_ = _measure(log.body)
            context = {"size": size, "type": type_}
            message = sanitizer.ident(event_name, counts) if event_name else f"{type_} body"
        elif body_kind == "string_value":
            message = sanitizer.text(log.body.string_value, counts)
        elif event_name:
            message = sanitizer.ident(event_name, counts)
        else:
            message = ""
        if content.input_size is not None or content.output_size is not None:
            context = dict(context or {})
            context["attributes_size"] = (content.input_size or 0) + (content.output_size or 0)
        category = "user_action" if feedback else ("error" if level == "error" else "llm" if context else "execution")
        digest = hashlib.blake2b(log.SerializeToString(deterministic=True), digest_size=16).hexdigest()
        return LogRecordIn(
            tenant_id=tenant_id,
            log_id=digest,
            time_ns=time_ns,
            trace_id=trace_id.hex() if any(trace_id) else None,
            span_id=span_id.hex() if span_id and any(span_id) else None,
            level=level,
            category=category,
            event_name=sanitizer.ident(event_name, counts) if event_name else None,
            message=message,
            context=context,
            service_name=service,
            feedback=feedback,
            agent_id=sanitizer.ident(agent, counts) if agent else None,
            user_id=sanitizer.user(user, counts) if user else None,
            execution_id=sanitizer.execution_id(execution, counts) if execution else None,
        )
