"""agent-otel: OpenTelemetry for AI agents.

In the agent's process this package is the plugin (``agent_otel.configure``, and the API to mark
agent executions, tool calls and LLM calls); its names are imported lazily, so importing
``agent_otel`` (the collector does) does not load the SDK's exporters. ``agent_otel.collector`` is
the collector service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PLUGIN = (
    "AgentRun",
    "LlmCall",
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
)

__all__ = [
    "AgentRun",
    "LlmCall",
    "ToolCall",
    "__version__",
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

if TYPE_CHECKING:
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
    from agent_otel.plugin.configure import configure, shutdown, stats


def __getattr__(name: str) -> Any:
    if name in _PLUGIN:
        from agent_otel import plugin

        value = getattr(plugin, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agent_otel' has no attribute {name!r}")
