"""Realistic OTLP traffic as request bodies, to send to collectors more than once.

``demo_requests`` runs ``agent-otel demo``'s generator (the agent-side plugin, the SDK's batch
processor) in a subprocess whose exporter keeps each export's encoded request body instead of
sending it. A subprocess, because the plugin installs a process-wide tracer provider.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class CapturingExporter(SpanExporter):
    """Keeps request bodies of at most ``per_request`` spans (a trace may span several requests)."""

    def __init__(self, per_request: int) -> None:
        self.per_request = per_request
        self.bodies: list[bytes] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for start in range(0, len(spans), self.per_request):
            chunk = spans[start : start + self.per_request]
            self.bodies.append(bytes(encode_spans(chunk).SerializeToString()))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def demo_requests(executions: int, seed: int = 7, hours: float = 6.0, per_request: int = 25) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bodies.pickle"
        subprocess.run(
            [sys.executable, __file__, str(executions), str(seed), str(hours), str(per_request), str(out)],
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            timeout=300,
        )
        bodies: list[bytes] = pickle.loads(out.read_bytes())  # noqa: S301 - our own file
        return bodies


def _main(executions: int, seed: int, hours: float, per_request: int, out: Path) -> None:
    from agent_otel.demo import run_demo
    from agent_otel.plugin.configure import configure

    capture = CapturingExporter(per_request)
    configure(service_name="agent-otel-demo", exporter=capture)
    run_demo("http://unused.invalid", executions, hours=hours, seed=seed, quiet=True)
    out.write_bytes(pickle.dumps(capture.bodies))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
