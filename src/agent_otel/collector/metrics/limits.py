"""Bounded label cardinality: past a cap, new values fold into ``__other__`` and are counted.

Every Prometheus series costs memory in the collector and in Prometheus for as long as it is
scraped, so a label fed from span attributes (agent, model, tool, error type, provider) admits
only its first ``cap`` distinct values. Later values are reported as ``__other__`` and
``agent_otel_label_overflow_total{label}`` counts the samples folded, so an operator sees that a
cap was reached and can raise it. Values are also cut to a bounded length and stripped of
control characters: they come from the traffic, not from the operator.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter

OTHER = "__other__"
UNKNOWN = "unknown"
MAX_VALUE_LENGTH = 100


def clean_label_value(value: str | None) -> str:
    """A label value safe to export: printable, at most ``MAX_VALUE_LENGTH`` characters."""
    if not value:
        return UNKNOWN
    if value.isprintable() and len(value) <= MAX_VALUE_LENGTH and not value[0].isspace() and not value[-1].isspace():
        return value  # the usual case, checked in C
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:MAX_VALUE_LENGTH] or UNKNOWN


class LabelLimiter:
    """Admits the first ``cap`` distinct values of one label kind; later ones become ``__other__``."""

    def __init__(self, kind: str, cap: int, overflow: Counter) -> None:
        self.kind = kind
        self.cap = cap
        self._seen: set[str] = set()
        # raw value -> its admitted label: a commit asks for the same few values thousands of
        # times, and the lookup is cheaper than cleaning the value again (bounded like _seen)
        self._admitted: dict[str | None, str] = {}
        self._lock = threading.Lock()
        self._overflow = overflow.labels(label=kind)

    def __call__(self, value: str | None, samples: int = 1) -> str:
        """The label for ``value``; ``samples``: how many samples it labels (what an overflow counts)."""
        label = self._admitted.get(value)
        if label is not None:
            return label
        label = clean_label_value(value)
        with self._lock:
            if label in self._seen or len(self._seen) < self.cap:
                self._seen.add(label)
                if len(self._admitted) < 4 * self.cap:
                    self._admitted[value] = label
                return label
        self._overflow.inc(samples)
        return OTHER
