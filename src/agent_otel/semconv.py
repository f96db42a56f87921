"""Attribute keys: the OpenTelemetry GenAI conventions, and agent-otel's own namespace.

The plugin writes these keys and the collector reads them, so both import them from here.
What no convention covers lives under one namespace of ours, ``agent_otel.``:

==================================  =========================================================
``agent_otel.execution.id``         the application's own execution id (else trace+span id)
``agent_otel.execution.status``     ``success``, ``failed``, ``timeout`` or ``error`` override
``agent_otel.credits``              credits the execution consumed (number)
``agent_otel.queue_time_ms``        time spent queued before the agent ran
``agent_otel.processing_time_ms``   time the agent spent working
``agent_otel.response_time_ms``     network response time
``agent_otel.input.size``           input size in bytes (content itself never leaves)
``agent_otel.input.type``           ``text``, ``json``, ``binary``, ``file``, ...
``agent_otel.output.size``          output size in bytes
``agent_otel.output.type``          output type
``agent_otel.intent``               the request's classified intent (seed 003 top intents)
``agent_otel.feature``              the product feature the execution served (seed 004)
``agent_otel.feedback``             span event name for user feedback: attributes
                                    ``agent_otel.feedback.rating`` (1-5),
                                    ``agent_otel.feedback.favorite`` (bool),
                                    ``agent_otel.feedback.comment`` (scrubbed text)
==================================  =========================================================
"""

from __future__ import annotations

from typing import Final

NS: Final = "agent_otel."

EXECUTION_ID: Final = "agent_otel.execution.id"
EXECUTION_STATUS: Final = "agent_otel.execution.status"
CREDITS: Final = "agent_otel.credits"
QUEUE_TIME_MS: Final = "agent_otel.queue_time_ms"
PROCESSING_TIME_MS: Final = "agent_otel.processing_time_ms"
RESPONSE_TIME_MS: Final = "agent_otel.response_time_ms"
INPUT_SIZE: Final = "agent_otel.input.size"
INPUT_TYPE: Final = "agent_otel.input.type"
OUTPUT_SIZE: Final = "agent_otel.output.size"
OUTPUT_TYPE: Final = "agent_otel.output.type"
INTENT: Final = "agent_otel.intent"
FEATURE: Final = "agent_otel.feature"
FEEDBACK_EVENT: Final = "agent_otel.feedback"
FEEDBACK_RATING: Final = "agent_otel.feedback.rating"
FEEDBACK_FAVORITE: Final = "agent_otel.feedback.favorite"
FEEDBACK_COMMENT: Final = "agent_otel.feedback.comment"
FEEDBACK_ID: Final = "agent_otel.feedback.id"

# OpenTelemetry GenAI semantic conventions (current)
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
# deprecated names still emitted by libraries
GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"

# General registry
ERROR_TYPE: Final = "error.type"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
CLIENT_ADDRESS: Final = "client.address"
SERVICE_NAME: Final = "service.name"

# Operation names (gen_ai.operation.name)
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CREATE_AGENT: Final = "create_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_CHAT: Final = "chat"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
INFERENCE_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content", "completion"})
