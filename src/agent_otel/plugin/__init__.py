"""The agent-side plugin: configure the OpenTelemetry SDK and mark agent work.

    import agent_otel

    agent_otel.configure(service_name="support-service", endpoint="http://127.0.0.1:4318")
    with agent_otel.user_context(user_id="u-42", session_id="s-1"):
        with agent_otel.agent("support-bot") as run:
            with agent_otel.llm("gpt-4o-mini", provider="openai") as call:
                call.record_tokens(input=812, output=96)
            with agent_otel.tool("search_kb"):
                ...
            agent_otel.feedback(rating=5, favorite=True)

``agent``, ``tool`` and ``llm`` are also decorators (sync, async, generators). See docs/plugin.md.
"""

from agent_otel.plugin.api import (
    AgentRun,
    LlmCall,
    ToolCall,
    agent,
    current_run,
    feedback,
    llm,
    tool,
    user_context,
)
from agent_otel.plugin.configure import PluginOptions, configure, shutdown, stats
from agent_otel.plugin.processor import CountingSpanExporter, PluginStats, SanitizingSpanProcessor

__all__ = [
    "AgentRun",
    "CountingSpanExporter",
    "LlmCall",
    "PluginOptions",
    "PluginStats",
    "SanitizingSpanProcessor",
    "ToolCall",
    "agent",
    "configure",
    "current_run",
    "feedback",
    "llm",
    "shutdown",
    "stats",
    "tool",
    "user_context",
]
