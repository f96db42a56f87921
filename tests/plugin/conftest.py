"""A configured plugin whose spans land in the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agent_otel


@pytest.fixture
def exported() -> Iterator[Callable[..., list[ReadableSpan]]]:
    """Configures the plugin (not globally) with an in-memory exporter; calling the fixture's
    value flushes and returns the exported spans."""
    memory = InMemorySpanExporter()
    options: dict[str, Any] = {}

    def spans() -> list[ReadableSpan]:
        provider = agent_otel.configure(exporter=memory, set_global=False, service_name="plugin-tests", **options)
        provider.force_flush()
        return list(memory.get_finished_spans())

    spans.options = options  # type: ignore[attr-defined]
    agent_otel.shutdown()
    yield spans
    agent_otel.shutdown()


@pytest.fixture
def plugin(exported: Callable[..., list[ReadableSpan]]) -> Callable[..., list[ReadableSpan]]:
    """Configured before the test body runs (content capture off)."""
    exported()
    return exported
