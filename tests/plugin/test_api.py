"""The plugin's API: context managers and decorators (sync, async, generators), user and session
on every span beneath, tokens, credits, statuses and errors, with the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import agent_otel

Spans = Callable[..., list[ReadableSpan]]
SECRET = "sk-proj-PLANTEDplantedPLANTED0123456789abcd"


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_nested_operations_follow_the_genai_conventions(plugin: Spans) -> None:
    with (
        agent_otel.user_context(user_id="user-42", session_id="sess-7"),
        agent_otel.agent("support-bot", agent_id="support-bot-v2", intent="refund") as run,
    ):
        run.record_credits(3)
        run.record_timings(queue_ms=12, processing_ms=340)
        with agent_otel.llm("gpt-4o-mini", provider="openai") as call:
            call.record_tokens(input=812, output=96)
            call.set_response_model("gpt-4o-mini-2024-07-18")
        with agent_otel.tool("search_kb", call_id="call-1"):
            # what an auto-instrumentation library does beneath: a plain span of its own tracer
            trace.get_tracer("some.library", tracer_provider=agent_otel.configure()).start_span("HTTP GET").end()
    spans = by_name(plugin())
    root, chat, tool = spans["invoke_agent support-bot"], spans["chat gpt-4o-mini"], spans["execute_tool search_kb"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert (
        root.attributes["gen_ai.agent.name"] == "support-bot" and root.attributes["gen_ai.agent.id"] == "support-bot-v2"
    )
    assert root.attributes["agent_otel.credits"] == 3 and root.attributes["agent_otel.queue_time_ms"] == 12
    assert root.attributes["agent_otel.intent"] == "refund"
    assert chat.kind is SpanKind.CLIENT and chat.parent.span_id == root.context.span_id
    assert chat.attributes["gen_ai.usage.input_tokens"] == 812 and chat.attributes["gen_ai.usage.output_tokens"] == 96
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert tool.attributes["gen_ai.tool.name"] == "search_kb" and tool.parent.span_id == root.context.span_id
    for span in spans.values():  # the library's span too
        assert span.attributes["user.id"] == "user-42" and span.attributes["session.id"] == "sess-7", span.name
    assert spans["HTTP GET"].parent.span_id == tool.context.span_id
    assert run.execution_id == f"{root.context.trace_id:032x}-{root.context.span_id:016x}"


def test_user_and_session_given_to_agent_reach_its_children(plugin: Spans) -> None:
    with agent_otel.agent("bot", user_id="u-1", session_id="s-1"), agent_otel.llm("m"):
        pass
    with agent_otel.agent("bot"):  # nothing leaks to the next request
        pass
    first, llm, second = sorted(plugin(), key=lambda s: s.start_time)
    assert first.attributes["user.id"] == "u-1" and llm.attributes["session.id"] == "s-1"
    assert "user.id" not in second.attributes


def test_identity_nests_and_propagates_through_baggage_on_request(plugin: Spans) -> None:
    from opentelemetry import baggage, context

    with agent_otel.user_context(user_id="u-outer", session_id="s-outer"):
        assert baggage.get_all() == {}  # in-process by default: nothing to send downstream
        with agent_otel.user_context(session_id="s-inner"), agent_otel.agent("inner"):
            pass
    with agent_otel.user_context(user_id="u-9", session_id="s-9", propagate=True):
        assert baggage.get_all() == {"user.id": "u-9", "session.id": "s-9"}  # W3C baggage for HTTP clients
    # an identity that arrived from another service (baggage, no user_context here) still lands on spans
    token = context.attach(baggage.set_baggage("user.id", "u-upstream"))
    try:
        with agent_otel.agent("downstream"):
            pass
    finally:
        context.detach(token)
    spans = by_name(plugin())
    inner = spans["invoke_agent inner"].attributes
    assert (inner["user.id"], inner["session.id"]) == ("u-outer", "s-inner")  # the inner context keeps the user
    downstream = spans["invoke_agent downstream"].attributes
    assert downstream["user.id"] == "u-upstream" and "session.id" not in downstream


def test_decorators_sync_and_async(plugin: Spans) -> None:
    @agent_otel.tool("add")
    def add(a: int, b: int) -> int:
        assert trace.get_current_span().name == "execute_tool add"  # type: ignore[attr-defined]
        return a + b

    @agent_otel.agent("async-bot")
    async def run(x: int) -> int:
        await asyncio.sleep(0)
        return add(x, 1)

    assert add(1, 2) == 3 and add.__name__ == "add"
    assert asyncio.run(run(4)) == 5
    spans = plugin()
    assert [s.name for s in spans].count("execute_tool add") == 2  # one span per call
    agent_span = by_name(spans)["invoke_agent async-bot"]
    nested = [s for s in spans if s.name == "execute_tool add" and s.parent is not None]
    assert len(nested) == 1 and nested[0].parent.span_id == agent_span.context.span_id


def test_generator_span_covers_iteration_but_not_the_consumer(plugin: Spans) -> None:
    seen: list[str] = []

    @agent_otel.llm("gpt-4o-mini", provider="openai")
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            seen.append(trace.get_current_span().name)  # type: ignore[attr-defined]
            yield f"chunk{i}"

    with agent_otel.agent("streamer"):
        chunks = []
        for chunk in stream(3):
            chunks.append(chunk)
            seen.append("consumer:" + trace.get_current_span().name)  # type: ignore[attr-defined]
        early = stream(5)
        next(early)
        early.close()  # stopped early: ended, not an error
    assert chunks == ["chunk0", "chunk1", "chunk2"]
    assert seen[:6] == ["chat gpt-4o-mini", "consumer:invoke_agent streamer"] * 3
    llm_spans = [s for s in plugin() if s.name == "chat gpt-4o-mini"]
    assert len(llm_spans) == 2
    assert all(s.end_time is not None and s.status.status_code is not StatusCode.ERROR for s in llm_spans)


def test_generator_send_and_throw_are_passed_through(plugin: Spans) -> None:
    @agent_otel.tool("echo")
    def echo() -> Iterator[Any]:
        received = None
        while True:
            try:
                received = yield received
            except KeyError:
                received = "recovered"

    gen = echo()
    next(gen)
    assert gen.send("a") == "a"
    assert gen.throw(KeyError("k")) == "recovered"
    gen.close()
    assert [s.name for s in plugin()] == ["execute_tool echo"]


def test_async_generator(plugin: Spans) -> None:
    @agent_otel.agent("async-streamer")
    async def tokens() -> AsyncIterator[str]:
        for word in ("a", "b"):
            await asyncio.sleep(0)
            yield word

    async def consume() -> list[str]:
        return [w async for w in tokens()]

    assert asyncio.run(consume()) == ["a", "b"]
    (span,) = plugin()
    assert span.name == "invoke_agent async-streamer" and span.status.status_code is not StatusCode.ERROR


def test_async_context_manager(plugin: Spans) -> None:
    async def main() -> None:
        async with agent_otel.agent("ctx-bot") as run:
            async with agent_otel.llm("gpt-4o-mini") as call:
                call.record_tokens(input=1, output=2)
            run.set_input("hello")

    asyncio.run(main())
    spans = by_name(plugin())
    assert spans["chat gpt-4o-mini"].parent.span_id == spans["invoke_agent ctx-bot"].context.span_id


def test_exceptions_are_recorded_scrubbed_and_reraised(plugin: Spans) -> None:
    class UpstreamError(Exception):
        pass

    with pytest.raises(UpstreamError, match="token"), agent_otel.agent("failing-bot"):
        raise UpstreamError(f"token {SECRET} was refused for ops@example.com")
    with pytest.raises(TimeoutError), agent_otel.agent("slow-bot"):
        raise TimeoutError("took too long")
    spans = by_name(plugin())
    failed = spans["invoke_agent failing-bot"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"].endswith("UpstreamError")
    assert SECRET not in (failed.status.description or "") and "ops@example.com" not in failed.status.description
    (event,) = [e for e in failed.events if e.name == "exception"]
    assert "exception.stacktrace" not in event.attributes
    assert SECRET not in str(event.attributes["exception.message"])
    assert spans["invoke_agent slow-bot"].attributes["agent_otel.execution.status"] == "timeout"


def test_fail_and_status_without_raising(plugin: Spans) -> None:
    with agent_otel.agent("bot") as run:
        run.fail("RateLimitError", "slow down", status="failed")
    with pytest.raises(ValueError, match="status must be one of"), agent_otel.agent("bot") as run:
        run.set_status("exploded")
    first = plugin()[0]
    assert first.attributes["agent_otel.execution.status"] == "failed"
    assert first.attributes["error.type"] == "RateLimitError" and first.status.status_code is StatusCode.ERROR


def test_feedback_inside_and_after_an_execution(plugin: Spans) -> None:
    with agent_otel.agent("support-bot", user_id="user-1") as run:
        agent_otel.feedback(rating=5, favorite=True, comment="great, mail me at me@example.com")
    agent_otel.feedback(agent="support-bot", execution_id=run.execution_id, rating=2, user_id="user-1")
    with pytest.raises(ValueError, match="rating"):
        agent_otel.feedback(agent="support-bot", rating=7)
    with pytest.raises(ValueError, match="rating"):
        agent_otel.feedback(agent="support-bot", rating=True)
    with pytest.raises(ValueError, match="needs agent"):
        agent_otel.feedback(rating=3)
    spans = by_name(plugin())
    (inside,) = spans["invoke_agent support-bot"].events
    assert inside.name == "agent_otel.feedback"
    assert inside.attributes["agent_otel.feedback.rating"] == 5 and inside.attributes["agent_otel.feedback.favorite"]
    assert "me@example.com" not in inside.attributes["agent_otel.feedback.comment"]
    later = spans["agent_otel.feedback"]
    assert later.parent is None and later.attributes["agent_otel.execution.id"] == run.execution_id
    assert later.attributes["user.id"] == "user-1" and later.events[0].attributes["agent_otel.feedback.rating"] == 2


def test_content_never_leaves_by_default(plugin: Spans) -> None:
    with agent_otel.agent("bot") as run:
        run.set_input(f"summarise this, my key is {SECRET}")
        with agent_otel.llm("gpt-4o-mini", **{"gen_ai.input.messages": f"[{{'content': '{SECRET}'}}]"}):
            pass
    for span in plugin():
        text = repr(dict(span.attributes))
        assert SECRET not in text and "summarise" not in text
    spans = by_name(plugin())
    assert spans["invoke_agent bot"].attributes["agent_otel.input.size"] == len(f"summarise this, my key is {SECRET}")
    assert spans["invoke_agent bot"].attributes["agent_otel.input.type"] == "text"
    assert spans["chat gpt-4o-mini"].attributes["agent_otel.input.type"] == "json"


def test_captured_content_is_redacted(exported: Spans) -> None:
    exported.options["capture_content"] = True  # type: ignore[attr-defined]
    exported()
    with agent_otel.agent("bot") as run:
        run.set_input(f"summarise this, my key is {SECRET}")
    (span,) = exported()
    content = span.attributes["agent_otel.input.content"]
    assert "summarise this" in content and SECRET not in content
    assert agent_otel.stats()["redactions"]
