"""What leaves the agent's process: a sanitizing span processor and a counting exporter.

``SanitizingSpanProcessor`` sits in front of the batch processor. By default content (prompts,
completions, messages, tool arguments and results: every key ``sanitize.ContentKeys`` knows, for
all the conventions) never leaves the process: each content attribute is replaced by
``agent_otel.input.size``/``type`` (or output). With ``capture_content=True`` content is kept, but
secrets and personal data are redacted first. Every other string value, error messages and
exception events are always scrubbed; stack traces are dropped.

It never raises into the application and never blocks it: a span it cannot sanitize is dropped
and counted; the batch processor behind it queues without blocking (and drops when full).
``CountingSpanExporter`` wraps the OTLP exporter so export failures are counted and logged
(rate-limited) instead of disappearing; ``PluginStats`` holds the counts (``agent_otel.stats()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from agent_otel.sanitize import ContentKeys, RedactionCounts, Scrubber, describe, text_type
from agent_otel.semconv import INPUT_SIZE, INPUT_TYPE, OUTPUT_SIZE, OUTPUT_TYPE, SESSION_ID, USER_ID

# The user and session that ``agent_otel.user_context`` set, as (user id, session id), under one
# OpenTelemetry context key: one lookup per span start. W3C baggage (two entries, copied maps) is
# the fallback for identities propagated from another service, and is written only on request.
IDENTITY_KEY = otel_context.create_key("agent_otel.identity")
_IDENTITY_KEYS = (USER_ID, SESSION_ID)

log = logging.getLogger("agent_otel.plugin")

_STACKTRACE = "exception.stacktrace"
_MAX_KEYS = 4096
_MAX_PENDING = 65_536
_MAX_CLEAN = 16_384


def _describe(value: Any) -> tuple[int, str]:
    """``sanitize.describe`` with a fast path for ASCII text (its length is its size)."""
    if value.__class__ is str and value.isascii():
        return len(value), text_type(value)
    return describe(value)


_UNKNOWN = "?"
_LOG_EVERY_SECONDS = 60.0


@dataclass
class PluginStats:
    """Counters of the plugin's own health, readable with ``agent_otel.stats()``."""

    exported_spans: int = 0
    failed_spans: int = 0
    failed_exports: int = 0
    dropped_spans: int = 0
    redactions: RedactionCounts = field(default_factory=RedactionCounts)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "exported_spans": self.exported_spans,
                "failed_spans": self.failed_spans,
                "failed_exports": self.failed_exports,
                "dropped_spans": self.dropped_spans,
                "redactions": dict(self.redactions),
            }


class SanitizingSpanProcessor(SpanProcessor):
    """Sanitizes each finished span, then hands it to ``downstream`` (a batch processor)."""

    def __init__(
        self,
        downstream: SpanProcessor,
        *,
        capture_content: bool = False,
        stats: PluginStats | None = None,
        scrubber: Scrubber | None = None,
        baggage_keys: tuple[str, ...] = (),
    ) -> None:
        self.downstream = downstream
        self.capture_content = capture_content
        # baggage entries copied onto every span (user.id, session.id): read at start, written
        # with the sanitized attributes at the end (cheaper than two set_attribute calls)
        self.baggage_keys = baggage_keys
        self._pending: dict[int, list[tuple[str, str]]] = {}
        self.keys = ContentKeys()
        self.scrubber = scrubber or Scrubber()
        self.stats = stats or PluginStats()
        self._side = self.keys.side
        self._scrub = self.scrubber.scrub
        self._sides: dict[str, str | None] = {}  # key -> content side, bounded by _MAX_KEYS
        # strings the scrubber left unchanged: most attribute values repeat (names, models,
        # operation names), and a set lookup is far cheaper than a call into the scrubber
        self._clean: set[str] = set()

    @property
    def dropped(self) -> int:
        return self.stats.dropped_spans

    @property
    def redactions(self) -> RedactionCounts:
        return self.stats.redactions

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            if self.baggage_keys:
                found: list[tuple[str, str]] | None = None
                identity = otel_context.get_value(IDENTITY_KEY, parent_context)
                if isinstance(identity, tuple):
                    found = [(key, value) for key, value in zip(_IDENTITY_KEYS, identity, strict=True) if value]
                else:
                    entries = baggage.get_all(parent_context)
                    if entries:
                        found = [(k, str(entries[k])) for k in self.baggage_keys if entries.get(k) is not None]
                if found:
                    if len(self._pending) >= _MAX_PENDING:  # spans that never end: forget them
                        self._pending.clear()
                    self._pending[span.context.span_id] = found
            self.downstream.on_start(span, parent_context)
        except Exception:  # never into the application
            self.stats.dropped_spans += 1

    def on_end(self, span: ReadableSpan) -> None:
        try:
            sanitized = self.sanitize(span)
        except Exception as exc:
            self.stats.dropped_spans += 1
            log.debug("agent-otel dropped a span it could not sanitize: %s", type(exc).__name__)
            return
        try:
            self.downstream.on_end(sanitized)
        except Exception as exc:
            self.stats.dropped_spans += 1
            log.debug("agent-otel could not queue a span: %s", type(exc).__name__)

    def shutdown(self) -> None:
        try:
            self.downstream.shutdown()
        except Exception as exc:
            log.warning("agent-otel shutdown failed: %s", type(exc).__name__)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.downstream.force_flush(timeout_millis)
        except Exception:
            return False

    def _clean_text(self, value: str) -> str:
        """``value`` scrubbed; remembers values that needed no redaction (bounded)."""
        result = self._scrub(value, self.stats.redactions)
        if result == value and len(self._clean) < _MAX_CLEAN:
            self._clean.add(value)
        return result

    def _attributes(self, attributes: Any, extra: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = dict(extra) if extra else {}
        if not attributes:
            return out
        sides, clean, clean_text, capture = self._sides, self._clean, self._clean_text, self.capture_content
        input_size = output_size = 0
        input_type = output_type = None
        # BoundedAttributes iterates through the Mapping ABC (a lock and a lookup per item);
        # its underlying dict iterates in C. Any other mapping is iterated as is.
        items = getattr(attributes, "_dict", attributes).items()
        for key, value in items:
            side = sides.get(key, _UNKNOWN)
            if side is _UNKNOWN:
                side = self._side(key)
                if len(sides) < _MAX_KEYS:
                    sides[key] = side
            if side is None:
                if value.__class__ is str and value not in clean:
                    value = clean_text(value)
                out[key] = value
                continue
            if capture:
                out[key] = clean_text(value) if value.__class__ is str else value
            if side == "input":
                size, type_ = _describe(value)
                input_size += size
                input_type = input_type or type_
            elif side == "output":
                size, type_ = _describe(value)
                output_size += size
                output_type = output_type or type_
        if input_type is not None and INPUT_SIZE not in out:
            out[INPUT_SIZE] = input_size
            out[INPUT_TYPE] = input_type
        if output_type is not None and OUTPUT_SIZE not in out:
            out[OUTPUT_SIZE] = output_size
            out[OUTPUT_TYPE] = output_type
        return out

    def _event(self, event: Event) -> Event:
        attributes = dict(event.attributes or {})
        attributes.pop(_STACKTRACE, None)
        return Event(event.name, self._attributes(attributes), event.timestamp)

    def sanitize(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` with content reduced to size and type and every string scrubbed.

        The SDK hands ``on_end`` a fresh ``ReadableSpan`` made for the processors (the live span
        is not touched), so it is updated in place, which saves a copy per span; anything else
        is copied."""
        status = span.status
        if status.description:
            status = Status(status.status_code, self._scrub(status.description, self.stats.redactions))
        extra = self._pending.pop(span.context.span_id, None) if self._pending and span.context else None
        if type(span) is ReadableSpan and hasattr(span, "_attributes") and hasattr(span, "_events"):
            span._attributes = self._attributes(span.attributes, extra)
            if span._events:
                span._events = [self._event(e) for e in span._events]
            span._status = status
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self._attributes(span.attributes, extra),
            events=[self._event(e) for e in span.events] if span.events else (),
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class CountingSpanExporter(SpanExporter):
    """Wraps an exporter: successes and failures are counted, failures logged at most once a
    minute (with the running total), and an exporter exception never escapes."""

    def __init__(self, inner: SpanExporter, stats: PluginStats | None = None) -> None:
        self.inner = inner
        self.stats = stats or PluginStats()
        self._last_warning = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
            reason = "the collector refused or could not be reached"
        except Exception as exc:
            result = SpanExportResult.FAILURE
            reason = type(exc).__name__
        stats = self.stats
        with stats._lock:
            if result is SpanExportResult.SUCCESS:
                stats.exported_spans += len(spans)
                return result
            stats.failed_spans += len(spans)
            stats.failed_exports += 1
            failed = stats.failed_spans
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_SECONDS:
            self._last_warning = now
            log.warning("agent-otel could not export %d spans (%s); %d spans lost so far", len(spans), reason, failed)
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            log.warning("agent-otel exporter shutdown failed: %s", type(exc).__name__)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:
            return False
