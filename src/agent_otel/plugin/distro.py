"""Entry points for ``opentelemetry-instrument``: with agent-otel installed,

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 opentelemetry-instrument python app.py

configures the SDK with agent-otel's processors (sanitizing, user/session from baggage, counted
exports) and loads every installed instrumentation (openai-v2, OpenInference, ...), with no code
change in the application. pyproject declares both under ``opentelemetry_distro`` and
``opentelemetry_configurator``; when another distro is installed too (opentelemetry-distro),
``OTEL_PYTHON_DISTRO=agent_otel OTEL_PYTHON_CONFIGURATOR=agent_otel`` picks these.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator


class AgentOtelConfigurator(_BaseConfigurator):
    """Runs ``agent_otel.configure()`` from the standard ``OTEL_*`` variables."""

    def _configure(self, **kwargs: Any) -> None:
        from agent_otel.plugin.configure import configure

        configure()


class AgentOtelDistro(BaseDistro):  # type: ignore[misc]
    """Defaults that match the collector: OTLP over HTTP/protobuf for traces and metrics."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
