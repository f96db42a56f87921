"""The collector's own health metrics, all under ``agent_otel_``.

What an operator needs to tell "my agents are quiet" from "the collector is losing data":

- ``agent_otel_{spans,log_records,metric_points}_{received,accepted}_total{transport}``: items
  decoded from OTLP requests, and items committed (the acknowledgement is sent after the commit).
- ``agent_otel_{spans,log_records,metric_points}_refused_total{transport,reason}``: items refused
  one by one inside an otherwise accepted request (reported in ``partial_success``): bad ids or
  timestamps, or ``storage_rejected`` when the database refused that one row.
- ``agent_otel_requests_refused_total{transport,signal,reason}``: whole requests refused with an
  error status (malformed 400, too_large 413, overloaded 429, storage_unavailable 503, ...).
  Counted as requests, not items, because a refused request may never have been decoded.
- ``agent_otel_rows_written_total{table}``, ``agent_otel_batch_write_duration_seconds``,
  ``agent_otel_batch_size_{spans,requests}``, ``agent_otel_queue_depth_spans``,
  ``agent_otel_rollup_{backlog,lag_seconds,deltas_applied_total,apply_duration_seconds,delta_failures_total}``,
  ``agent_otel_database_up``, ``agent_otel_database_errors_total{kind}``,
  ``agent_otel_redactions_total{rule}``, ``agent_otel_label_overflow_total{label}`` and
  ``agent_otel_build_info{version,python}``.

Counters that alerts read are created at zero for every label value known up front, so an alert
query sees a series (value 0) before the first failure instead of no data.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from agent_otel.collector.receiver.errors import ReceiverError
from agent_otel.sanitize import RedactionCounts

# A group commit takes a millisecond on an idle SQLite file and seconds on a saturated database.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000)
UNITS = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}
TRANSPORTS = ("http", "grpc")
DATABASE_ERROR_KINDS = ("unavailable", "write_failed", "retried")
STORAGE_REJECTED = "storage_rejected"


def _subclasses(cls: type[ReceiverError]) -> set[type[ReceiverError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def request_refusal_reasons() -> frozenset[str]:
    """The reasons a whole request is refused with: one per receiver error class."""
    return frozenset({ReceiverError.reason} | {cls.reason for cls in _subclasses(ReceiverError)})


class HealthMetrics:
    """Implements the receiver's and the writer's metrics protocols."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.registry = registry
        self.request_reasons = request_refusal_reasons()
        self._received = {
            signal: Counter(
                f"agent_otel_{unit}_received",
                f"OTLP {unit.replace('_', ' ')} decoded from export requests",
                ["transport"],
                registry=registry,
            )
            for signal, unit in UNITS.items()
        }
        self._accepted = {
            signal: Counter(
                f"agent_otel_{unit}_accepted",
                f"OTLP {unit.replace('_', ' ')} committed to the database and acknowledged",
                ["transport"],
                registry=registry,
            )
            for signal, unit in UNITS.items()
        }
        self._refused = {
            signal: Counter(
                f"agent_otel_{unit}_refused",
                f"OTLP {unit.replace('_', ' ')} refused one by one (partial success), by reason",
                ["transport", "reason"],
                registry=registry,
            )
            for signal, unit in UNITS.items()
        }
        self.requests_refused = Counter(
            "agent_otel_requests_refused",
            "OTLP export requests refused as a whole with an error status, by signal and reason",
            ["transport", "signal", "reason"],
            registry=registry,
        )
        self.rows = Counter("agent_otel_rows_written", "Rows inserted, by table", ["table"], registry=registry)
        self.write_seconds = Histogram(
            "agent_otel_batch_write_duration_seconds",
            "Time to write and commit one group of requests",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.batch_spans = Histogram(
            "agent_otel_batch_size_spans",
            "Spans and log records per committed group",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "agent_otel_batch_size_requests",
            "OTLP requests sharing one commit",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge("agent_otel_queue_depth_spans", "Spans accepted but not yet committed", registry=registry)
        self.redactions = Counter(
            "agent_otel_redactions", "Values redacted by the sanitizer, by rule", ["rule"], registry=registry
        )
        self.db_errors = Counter(
            "agent_otel_database_errors",
            "Database errors seen by the writer, by kind (unavailable, write_failed, retried)",
            ["kind"],
            registry=registry,
        )
        self.label_overflow = Counter(
            "agent_otel_label_overflow",
            "Samples whose label value was folded into __other__ because a cardinality cap was reached",
            ["label"],
            registry=registry,
        )
        self.rollup_pending = Gauge(
            "agent_otel_rollup_backlog", "Rollup deltas committed but not yet applied", registry=registry
        )
        self.rollup_lag = Gauge(
            "agent_otel_rollup_lag_seconds", "Age of the oldest rollup delta not yet applied", registry=registry
        )
        self.rollup_deltas = Counter(
            "agent_otel_rollup_deltas_applied", "Rollup deltas folded into the rollup tables", registry=registry
        )
        self.rollup_seconds = Histogram(
            "agent_otel_rollup_apply_duration_seconds",
            "Time to apply one batch of rollup deltas",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.rollup_errors = Counter(
            "agent_otel_rollup_delta_failures", "Rollup deltas that failed to apply on their own", registry=registry
        )
        self.up = Gauge("agent_otel_database_up", "1 when the database accepts writes", registry=registry)
        self.up.set(1)
        Info("agent_otel_build", "Build information", registry=registry).info(
            {"version": version, "python": platform.python_version()}
        )
        self._zero_series()

    def _zero_series(self) -> None:
        """Create the series alerts and dashboards read, at 0 (see the module docstring)."""
        for transport in TRANSPORTS:
            for signal in UNITS:
                self._received[signal].labels(transport)
                self._accepted[signal].labels(transport)
                for reason in self.request_reasons:
                    self.requests_refused.labels(transport, signal, reason)
            self._refused["traces"].labels(transport, STORAGE_REJECTED)
        for kind in DATABASE_ERROR_KINDS:
            self.db_errors.labels(kind)

    def watch_database(self, available: Callable[[], bool]) -> None:
        """Read ``agent_otel_database_up`` from the writer at scrape time, so it returns to 1 when
        the database comes back even if no request has been written since."""
        self.up.set_function(lambda: 1.0 if available() else 0.0)

    # receiver protocol
    def received(self, transport: str, signal: str, count: int) -> None:
        if count:
            self._received[signal].labels(transport).inc(count)

    def accepted(self, transport: str, signal: str, count: int) -> None:
        if count:
            self._accepted[signal].labels(transport).inc(count)

    def refused(self, transport: str, signal: str, reason: str, count: int) -> None:
        """Whole-request reasons (receiver errors) count requests; the others count items."""
        if not count:
            return
        if reason in self.request_reasons:
            self.requests_refused.labels(transport, signal, reason).inc(count)
        else:
            self._refused[signal].labels(transport, reason).inc(count)

    def redacted(self, counts: RedactionCounts) -> None:
        for rule, count in counts.items():
            self.redactions.labels(rule).inc(count)

    # writer protocol
    def observe_commit(self, seconds: float, spans: int, requests: int) -> None:
        self.write_seconds.observe(seconds)
        self.batch_spans.observe(spans)
        self.batch_requests.observe(requests)
        self.up.set(1)

    def rows_written(self, table: str, count: int) -> None:
        self.rows.labels(table).inc(count)

    def database_error(self, kind: str) -> None:
        self.db_errors.labels(kind).inc()
        if kind == "unavailable":
            self.up.set(0)

    def queue_depth(self, spans: int) -> None:
        self.queue.set(spans)

    # rollup applier protocol
    def rollup_backlog(self, rows: int, lag_seconds: float) -> None:
        self.rollup_pending.set(rows)
        self.rollup_lag.set(lag_seconds)

    def rollup_applied(self, deltas: int, seconds: float) -> None:
        self.rollup_deltas.inc(deltas)
        self.rollup_seconds.observe(seconds)

    def rollup_failed(self) -> None:
        self.rollup_errors.inc()
