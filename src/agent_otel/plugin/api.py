"""Mark agent executions, tool calls and LLM calls.

``agent``, ``tool`` and ``llm`` each return an operation that is a context manager (``with`` and
``async with``) and a decorator (plain and ``async`` functions, generators and async generators;
every call of the decorated function is one span). The spans follow the OpenTelemetry GenAI
conventions (``invoke_agent {name}``, ``execute_tool {name}``, ``chat {model}``) plus agent-otel's
own namespace for what no convention covers (``agent_otel.*``, see ``agent_otel.semconv``).

``user_context`` sets the user and session once per request (one OpenTelemetry context entry, or
W3C baggage with ``propagate=True``): the plugin's processor copies them onto every span started
beneath, auto-instrumented ones included.

Nothing here raises into the caller because of telemetry: a failure to start or end a span is
logged at debug level and the code runs on without it. Exceptions raised by the caller's own code
are recorded on the span (type, scrubbed message, no stack trace leaves the process) and re-raised
unchanged. Invalid arguments (a rating of 7) are the only errors raised: ``ValueError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agent_otel import semconv as sc
from agent_otel.plugin.configure import capture_content_enabled, installed
from agent_otel.plugin.processor import IDENTITY_KEY
from agent_otel.sanitize import describe

TRACER_NAME: Final = "agent_otel"
STATUSES: Final = frozenset({"success", "failed", "timeout", "error"})
_RUN_KEY: Final = context.create_key("agent_otel.run")
_NOT_ERRORS: Final = (GeneratorExit, StopIteration, StopAsyncIteration)

log = logging.getLogger("agent_otel.plugin")
F = TypeVar("F", bound=Callable[..., Any])

_cached: list[Any] = [None, None]  # (provider, its tracer): the lookup costs one identity check


def _tracer() -> trace.Tracer:
    """The tracer of the provider ``configure`` installed, else of the global provider."""
    provider: Any = installed() or trace.get_tracer_provider()
    cached_provider, tracer = _cached
    if cached_provider is not provider or tracer is None:
        from agent_otel import __version__

        tracer = provider.get_tracer(TRACER_NAME, __version__)
        _cached[:] = [provider, tracer]
    return tracer  # type: ignore[no-any-return]


def _with_user(
    ctx: context.Context, user_id: str | None, session_id: str | None, propagate: bool = False
) -> context.Context:
    """``ctx`` with the user and session set (an inner context keeps what it does not replace)."""
    outer = context.get_value(IDENTITY_KEY, ctx)
    outer_user, outer_session = outer if isinstance(outer, tuple) else (None, None)
    user = str(user_id) if user_id is not None else outer_user
    session = str(session_id) if session_id is not None else outer_session
    ctx = context.set_value(IDENTITY_KEY, (user, session), ctx)
    if propagate:
        if user is not None:
            ctx = baggage.set_baggage(sc.USER_ID, user, ctx)
        if session is not None:
            ctx = baggage.set_baggage(sc.SESSION_ID, session, ctx)
    return ctx


@contextlib.contextmanager
def user_context(
    user_id: str | None = None, session_id: str | None = None, *, propagate: bool = False
) -> Iterator[None]:
    """Set the user and session once per request: every span started inside carries ``user.id``
    and ``session.id``, auto-instrumented spans included. Works in sync and async code
    (contexts follow ``contextvars``). With ``propagate=True`` they are also put in W3C baggage,
    so instrumented HTTP clients carry them to other services (whose agent-otel plugin reads
    them from baggage)."""
    token = context.attach(_with_user(context.get_current(), user_id, session_id, propagate))
    try:
        yield
    finally:
        context.detach(token)


def current_run() -> AgentRun | None:
    """The agent execution whose code is running now, if any."""
    run = context.get_value(_RUN_KEY)
    return run if isinstance(run, AgentRun) else None


class _Operation:
    """A span-backed operation: context manager, async context manager and decorator."""

    span_kind = SpanKind.INTERNAL

    def __init__(
        self,
        name: str,
        attributes: dict[str, Any],
        start_time: int | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        self._name = name
        self._attributes = {k: v for k, v in attributes.items() if v is not None}
        self._start_time = start_time
        self._user = (user_id, session_id)
        self._ctx: context.Context | None = None
        self._tokens: list[object] = []
        self._ended = False
        self.span: Span = trace.INVALID_SPAN
        self.end_time: int | None = None

    # -- lifecycle (never raises) ----------------------------------------------------------------

    def _copy(self) -> Self:
        return type(self)(self._name, dict(self._attributes), None, *self._user)

    def _start(self) -> None:
        try:
            ctx = context.get_current()
            if self._user != (None, None):
                ctx = _with_user(ctx, *self._user)
            self.span = _tracer().start_span(
                self._name,
                context=ctx,
                kind=self.span_kind,
                attributes=self._attributes,
                start_time=self._start_time,
            )
            ctx = trace.set_span_in_context(self.span, ctx)
            if isinstance(self, AgentRun):
                ctx = context.set_value(_RUN_KEY, self, ctx)
            self._ctx = ctx
        except Exception as exc:
            log.debug("agent-otel could not start a span: %s", type(exc).__name__)
            self.span = trace.INVALID_SPAN
            self._ctx = None

    def _activate(self) -> None:
        if self._ctx is not None:
            self._tokens.append(context.attach(self._ctx))

    def _deactivate(self) -> None:
        if self._tokens:
            context.detach(self._tokens.pop())  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        self._activate()
        try:
            yield
        finally:
            self._deactivate()

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if exc is not None and not isinstance(exc, _NOT_ERRORS):
                self.record_error(exc)
            self.span.end(end_time=self.end_time)
        except Exception as error:
            log.debug("agent-otel could not end a span: %s", type(error).__name__)

    # -- context managers --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._start()
        self._activate()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._finish(exc)
        finally:
            self._deactivate()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ---------------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Decorate ``func``: each call runs inside a fresh span like this one."""
        if inspect.isasyncgenfunction(func):
            return self._wrap_async_generator(func)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return self._wrap_generator(func)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._copy():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _wrap_generator(self, func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
        """The span lasts from the first ``next`` to exhaustion, ``close`` or an error; it is the
        current span only while the generator's own code runs, never in the consumer's."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            op = self._copy()
            op._start()
            try:
                with op._active():
                    gen = func(*args, **kwargs)
                throw: BaseException | None = None
                sent: Any = None
                while True:
                    with op._active():
                        try:
                            item = gen.send(sent) if throw is None else gen.throw(throw)
                        except StopIteration as stop:
                            op._finish(None)
                            return stop.value
                    throw = sent = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        with op._active():
                            gen.close()
                        op._finish(None)
                        raise
                    except BaseException as exc:  # thrown in by the consumer: pass it on
                        throw = exc
            except BaseException as exc:
                op._finish(exc)
                raise

        return wrapper

    def _wrap_async_generator(self, func: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            op = self._copy()
            op._start()
            try:
                with op._active():
                    agen: Any = func(*args, **kwargs)
                throw: BaseException | None = None
                sent: Any = None
                while True:
                    with op._active():
                        try:
                            item = await (agen.asend(sent) if throw is None else agen.athrow(throw))
                        except StopAsyncIteration:
                            op._finish(None)
                            return
                    throw = sent = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        with op._active():
                            await agen.aclose()
                        op._finish(None)
                        raise
                    except BaseException as exc:
                        throw = exc
            except BaseException as exc:
                op._finish(exc)
                raise

        return wrapper

    # -- recording ---------------------------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Set one span attribute (``None`` is ignored)."""
        if value is not None:
            try:
                self.span.set_attribute(key, value)
            except Exception as exc:
                log.debug("agent-otel could not set %s: %s", key[:64], type(exc).__name__)

    def set_input(self, value: Any) -> None:
        """Record the input's size and type; the content itself leaves the process only when
        content capture is on (and then with secrets redacted)."""
        self._content(value, sc.INPUT_SIZE, sc.INPUT_TYPE, "agent_otel.input.content")

    def set_output(self, value: Any) -> None:
        self._content(value, sc.OUTPUT_SIZE, sc.OUTPUT_TYPE, "agent_otel.output.content")

    def _content(self, value: Any, size_key: str, type_key: str, content_key: str) -> None:
        size, type_ = describe(value)
        self.set(size_key, size)
        self.set(type_key, type_)
        if capture_content_enabled():
            self.set(content_key, value if isinstance(value, str) else repr(value))

    def set_status(self, status: str, message: str | None = None, error_type: str | None = None) -> None:
        """``success``, ``failed``, ``timeout`` or ``error``; anything but success marks the span
        as an error (without raising)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status[:20]!r}")
        self.set(sc.EXECUTION_STATUS, status)
        if status != "success":
            self.set(sc.ERROR_TYPE, error_type or status)
            try:
                self.span.set_status(Status(StatusCode.ERROR, message))
            except Exception as exc:
                log.debug("agent-otel could not set a status: %s", type(exc).__name__)

    def fail(self, error_type: str, message: str | None = None, status: str = "failed") -> None:
        """Mark the operation failed without raising (``failed``, ``timeout`` or ``error``)."""
        self.set_status(status, message, error_type)

    def record_error(self, exc: BaseException) -> None:
        """Record an exception (the span's status, ``error.type`` and an ``exception`` event whose
        message the processor scrubs; stack traces never leave the process)."""
        try:
            error_type = type(exc).__qualname__
            module = type(exc).__module__
            if module and module != "builtins":
                error_type = f"{module}.{error_type}"
            self.span.set_attribute(sc.ERROR_TYPE, error_type)
            if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                self.span.set_attribute(sc.EXECUTION_STATUS, "timeout")
            self.span.record_exception(exc, escaped=True)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        except Exception as error:
            log.debug("agent-otel could not record an error: %s", type(error).__name__)


class AgentRun(_Operation):
    """One agent execution (``invoke_agent`` span)."""

    @property
    def agent_name(self) -> str | None:
        name = self._attributes.get(sc.GEN_AI_AGENT_NAME)
        return None if name is None else str(name)

    @property
    def execution_id(self) -> str:
        """The id the collector stores this execution under (for feedback sent later)."""
        given = self._attributes.get(sc.EXECUTION_ID)
        if given is not None:
            return str(given)
        ctx = self.span.get_span_context()
        return f"{ctx.trace_id:032x}-{ctx.span_id:016x}"

    def record_credits(self, credits: float) -> None:
        self.set(sc.CREDITS, credits)

    def record_timings(
        self, queue_ms: float | None = None, processing_ms: float | None = None, response_ms: float | None = None
    ) -> None:
        self.set(sc.QUEUE_TIME_MS, queue_ms)
        self.set(sc.PROCESSING_TIME_MS, processing_ms)
        self.set(sc.RESPONSE_TIME_MS, response_ms)

    def record_tokens(self, input: int = 0, output: int = 0) -> None:
        """Tokens of an agent that makes no LLM spans of its own (the collector sums LLM spans
        otherwise, so a total set here is never counted twice)."""
        self.set(sc.GEN_AI_USAGE_INPUT_TOKENS, input)
        self.set(sc.GEN_AI_USAGE_OUTPUT_TOKENS, output)

    def set_http(
        self, status_code: int | None = None, user_agent: str | None = None, client_ip: str | None = None
    ) -> None:
        """The request that triggered the execution (the collector anonymises the address)."""
        self.set(sc.HTTP_RESPONSE_STATUS_CODE, status_code)
        self.set(sc.USER_AGENT_ORIGINAL, user_agent)
        self.set(sc.CLIENT_ADDRESS, client_ip)


class LlmCall(_Operation):
    """One model call (``chat {model}`` span, kind CLIENT)."""

    span_kind = SpanKind.CLIENT

    def record_tokens(self, input: int = 0, output: int = 0) -> None:
        self.set(sc.GEN_AI_USAGE_INPUT_TOKENS, input)
        self.set(sc.GEN_AI_USAGE_OUTPUT_TOKENS, output)

    def set_response_model(self, model: str) -> None:
        self.set(sc.GEN_AI_RESPONSE_MODEL, model)

    def set_streaming(self, streaming: bool = True) -> None:
        self.set(sc.GEN_AI_REQUEST_STREAM, streaming)

    def set_finish_reason(self, reason: str) -> None:
        self.set(sc.GEN_AI_RESPONSE_FINISH_REASONS, [reason])


class ToolCall(_Operation):
    """One tool call (``execute_tool {name}`` span)."""


def agent(
    name: str,
    *,
    agent_id: str | None = None,
    execution_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    intent: str | None = None,
    feature: str | None = None,
    description: str | None = None,
    version: str | None = None,
    start_time: int | None = None,
    **attributes: Any,
) -> AgentRun:
    """An agent execution: an ``invoke_agent {name}`` span. ``user_id``/``session_id`` apply to
    every span beneath, like ``user_context``."""
    return AgentRun(
        f"{sc.OP_INVOKE_AGENT} {name}",
        {
            sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
            sc.GEN_AI_AGENT_NAME: name,
            sc.GEN_AI_AGENT_ID: agent_id,
            sc.GEN_AI_AGENT_DESCRIPTION: description,
            sc.GEN_AI_AGENT_VERSION: version,
            sc.EXECUTION_ID: execution_id,
            sc.INTENT: intent,
            sc.FEATURE: feature,
            **attributes,
        },
        start_time,
        user_id,
        session_id,
    )


def llm(
    model: str,
    *,
    provider: str | None = None,
    operation: str = sc.OP_CHAT,
    start_time: int | None = None,
    **attributes: Any,
) -> LlmCall:
    """An LLM call: a ``{operation} {model}`` span (``chat gpt-4o-mini``)."""
    return LlmCall(
        f"{operation} {model}",
        {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.GEN_AI_PROVIDER_NAME: provider,
            **attributes,
        },
        start_time,
    )


def tool(
    name: str,
    *,
    call_id: str | None = None,
    tool_type: str | None = None,
    start_time: int | None = None,
    **attributes: Any,
) -> ToolCall:
    """A tool call: an ``execute_tool {name}`` span."""
    return ToolCall(
        f"{sc.OP_EXECUTE_TOOL} {name}",
        {
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: name,
            sc.GEN_AI_TOOL_CALL_ID: call_id,
            sc.GEN_AI_TOOL_TYPE: tool_type,
            **attributes,
        },
        start_time,
    )


def feedback(
    *,
    agent: str | None = None,
    agent_id: str | None = None,
    rating: int | None = None,
    favorite: bool | None = None,
    comment: str | None = None,
    user_id: str | None = None,
    execution_id: str | None = None,
    feedback_id: str | None = None,
) -> None:
    """User feedback on an agent: a rating from 1 to 5, favorite or not, free text (scrubbed in
    the plugin and again by the collector). It reaches ``agent_feedback`` and the per user x agent
    rollup ``user_agent_interactions``.

    Inside a running execution (``with agent(...)``) it is recorded on that execution. Later
    (another request), pass the ``execution_id`` (``run.execution_id``) and/or the agent.
    """
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5):
        raise ValueError(f"rating must be an integer from 1 to 5, not {rating!r}")
    if rating is None and favorite is None and not comment:
        raise ValueError("feedback needs a rating, favorite or comment")
    event = {
        sc.FEEDBACK_RATING: rating,
        sc.FEEDBACK_FAVORITE: favorite,
        sc.FEEDBACK_COMMENT: comment,
        sc.FEEDBACK_ID: feedback_id,
    }
    event_attributes: dict[str, Any] = {k: v for k, v in event.items() if v is not None}
    try:
        run = current_run()
        if run is not None and execution_id in (None, run.execution_id) and agent in (None, run.agent_name):
            run.span.add_event(sc.FEEDBACK_EVENT, event_attributes)
            return
        if agent is None and agent_id is None and run is None:
            raise ValueError("feedback outside an agent execution needs agent= or agent_id=")
        attributes: dict[str, Any] = {
            sc.GEN_AI_AGENT_NAME: agent,
            sc.GEN_AI_AGENT_ID: agent_id,
            sc.USER_ID: user_id if user_id is not None else baggage.get_baggage(sc.USER_ID),
            sc.EXECUTION_ID: execution_id,
        }
        span = _tracer().start_span(
            sc.FEEDBACK_EVENT, context=context.Context(), attributes={k: v for k, v in attributes.items() if v}
        )
        span.add_event(sc.FEEDBACK_EVENT, event_attributes)
        span.end()
    except ValueError:
        raise
    except Exception as exc:
        log.debug("agent-otel could not record feedback: %s", type(exc).__name__)
