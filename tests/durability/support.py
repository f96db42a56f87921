"""What the durability tests and bench/chaos.py share.

- ``ServeProcess``: ``agent-otel serve`` as a real subprocess on fixed ports, so it can be killed
  with SIGKILL, stopped with SIGTERM and restarted on the same addresses.
- ``PrivateCluster``: a throw-away PostgreSQL cluster (initdb into a temporary directory, run as
  the ``postgres`` OS user on a free port) that a test may stop and start at will. The shared
  server at 127.0.0.1:5432 is never touched.
- ``Traffic`` and ``Sender``: OTLP/HTTP requests of complete agent executions with unique ids, sent
  by threads that keep a ledger of the executions whose request got a success response, retrying
  refused requests the way the SDK exporters do.
- ``check_exactly_once``: every acknowledged execution is stored exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from sqlalchemy import Engine, text

from agent_otel.collector.service import ensure_free
from agent_otel.settings import ListenAddress, SettingsError

ROOT = Path(__file__).resolve().parents[2]
AGENT_OTEL = str(Path(sys.executable).with_name("agent-otel"))
PG_BIN = Path(os.environ.get("AGENT_OTEL_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the collector as a subprocess -------------------------------------------------------------


@dataclass
class ServeProcess:
    """``agent-otel serve`` on fixed ports; start, SIGKILL, SIGTERM, restart."""

    db_url: str
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    otlp_http: int = field(default_factory=free_port)
    otlp_grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self, timeout: float = 60.0) -> None:
        args = [
            AGENT_OTEL,
            "serve",
            "--db",
            self.db_url,
            "--otlp-http",
            f"127.0.0.1:{self.otlp_http}",
            "--otlp-grpc",
            f"127.0.0.1:{self.otlp_grpc}",
            "--http",
            f"127.0.0.1:{self.http}",
            "--log-level",
            "WARNING",
            *self.extra_args,
        ]
        if self._log is None or self._log.closed:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by close()
        self._log.write(f"--- start {self.starts} ---\n".encode())
        self._log.flush()
        env = {**os.environ, **self.env}
        # a session of its own: kill() takes the whole collector down (its ingest worker too), as
        # a crash of its host or container would
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True)
        self.starts += 1
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"agent-otel serve exited during start-up: {self.tail()}")
            seen.append(line.decode(errors="replace"))
            if line.startswith(b"metrics: "):  # printed once every listener is up
                threading.Thread(target=self._drain_stdout, daemon=True).start()
                return
        raise RuntimeError(f"agent-otel serve did not start: {''.join(seen)[-2000:]}")

    def _drain_stdout(self) -> None:
        process = self.process
        if process is not None and process.stdout is not None:
            for line in process.stdout:
                if self._log is not None and not self._log.closed:
                    self._log.write(line)

    def kill(self) -> None:
        """SIGKILL to every process of the collector: no handler runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            self._wait_ports_free()  # the worker may close its sockets a moment after the supervisor
        self._close_pipe()

    def _wait_ports_free(self, timeout: float = 10.0) -> None:
        """Until a new collector's start-up check (``ensure_free``) would accept the OTLP ports."""
        deadline = time.monotonic() + timeout
        for port in (self.otlp_http, self.otlp_grpc):
            while True:
                try:
                    ensure_free(ListenAddress(host="127.0.0.1", port=port))
                    break
                except SettingsError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(Exception):
                self.process.stdout.close()

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM: the collector drains what it accepted, then exits."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._close_pipe()
        return code

    def rss_bytes(self) -> int:
        """Resident memory of the collector's processes (the supervisor and its workers), summed."""
        import psutil

        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        total = 0
        for process in (parent, *parent.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()


# -- a private PostgreSQL cluster ----------------------------------------------------------------


class PrivateCluster:
    """A PostgreSQL cluster of its own, in a temporary directory, that tests may stop and start."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agent-otel-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "fsync = on\nmax_connections = 50\nshared_buffers = 32MB\n"
            )

    @staticmethod
    def available() -> str | None:
        """Why a private cluster cannot be made here (None: it can)."""
        if not (PG_BIN / "initdb").exists():
            return f"PostgreSQL server binaries not found in {PG_BIN}"
        if os.geteuid() != 0:
            return "creating a cluster as the postgres OS user needs root (runuser)"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres OS user"
        return None

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# -- traffic with a ledger ----------------------------------------------------------------------


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


AGENTS = [f"chaos-agent-{i}" for i in range(6)]
USERS = [f"user-{i}" for i in range(20)]


def span_key(span: Span) -> tuple[str, str]:
    return span.trace_id.hex(), span.span_id.hex()


def execution_spans(seed: str, start_ns: int, index: int) -> tuple[list[Span], str]:
    """One execution (agent > llm + tool), ids derived from ``seed``; returns spans and its id."""
    digest = hashlib.sha256(seed.encode()).digest()
    trace_id, root, llm, tool = digest[:16], digest[16:24], digest[24:32], hashlib.sha256(digest).digest()[:8]
    agent = AGENTS[index % len(AGENTS)]
    failed = index % 13 == 0
    root_span = Span(
        trace_id=trace_id,
        span_id=root,
        name=f"invoke_agent {agent}",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 40_000_000,
        attributes=[
            _kv("gen_ai.operation.name", "invoke_agent"),
            _kv("gen_ai.agent.name", agent),
            _kv("user.id", USERS[index % len(USERS)]),
            _kv("gen_ai.conversation.id", f"session-{index % 50}"),
        ],
        status=Status(code=2, message="tool failed") if failed else Status(),
    )
    llm_span = Span(
        trace_id=trace_id,
        span_id=llm,
        parent_span_id=root,
        name="chat gpt-4o-mini",
        start_time_unix_nano=start_ns + 1_000_000,
        end_time_unix_nano=start_ns + 20_000_000,
        attributes=[
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.provider.name", "openai"),
            _kv("gen_ai.request.model", "gpt-4o-mini"),
            _kv("gen_ai.usage.input_tokens", 100 + index % 50),
            _kv("gen_ai.usage.output_tokens", 20 + index % 7),
        ],
    )
    tool_span = Span(
        trace_id=trace_id,
        span_id=tool,
        parent_span_id=root,
        name="execute_tool search",
        start_time_unix_nano=start_ns + 21_000_000,
        end_time_unix_nano=start_ns + 30_000_000,
        attributes=[_kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", "search")],
    )
    return [root_span, llm_span, tool_span], f"{trace_id.hex()}-{root.hex()}"


class Traffic:
    """Request number -> (body, execution ids): deterministic, every execution unique."""

    def __init__(self, run_id: str, executions_per_request: int = 5, start_ns: int | None = None) -> None:
        self.run_id = run_id
        self.per_request = executions_per_request
        self.start_ns = start_ns or time.time_ns() - 3_600 * 10**9
        self._next = 0
        self._lock = threading.Lock()
        self.span_keys: dict[str, list[tuple[str, str]]] = {}  # execution id -> its spans (trace, span)

    def next_number(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def request(self, number: int) -> tuple[bytes, list[str]]:
        spans: list[Span] = []
        ids = []
        for i in range(self.per_request):
            index = number * self.per_request + i
            # spread over the last hour, microsecond-distinct starts
            start = self.start_ns + (index * 7_919_000) % (3_000 * 10**9)
            found, execution_id = execution_spans(f"{self.run_id}:{index}", start, index)
            spans += found
            ids.append(execution_id)
            self.span_keys[execution_id] = [span_key(s) for s in found]
        resource = Resource(attributes=[_kv("service.name", "chaos")])
        body = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
        ).SerializeToString()
        return body, ids


@dataclass
class Ledger:
    """What the senders saw: acknowledged execution ids and how requests fared."""

    acknowledged: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, ids: list[str]) -> None:
        with self.lock:
            self.acknowledged.update(ids)
            self.outcomes["200"] += 1

    def note(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1


class Sender(threading.Thread):
    """Sends requests one after another; a refused request is retried (same bytes) until it is
    acknowledged or the sender is stopped, like an SDK exporter. Only a 200 without rejected
    spans (``partial_success``) puts the request's executions in the ledger."""

    def __init__(self, endpoint: str, traffic: Traffic, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.traffic = traffic
        self.ledger = ledger
        self.stop_event = stop

    def run(self) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=2.0)) as client:
            while not self.stop_event.is_set():
                body, ids = self.traffic.request(self.traffic.next_number())
                while not self.stop_event.is_set():
                    try:
                        response = client.post(f"{self.endpoint}/v1/traces", content=body, headers=headers)
                    except httpx.HTTPError as exc:
                        self.ledger.note(type(exc).__name__)
                        self.stop_event.wait(0.05)
                        continue
                    if response.status_code == 200:
                        rejected = ExportTraceServiceResponse.FromString(response.content).partial_success
                        if rejected.rejected_spans:  # answered, but not every span was stored
                            self.ledger.note("200 partial")
                        else:
                            self.ledger.ack(ids)
                        break
                    self.ledger.note(str(response.status_code))
                    retry_after = float(response.headers.get("retry-after", "0.2"))
                    self.stop_event.wait(min(retry_after, 0.5))


def check_exactly_once(engine: Engine, acknowledged: set[str]) -> dict[str, int]:
    """Stored execution counts: every acknowledged id once, nothing twice. Returns figures."""
    with engine.connect() as conn:
        counts = {
            row[0]: row[1]
            for row in conn.execute(text("SELECT execution_id, count(*) FROM agent_executions GROUP BY execution_id"))
        }
        steps = conn.execute(
            text("SELECT count(*) FROM (SELECT trace_id, span_id FROM agent_steps GROUP BY trace_id, span_id) s")
        ).scalar_one()
        step_rows = conn.execute(text("SELECT count(*) FROM agent_steps")).scalar_one()
    missing = [e for e in acknowledged if e not in counts]
    duplicated = {e: n for e, n in counts.items() if n != 1}
    assert missing == [], f"{len(missing)} acknowledged executions lost, e.g. {missing[:3]}"
    assert duplicated == {}, f"duplicated executions: {list(duplicated.items())[:3]}"
    assert steps == step_rows, "a step is stored twice"
    return {"acknowledged": len(acknowledged), "stored": len(counts), "duplicates": len(duplicated), "steps": steps}


def rollup_problems(engine: Engine) -> list[str]:
    """Differences between stored rollups and their recomputation from raw rows (issue 4).

    Rollup deltas that a killed collector committed but did not apply are still in the outbox
    (that is their durability); they are applied first, as the next collector's applier would,
    and each must count exactly once."""
    try:
        from tests.analytics.helpers import diff_rollups, read_raw, read_rollups
    except ImportError:  # the analytics helpers are part of this repository; keep bench usable alone
        return []
    from agent_otel.collector.analytics.aggregate import recompute
    from agent_otel.collector.analytics.hook import RollupHook
    from agent_otel.collector.analytics.outbox import RollupApplier

    assert RollupApplier(engine, RollupHook()).wait_idle(), "rollup deltas could not be applied"

    return diff_rollups(read_rollups(engine), recompute(*read_raw(engine)))


def wait_until(condition: Any, timeout: float, interval: float = 0.1) -> bool:
    event = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        event.wait(interval)
    return bool(condition())
