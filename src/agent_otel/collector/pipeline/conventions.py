"""Which attribute keys the normalizer reads, per concept, in order of precedence.

The OpenTelemetry GenAI conventions come first (current names, then the deprecated names that
libraries still send), then OpenInference, then OpenLLMetry/Traceloop, then agent-otel's own
namespace for what no convention covers. See ``../shared/notes/semconv-mapping.md`` and the
README's "Attribute keys read" table, which is generated from the tables here.
"""

from __future__ import annotations

from typing import Final

from agent_otel.collector.pipeline.model import Category

AGENT_NAME: Final = ("gen_ai.agent.name", "agent.name")
AGENT_ID: Final = ("gen_ai.agent.id", "traceloop.association.properties.agent_id", "agent.id")
AGENT_DESCRIPTION: Final = ("gen_ai.agent.description",)
AGENT_VERSION: Final = ("gen_ai.agent.version",)
USER_ID: Final = (
    "user.id",
    "enduser.id",
    "traceloop.association.properties.user_id",
    "llm.user",
)
SESSION_ID: Final = (
    "gen_ai.conversation.id",
    "session.id",
    "traceloop.association.properties.session_id",
    "traceloop.association.properties.conversation_id",
)
MODEL: Final = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "llm.response.model_name",
    "llm.request.model_name",
    "llm.response.model",
    "llm.request.model",
)
PROVIDER: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
INPUT_TOKENS: Final = (
    "gen_ai.usage.input_tokens",
    "llm.token_count.prompt",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
)
OUTPUT_TOKENS: Final = (
    "gen_ai.usage.output_tokens",
    "llm.token_count.completion",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
TOOL_NAME: Final = ("gen_ai.tool.name", "tool.name")
OPERATION: Final = ("gen_ai.operation.name", "llm.request.type")
LEGACY_REQUEST_TYPE: Final = "llm.request.type"  # Traceloop <= 0.4x
STREAMING: Final = ("gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
FINISH_REASON: Final = ("gen_ai.response.finish_reasons", "llm.finish_reason", "gen_ai.completion.0.finish_reason")
HTTP_STATUS: Final = ("http.response.status_code", "http.status_code")
USER_AGENT: Final = ("user_agent.original", "http.user_agent")
CLIENT_IP: Final = ("client.address", "http.client_ip", "net.peer.ip", "net.sock.peer.addr")
WORKFLOW_NAME: Final = ("gen_ai.workflow.name", "traceloop.workflow.name")
ERROR_TYPE: Final = ("error.type",)
INTENT: Final = ("agent_otel.intent", "traceloop.association.properties.intent")
FEATURE: Final = ("agent_otel.feature", "traceloop.association.properties.feature")
INPUT_MIME: Final = ("input.mime_type",)
OUTPUT_MIME: Final = ("output.mime_type",)

OPENINFERENCE_KIND: Final = "openinference.span.kind"
# OpenInference request parameters (JSON): only "model" and "stream" are read from it
INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
TRACELOOP_KIND: Final = "traceloop.span.kind"
TRACELOOP_ENTITY: Final = "traceloop.entity.name"

OUR_KEYS: Final = (
    "agent_otel.execution.id",
    "agent_otel.execution.status",
    "agent_otel.credits",
    "agent_otel.queue_time_ms",
    "agent_otel.processing_time_ms",
    "agent_otel.response_time_ms",
    "agent_otel.input.size",
    "agent_otel.input.type",
    "agent_otel.output.size",
    "agent_otel.output.type",
)

# gen_ai.operation.name (and Traceloop's older llm.request.type) -> category
OPERATION_CATEGORY: Final[dict[str, Category]] = {
    "invoke_agent": Category.AGENT,
    "create_agent": Category.CHAIN,
    "invoke_workflow": Category.CHAIN,
    "execute_tool": Category.TOOL,
    "chat": Category.LLM,
    "text_completion": Category.LLM,
    "generate_content": Category.LLM,
    "completion": Category.LLM,
    "rerank": Category.RETRIEVAL,
    "embeddings": Category.EMBEDDING,
    "embedding": Category.EMBEDDING,
    "retrieval": Category.RETRIEVAL,
    "search_memory": Category.RETRIEVAL,
    "create_memory": Category.CHAIN,
}
OPENINFERENCE_CATEGORY: Final[dict[str, Category]] = {
    "AGENT": Category.AGENT,
    "LLM": Category.LLM,
    "TOOL": Category.TOOL,
    "CHAIN": Category.CHAIN,
    "RETRIEVER": Category.RETRIEVAL,
    "RERANKER": Category.RETRIEVAL,
    "EMBEDDING": Category.EMBEDDING,
    "GUARDRAIL": Category.CHAIN,
    "EVALUATOR": Category.CHAIN,
    "PROMPT": Category.CHAIN,
}
TRACELOOP_CATEGORY: Final[dict[str, Category]] = {
    "agent": Category.AGENT,
    "tool": Category.TOOL,
    "workflow": Category.CHAIN,
    "task": Category.CHAIN,
}

CONCEPTS: Final[dict[str, tuple[str, ...]]] = {
    "agent name": AGENT_NAME,
    "agent id": AGENT_ID,
    "user id": USER_ID,
    "session id": SESSION_ID,
    "model": MODEL,
    "provider": PROVIDER,
    "input tokens": INPUT_TOKENS,
    "output tokens": OUTPUT_TOKENS,
    "tool name": TOOL_NAME,
    "operation": OPERATION,
    "streaming": STREAMING,
    "finish reason": FINISH_REASON,
    "HTTP status": HTTP_STATUS,
    "user agent": USER_AGENT,
    "client IP (anonymised)": CLIENT_IP,
    "workflow": WORKFLOW_NAME,
    "error type": ERROR_TYPE,
    "intent": INTENT,
    "feature": FEATURE,
}

# Keys read on their own (each is its own concept, named by the key).
SINGLE_KEYS: Final = (
    *AGENT_DESCRIPTION,
    *AGENT_VERSION,
    *INPUT_MIME,
    *OUTPUT_MIME,
    *OUR_KEYS,
    OPENINFERENCE_KIND,
    INVOCATION_PARAMETERS,
    TRACELOOP_KIND,
    TRACELOOP_ENTITY,
)

# Every key the normalizer reads -> (concept, rank within the concept; lower wins). The normalizer
# resolves precedence while it walks a span's attributes once, so each attribute costs one dict
# lookup however many conventions are known. Anything else is never stored (fail-closed):
# content keys are only measured, and all other keys are skipped.
KEY_RANK: Final[dict[str, tuple[str, int]]] = {
    **{key: (key, 0) for key in SINGLE_KEYS},
    **{key: (concept, rank) for concept, keys in CONCEPTS.items() for rank, key in enumerate(keys)},
}
READ_KEYS: Final = frozenset(KEY_RANK)
