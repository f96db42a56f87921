"""In-process cost of the agent-side plugin per agent execution, against the bare SDK.

One execution = one agent span, two LLM spans, one tool span, with the same GenAI attributes
(a prompt and a completion on each LLM span) in both variants:

* bare: the OpenTelemetry SDK's TracerProvider + BatchSpanProcessor, spans made with
  ``tracer.start_as_current_span``;
* plugin: ``agent_otel.configure`` (user/session processor, sanitizing processor, counting
  exporter, the same BatchSpanProcessor) and the plugin's API (``agent``/``llm``/``tool`` context
  managers inside ``user_context``).

Both export through the same exporter, measured twice: one that encodes each batch to OTLP
protobuf bytes and drops them (what the real OTLP exporter does before the network: the headline
figure, since reducing content to size and type also means less to encode), and a no-op one (the
plugin's own work alone). The figure is CPU time of the process (application and export threads),
not the network. Rounds alternate between the variants (so machine noise hits both alike); the
ratio of the medians is printed.

    python bench/plugin_overhead.py [--executions 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import agent_otel

PROMPT = "Summarise the attached contract and list every renewal date. " * 8
COMPLETION = "The contract renews on 2027-01-01 and again on 2028-01-01. " * 4


class NullExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class EncodingExporter(NullExporter):
    """What the OTLP exporter does before the network: encode the batch to protobuf bytes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def llm_attributes(tokens_in: int, tokens_out: int) -> dict[str, object]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        "gen_ai.input.messages": PROMPT,
        "gen_ai.output.messages": COMPLETION,
    }


def bare_variant(exporter: NullExporter) -> tuple[Callable[[], None], Callable[[], None]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")

    def execution() -> None:
        with tracer.start_as_current_span(
            "invoke_agent support-bot",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support-bot",
                "user.id": "user-1",
                "session.id": "sess-1",
            },
        ):
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                kind=SpanKind.CLIENT,
                attributes={**llm_attributes(812, 96), "user.id": "user-1", "session.id": "sess-1"},
            ):
                pass
            with tracer.start_as_current_span(
                "execute_tool search_kb",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "search_kb",
                    "user.id": "user-1",
                    "session.id": "sess-1",
                },
            ):
                pass
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                kind=SpanKind.CLIENT,
                attributes={**llm_attributes(950, 120), "user.id": "user-1", "session.id": "sess-1"},
            ):
                pass

    return execution, lambda: (provider.force_flush(), provider.shutdown())[0] and None


def plugin_variant(exporter: NullExporter) -> tuple[Callable[[], None], Callable[[], None]]:
    agent_otel.shutdown()
    provider = agent_otel.configure(service_name="bench", exporter=exporter, set_global=False)

    def execution() -> None:
        with agent_otel.user_context(user_id="user-1", session_id="sess-1"), agent_otel.agent("support-bot"):
            with agent_otel.llm("gpt-4o-mini", provider="openai", **llm_attributes(812, 96)):
                pass
            with agent_otel.tool("search_kb"):
                pass
            with agent_otel.llm("gpt-4o-mini", provider="openai", **llm_attributes(950, 120)):
                pass

    def finish() -> None:
        provider.force_flush()
        agent_otel.shutdown()

    return execution, finish


def measure(
    make: Callable[[NullExporter], tuple[Callable[[], None], Callable[[], None]]],
    exporter_type: type[NullExporter],
    executions: int,
) -> float:
    """CPU microseconds per execution, export included (the flush is inside the clock).

    Process CPU time counts every thread (the batch processor's export thread too), which is
    what the plugin costs the application, and unlike wall time it does not move with the
    machine's other load. Every span must have been exported: a drop would flatter the figure."""
    exporter = exporter_type()
    run, finish = make(exporter)
    warm_up = 200
    for _ in range(warm_up):
        run()
    start = time.process_time()
    for _ in range(executions):
        run()
    finish()
    elapsed = time.process_time() - start
    expected = (warm_up + executions) * 4
    if exporter.spans != expected:
        raise RuntimeError(f"{exporter.spans} spans exported, {expected} made: the benchmark dropped spans")
    return elapsed / executions * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    # every span must be exported in both variants: a batch queue that overflows drops spans,
    # and dropped spans cost nothing to encode (both variants read this SDK setting)
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, args.executions * 4 + 1000))
    print(
        f"executions per round: {args.executions} (1 agent + 2 LLM + 1 tool span each), rounds: {args.rounds},"
        " rounds interleaved; CPU time of the process (application and export threads)"
    )
    for label, exporter in (("OTLP encoding exporter", EncodingExporter), ("no-op exporter", NullExporter)):
        bare: list[float] = []
        plugin: list[float] = []
        for _ in range(args.rounds):
            bare.append(measure(bare_variant, exporter, args.executions))
            plugin.append(measure(plugin_variant, exporter, args.executions))
        bare_median, plugin_median = statistics.median(bare), statistics.median(plugin)
        print(f"{label}:")
        print(f"  bare SDK : {bare_median:8.1f} CPU us per execution (median; min {min(bare):.1f})")
        print(f"  plugin   : {plugin_median:8.1f} CPU us per execution (median; min {min(plugin):.1f})")
        print(f"  ratio    : {plugin_median / bare_median:8.3f}x (target <= 1.15x)")


if __name__ == "__main__":
    main()
