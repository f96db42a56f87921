"""Load generator: realistic agent traces over OTLP/HTTP protobuf or OTLP/gRPC.

Each trace is an ``invoke_agent`` span with 2-4 LLM and tool steps, GenAI attributes, a few
hundred bytes of content per span (which the collector must strip) and about 5% errors.
Deterministic from a seed. Request bodies are encoded before the clock starts (and cached on
disk), so the sender spends its CPU on sending, not on building protobufs: on a 2-core machine
the load generator shares the CPUs with the collector and PostgreSQL.

The traces cover the hour before the bodies were built. ``--arrival live`` (the default) sends
them in the order they started, each within 10 s of its neighbours, as agents running live
export them (an SDK exports a span within seconds of its end); ``shuffled`` sends the same hour in
random order, as a replay or a backfill would. Indexes keyed by time (an agent's or a model's
executions by start) are appended to in the first and written all over in the second.

    python bench/loadgen.py --endpoint http://127.0.0.1:4318 --spans 200000 --senders 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import pickle
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

CACHE = Path(__file__).resolve().parent / "results" / "cache"
AGENTS = [f"agent-{i:02d}" for i in range(24)]
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
]
TOOLS = ["search_kb", "web_search", "run_query", "read_file", "create_ticket", "fetch_page"]
WORDS = tuple(
    [
        "the",
        "customer",
        "asked",
        "about",
        "the",
        "refund",
        "policy",
        "for",
        "order",
        "and",
        "wants",
        "a",
        "summary",
        "of",
        "the",
        "contract",
        "terms",
        "please",
        "check",
        "the",
        "knowledge",
        "base",
        "and",
        "answer",
        "politely",
        "with",
        "the",
        "relevant",
        "section",
        "numbers",
    ]
)


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _content(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS))
    return " ".join(words)


ARRIVALS = ("live", "shuffled")
WINDOW_S = 3600  # the hour the traces cover


def _trace(rng: random.Random, now_ns: int, live_ns: int | None = None) -> list[Span]:
    """One trace. It starts at a random second of the hour before ``now_ns``, or with ``live_ns``
    up to 9 s before that time (the same random draws either way, so both orders send the same
    traces but for their times)."""
    trace_id = rng.randbytes(16)
    root_id = rng.randbytes(8)
    agent = rng.choice(AGENTS)
    provider, model = rng.choice(MODELS)
    offset = rng.randint(1, WINDOW_S)
    start = now_ns - offset * 1_000_000_000 if live_ns is None else live_ns - (offset % 10) * 1_000_000_000
    failed = rng.random() < 0.05
    steps = rng.randint(2, 4)
    spans: list[Span] = []
    t = start + 2_000_000
    for i in range(steps):
        span_id = rng.randbytes(8)
        duration = rng.randint(50, 3000) * 1_000_000
        is_tool = i % 2 == 1
        if is_tool:
            tool = rng.choice(TOOLS)
            attributes = [
                _kv("gen_ai.operation.name", "execute_tool"),
                _kv("gen_ai.tool.name", tool),
                _kv("gen_ai.tool.call.id", f"call_{rng.getrandbits(48):x}"),
                _kv("gen_ai.tool.call.arguments", '{"query": "' + _content(rng, 120) + '"}'),
                _kv("gen_ai.tool.call.result", '{"result": "' + _content(rng, 200) + '"}'),
            ]
            name = f"execute_tool {tool}"
        else:
            attributes = [
                _kv("gen_ai.operation.name", "chat"),
                _kv("gen_ai.provider.name", provider),
                _kv("gen_ai.request.model", model),
                _kv("gen_ai.response.model", model),
                _kv("gen_ai.usage.input_tokens", rng.randint(200, 4000)),
                _kv("gen_ai.usage.output_tokens", rng.randint(20, 800)),
                _kv("gen_ai.response.finish_reasons", "stop"),
                _kv("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):x}"),
                _kv("server.address", "api.example.com"),
                _kv("server.port", 443),
                _kv("gen_ai.input.messages", '[{"role":"user","content":"' + _content(rng, 260) + '"}]'),
                _kv("gen_ai.output.messages", '[{"role":"assistant","content":"' + _content(rng, 180) + '"}]'),
            ]
            name = f"chat {model}"
        status = Status()
        if failed and i == steps - 1:
            status = Status(code=Status.STATUS_CODE_ERROR, message="upstream returned 500: internal error")
            attributes.append(_kv("error.type", "InternalServerError"))
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=root_id,
                name=name,
                kind=Span.SPAN_KIND_CLIENT if not is_tool else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=t,
                end_time_unix_nano=t + duration,
                attributes=attributes,
                status=status,
            )
        )
        t += duration
    root_status = Status(code=Status.STATUS_CODE_ERROR, message="agent failed") if failed else Status()
    root_attributes = [
        _kv("gen_ai.operation.name", "invoke_agent"),
        _kv("gen_ai.agent.name", agent),
        _kv("gen_ai.agent.id", agent),
        _kv("gen_ai.provider.name", provider),
        _kv("user.id", f"user-{rng.randint(1, 2000):05d}"),
        _kv("gen_ai.conversation.id", f"sess-{rng.randint(1, 20000):06d}"),
        _kv("gen_ai.input.messages", _content(rng, 240)),
        _kv("agent_otel.credits", rng.randint(1, 5)),
    ]
    if failed:
        root_attributes.append(_kv("error.type", "InternalServerError"))
    spans.append(
        Span(
            trace_id=trace_id,
            span_id=root_id,
            name=f"invoke_agent {agent}",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start,
            end_time_unix_nano=t + 1_000_000,
            attributes=root_attributes,
            status=root_status,
        )
    )
    return spans  # children first, as an SDK exports them


def build_bodies(total_spans: int, batch_size: int, seed: int, arrival: str = "live") -> list[tuple[bytes, int]]:
    """(request body, span count) pairs totalling at least ``total_spans``; cached by parameters.
    ``arrival``: "live" or "shuffled" (see the module's comment)."""
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {ARRIVALS}, not {arrival!r}")
    key = hashlib.sha256(f"v3:{total_spans}:{batch_size}:{seed}:{arrival}".encode()).hexdigest()[:16]
    cache = CACHE / f"bodies-{key}.pickle"
    if cache.exists():
        loaded: list[tuple[bytes, int]] = pickle.loads(cache.read_bytes())  # noqa: S301 - our own cache file
        return loaded
    rng = random.Random(seed)
    now = time.time_ns()
    bodies: list[tuple[bytes, int]] = []
    pending: list[Span] = []
    produced = 0
    while produced < total_spans:
        # live: the traces' start times move through the hour as they are produced, ending a
        # minute before ``now`` (so that no span ends in the future)
        live = now - 60 * 10**9 - int(WINDOW_S * 10**9 * (1 - produced / total_spans)) if arrival == "live" else None
        spans = _trace(rng, now, live)
        pending.extend(spans)
        produced += len(spans)
        if len(pending) >= batch_size or produced >= total_spans:
            request = ExportTraceServiceRequest()
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.append(_kv("service.name", "loadgen"))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "loadgen"
            scope.spans.extend(pending)
            bodies.append((request.SerializeToString(), len(pending)))
            pending = []
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(bodies))
    return bodies


@dataclass
class SendResult:
    acknowledged_spans: int = 0
    refused_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # time.perf_counter() when the first request went out (after every sender had its client)
    started: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def spans_per_second(self) -> float:
        return self.acknowledged_spans / self.seconds if self.seconds else 0.0


class _HttpConnection:
    """One keep-alive HTTP/1.1 connection, the load generator's client: request heads written as
    bytes, responses read by status line, headers and Content-Length (or chunks). httpx built and
    parsed every request in Python: 3.5 us of CPU per span, on the two cores the collector and
    PostgreSQL share with it (issue 7); this takes about a third of that."""

    def __init__(self, endpoint: str) -> None:
        url = urlsplit(endpoint)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.writelines((head.encode("ascii"), body))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the collector closed the connection")
        status = int(status_line.split(None, 2)[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length := int(headers.get("content-length", "0")):
            await self.reader.readexactly(length)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _http_sender(
    endpoint: str,
    queue: asyncio.Queue[tuple[bytes, int, float] | None],
    result: SendResult,
    ready: asyncio.Barrier,
) -> None:
    connection = _HttpConnection(endpoint)
    await ready.wait()
    try:
        while (item := await queue.get()) is not None:
            body, count, due = item
            sent = max(due, time.perf_counter())
            while True:
                try:
                    status, headers = await connection.post("/v1/traces", body, "application/x-protobuf")
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                    await connection.close()
                    await asyncio.sleep(0.5)
                    continue
                if status == 200:
                    result.acknowledged_spans += count
                    result.latencies.append(time.perf_counter() - sent)
                    break
                result.refused_requests += 1
                key = f"HTTP {status}"
                result.errors[key] = result.errors.get(key, 0) + 1
                await asyncio.sleep(float(headers.get("retry-after", "1")))
    finally:
        await connection.close()


async def _grpc_sender(
    endpoint: str,
    queue: asyncio.Queue[tuple[bytes, int, float] | None],
    result: SendResult,
    ready: asyncio.Barrier,
) -> None:
    import grpc

    # Each sender stands for one agent process, so each gets its own TCP connection: by default gRPC
    # shares one subchannel (one connection) between channels with the same target and options,
    # which sent all 32 senders' requests down one connection, to one worker of `serve --workers N`
    # (SO_REUSEPORT balances connections, not requests): --workers 2 over gRPC gained nothing.
    async with grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        await ready.wait()
        while (item := await queue.get()) is not None:
            body, count, due = item
            sent = max(due, time.perf_counter())
            while True:
                try:
                    await export(body, timeout=120)
                except grpc.aio.AioRpcError as exc:
                    result.refused_requests += 1
                    key = f"gRPC {exc.code().name}"
                    result.errors[key] = result.errors.get(key, 0) + 1
                    await asyncio.sleep(1.0)
                    continue
                result.acknowledged_spans += count
                result.latencies.append(time.perf_counter() - sent)
                break


async def send(
    bodies: Sequence[tuple[bytes, int]], endpoint: str, protocol: str, senders: int, rate: float | None = None
) -> SendResult:
    """Send every body with ``senders`` concurrent connections; ``rate`` (spans/s) paces an open
    loop (latency is measured from when a request was due, so queueing counts)."""
    result = SendResult()
    queue: asyncio.Queue[tuple[bytes, int, float] | None] = asyncio.Queue(maxsize=senders * 2)
    worker = _http_sender if protocol == "http" else _grpc_sender
    # the clock starts once every sender has its client: creating 32 of them (httpx, which the
    # HTTP senders used before, loaded the CA bundle for each) took about a second of the load
    # generator's own CPU, which counted as the first requests' latency in the open loop
    ready = asyncio.Barrier(senders + 1)
    tasks = [asyncio.create_task(worker(endpoint, queue, result, ready)) for _ in range(senders)]
    await ready.wait()
    started = result.started = time.perf_counter()
    due = started
    for body, count in bodies:
        if rate:
            due += count / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await queue.put((body, count, due if rate else time.perf_counter()))
    for _ in tasks:
        await queue.put(None)
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rate", type=float, help="spans per second (open loop); default: as fast as acknowledged")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--arrival", choices=ARRIVALS, default="live", help="the traces' order (see above)")
    args = parser.parse_args()
    bodies = build_bodies(args.spans, args.batch_size, args.seed, args.arrival)
    result = asyncio.run(send(bodies, args.endpoint, args.protocol, args.senders, args.rate))
    print(
        f"acknowledged {result.acknowledged_spans} spans in {result.seconds:.1f} s: "
        f"{result.spans_per_second:,.0f} spans/s; ack latency p50 {result.percentile(0.5) * 1000:.0f} ms, "
        f"p99 {result.percentile(0.99) * 1000:.0f} ms; refused {result.refused_requests} {result.errors}"
    )
    if result.latencies:
        print(f"mean latency {statistics.mean(result.latencies) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
