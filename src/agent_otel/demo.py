"""``agent-otel demo``: realistic multi-agent traffic sent through the plugin and the
OpenTelemetry SDK's OTLP exporter, so it is a real client of the collector.

Five agents, a dozen users with several sessions each, LLM calls on priced and unpriced models,
tool calls, a sub-agent, rate limits (failed), timeouts, crashes (error), user feedback, and
content with planted fake secrets that the plugin strips before export. Executions are spread
over the last few hours (backdated timestamps) so rollups and charts have shape.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from agent_otel.plugin import api
from agent_otel.plugin.configure import configure, shutdown

NS = 1_000_000_000


@dataclass(frozen=True)
class DemoAgent:
    name: str
    model: str
    provider: str
    tools: tuple[str, ...]
    intents: tuple[str, ...]
    feature: str
    mean_llm_ms: int


AGENTS = (
    DemoAgent(
        "support-bot",
        "gpt-4o-mini",
        "openai",
        ("search_kb", "create_ticket"),
        ("refund", "password_reset", "billing"),
        "customer_support",
        900,
    ),
    DemoAgent(
        "research-agent",
        "claude-sonnet-4-5",
        "anthropic",
        ("web_search", "fetch_page"),
        ("market_research", "literature_review"),
        "research",
        4200,
    ),
    DemoAgent(
        "code-reviewer", "gpt-4.1", "openai", ("read_file", "run_tests"), ("review_pr", "explain_code"), "coding", 2600
    ),
    DemoAgent(
        "sql-analyst",
        "gemini-2.5-flash",
        "gcp.gemini",
        ("run_query", "describe_table"),
        ("revenue_report", "ad_hoc_query"),
        "analysis",
        1500,
    ),
    DemoAgent(
        "travel-planner",
        "llama-3.1-70b-local",
        "self_hosted",
        ("search_flights", "book_hotel"),
        ("trip_planning",),
        "planning",
        3100,
    ),
)
USERS = tuple(f"user-{i:04d}" for i in range(1, 13))
# Fake secrets: the plugin must reduce this content to size and type before it leaves.
PROMPT = (
    "Customer wrote: my key sk-proj-DEMOdemoDEMOdemoDEMOdemoDEMOdemo1234 stopped working, "
    "reach me at jane.doe@example.com or +1 415-555-0132. Summarise and propose a fix."
)


def _run_one(rng: random.Random, agent: DemoAgent, user: str, session: str, start_ns: int) -> int:
    """One execution; returns its duration in nanoseconds."""
    outcome = rng.random()
    t = start_ns + int(rng.uniform(5, 80) * 1e6)  # queue time before the agent starts working
    with (
        api.user_context(user_id=user, session_id=session),
        api.agent(
            agent.name,
            intent=rng.choice(agent.intents),
            feature=agent.feature,
            start_time=start_ns,
            **{"user_agent.original": "demo-client/1.0", "client.address": f"203.0.113.{rng.randint(2, 250)}"},
        ) as run,
    ):
        run.set_input(PROMPT)
        run.record_credits(rng.choice((1, 1, 2, 3, 5)))
        calls = rng.randint(1, 3)
        for i in range(calls):
            duration = int(max(40.0, rng.gauss(agent.mean_llm_ms, agent.mean_llm_ms * 0.35)) * 1e6)
            with api.llm(
                agent.model, provider=agent.provider, start_time=t, **{"gen_ai.input.messages": PROMPT}
            ) as call:
                if i == 0 and outcome < 0.06:
                    call.fail(
                        "RateLimitError", "Rate limit reached for requests; contact ops@example.com", status="failed"
                    )
                    call.set("http.response.status_code", 429)
                call.record_tokens(input=rng.randint(300, 2400), output=rng.randint(40, 700))
                call.end_time = t + duration
            t += duration
            if i == 0 and outcome < 0.06:
                run.fail("RateLimitError", "upstream rate limit", status="failed")
                break
            if i < calls - 1 or rng.random() < 0.7:
                tool_name = rng.choice(agent.tools)
                duration = int(rng.uniform(20, 900) * 1e6)
                with api.tool(tool_name, start_time=t) as call:
                    if 0.06 <= outcome < 0.08:
                        call.fail("ToolError", f"failed reading /home/deploy/{agent.name}/config.yaml", status="error")
                    call.end_time = t + duration
                t += duration
        if agent.name == "research-agent" and outcome > 0.5:
            with api.agent("summarizer", start_time=t) as sub:
                with api.llm("gpt-4o-mini", provider="openai", start_time=t + 1_000_000) as call:
                    call.record_tokens(input=rng.randint(800, 3000), output=rng.randint(100, 400))
                    call.end_time = t + int(700e6)
                sub.end_time = t + int(720e6)
            t += int(720e6)
        if 0.06 <= outcome < 0.08:
            run.fail("ToolError", "tool crashed", status="error")
        elif 0.08 <= outcome < 0.11:
            t += int(rng.uniform(20, 60) * NS)
            run.fail("TimeoutError", "agent exceeded its deadline", status="timeout")
        else:
            run.set_output('{"answer": "demo"}')
        run.record_timings(queue_ms=(t - start_ns) / 1e6 * 0.02, processing_ms=(t - start_ns) / 1e6)
        run.end_time = t
        execution_id = (
            format(run.span.get_span_context().trace_id, "032x")
            + "-"
            + format(run.span.get_span_context().span_id, "016x")
        )
    if rng.random() < 0.12:
        api.feedback(
            agent=agent.name,
            user_id=user,
            execution_id=execution_id,
            rating=rng.choice((3, 4, 4, 5, 5, 5, 2)),
            favorite=rng.random() < 0.3,
            comment="Great answer, thanks! (mail me: jane.doe@example.com)",
        )
    return t - start_ns


def run_demo(
    endpoint: str,
    executions: int = 200,
    hours: float = 6.0,
    seed: int = 7,
    protocol: str = "http/protobuf",
    quiet: bool = False,
) -> int:
    """Send ``executions`` agent executions to ``endpoint``; returns how many were sent."""
    rng = random.Random(seed)
    configure(service_name="agent-otel-demo", endpoint=endpoint, protocol=protocol)
    try:
        now = time.time_ns()
        sessions = {user: [f"sess-{user[-4:]}-{k}" for k in range(rng.randint(1, 4))] for user in USERS}
        for i in range(executions):
            agent = rng.choices(AGENTS, weights=(5, 2, 3, 3, 1))[0]
            user = rng.choice(USERS)
            start = now - int(rng.uniform(0, hours * 3600) * NS) - 120 * NS
            _run_one(rng, agent, user, rng.choice(sessions[user]), start)
            if not quiet and (i + 1) % 50 == 0:
                print(f"demo: {i + 1}/{executions} executions sent", flush=True)
    finally:
        shutdown()
    return executions
