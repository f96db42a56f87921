"""Which attribute keys carry content (prompts, completions, messages, tool arguments and
results, retrieved documents), per convention, and whether they are the input or the output.

The collector never stores any of these values; it reduces them to size and type. Keys are
matched exactly or by prefix (indexed keys such as ``gen_ai.prompt.0.content``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

Side = Literal["input", "output", "other"]

INPUT_KEYS: Final = frozenset(
    {
        # OpenTelemetry GenAI (current)
        "gen_ai.input.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.retrieval.query.text",
        "gen_ai.memory.query.text",
        "gen_ai.prompt",  # removed in v1.37, still sent
        # OpenInference
        "input.value",
        "llm.prompts",
        "tool.parameters",
        "message.function_call_arguments_json",
        # Traceloop / OpenLLMetry
        "traceloop.entity.input",
        "llm.headers",
        "gen_ai.headers",  # Traceloop 0.62: request headers verbatim, bearer tokens included
        # agent-otel plugin when content capture is on
        "agent_otel.input.content",
    }
)
OUTPUT_KEYS: Final = frozenset(
    {
        "gen_ai.output.messages",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.documents",
        "gen_ai.memory.records",
        "gen_ai.completion",
        "output.value",
        "llm.choices",
        "traceloop.entity.output",
        "agent_otel.output.content",
    }
)
OTHER_KEYS: Final = frozenset(
    {
        "gen_ai.tool.definitions",
        "gen_ai.input.messages.ref",
        "gen_ai.output.messages.ref",
        "exception.stacktrace",
        "metadata",
        "llm.invocation_parameters",
        "tool.json_schema",
        "tool_call.function.arguments",
        "gen_ai.tool.description",
        "gen_ai.agent.description",
        "tool.description",
    }
)
INPUT_PREFIXES: Final = (
    "gen_ai.prompt.",
    "llm.input_messages.",
    "llm.prompt_template.",
    "llm.request.functions.",
    "embedding.embeddings.",
)
OUTPUT_PREFIXES: Final = (
    "gen_ai.completion.",
    "llm.output_messages.",
    "retrieval.documents.",
    "reranker.output_documents.",
)
OTHER_PREFIXES: Final = ("llm.tools.", "reranker.input_documents.", "gen_ai.content.", "llm.content.")


class ContentKeys:
    """Classifies attribute keys as content (input, output, other) or not content (None)."""

    def __init__(self, extra_keys: Iterable[str] = (), extra_prefixes: Iterable[str] = ()) -> None:
        self._exact: dict[str, Side] = {}
        for keys, side in ((INPUT_KEYS, "input"), (OUTPUT_KEYS, "output"), (OTHER_KEYS, "other")):
            for key in keys:
                self._exact[key] = side  # type: ignore[assignment]
        for key in extra_keys:
            self._exact.setdefault(key, "other")
        self._input_prefixes = INPUT_PREFIXES
        self._output_prefixes = OUTPUT_PREFIXES
        self._other_prefixes = OTHER_PREFIXES + tuple(extra_prefixes)
        self._any_prefix = self._input_prefixes + self._output_prefixes + self._other_prefixes

    def side(self, key: str) -> Side | None:
        side = self._exact.get(key)
        if side is not None:
            return side
        if key.startswith(self._any_prefix):  # one C-level call for the common "no" answer
            if key.startswith(self._input_prefixes):
                return "input"
            if key.startswith(self._output_prefixes):
                return "output"
            return "other"
        return None
