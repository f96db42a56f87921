"""``agent-otel serve`` (``--workers N``, default 1): N ingest processes share the OTLP listeners.

One Python process can use only one core (the GIL), and ingest is CPU-bound (decode, normalize,
sanitize, COPY encoding); the rollup applier is too, and in the ingest process its rounds took
the interpreter from ingest (8 to 24% fewer spans acknowledged per second, see
docs/performance.md). So, unless ``--single-process`` asks for everything in one process:

- the parent migrates the database, reserves the OTLP ports, serves the HTTP API and runs the
  background jobs (the paced rollup applier, partitions, retention); it does not ingest;
- each worker binds the same OTLP/HTTP and OTLP/gRPC ports with ``SO_REUSEPORT`` (the kernel
  spreads connections across them), runs its own group-commit writer, and exposes its metrics on
  a private port;
- the parent's ``/metrics`` merges the workers' expositions (counters and histograms summed,
  ``*_up`` gauges and ``*_created`` timestamps take the minimum, exemplars kept), so Prometheus scrapes one target;
- the workers are forked at start-up, before the parent opens anything, so they share its
  imported code and objects (``fork_worker``); each gets its settings as JSON on stdin once the
  database is migrated. When the parent dies the pipe closes and the workers drain and exit. A
  worker that dies is restarted as a new interpreter (by then the parent runs threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.samples import Sample
from pydantic import SecretStr

from agent_otel.settings import ListenAddress, Settings

if TYPE_CHECKING:
    from agent_otel.collector.service import Collector

log = logging.getLogger(__name__)

WORKER_READY = "worker metrics on "
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def settings_json(settings: Settings, **overrides: Any) -> str:
    """The settings as JSON a worker can validate again (secrets included: sent over a pipe)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    data: dict[str, Any] = plain(settings.model_dump())  # sections added later come along
    data.update(overrides)
    return json.dumps(data)


def reserve_port(address: ListenAddress) -> tuple[socket.socket, int]:
    """Bind (not listen) with SO_REUSEPORT: the port is ours until the workers bind it too.

    SO_REUSEPORT would also let this collector share a port that another process (of the same
    user) listens on already, silently splitting that one's traffic between the two; so a fixed
    port is first checked without it (``ensure_free``)."""
    from agent_otel.collector.service import bind, ensure_free

    ensure_free(address)
    sock = bind(address, reuse_port=True, listen=False)
    return sock, int(sock.getsockname()[1])


class ForkedChild:
    """A worker forked by ``fork_worker``, with the part of ``subprocess.Popen``'s interface that
    ``Worker`` uses."""

    def __init__(self, pid: int, stdin: IO[str], stdout: IO[str]) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_worker(index: int, close: list[int]) -> ForkedChild:
    """Fork worker ``index`` from this process while it is still single-threaded, has imported
    what a worker runs and has opened no connection, socket or event loop (the start of
    ``serve_workers``). The worker then shares the interpreter's imported code and objects with
    this process and with the other workers (copy-on-write) instead of importing its own copy
    (about 70 MB each; issue 7 counts the memory of the whole process tree). ``gc.freeze()``
    first, as CPython documents for pre-fork servers: collections in the worker then never write
    to those objects' headers, which would copy their pages. The worker waits for its settings on
    its stdin exactly like a spawned one; ``close`` lists this process's ends of the pipes of
    workers forked before, which the new worker must not keep open (a worker sees its parent
    leave as the end of its stdin)."""
    settings_r, settings_w = os.pipe()
    ready_r, ready_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the parent's code
        code = 1
        try:
            for fd in (*close, settings_w, ready_r):
                os.close(fd)
            os.dup2(settings_r, 0)
            os.dup2(ready_w, 1)
            os.close(settings_r)
            os.close(ready_w)
            code = _child(index)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(settings_r)
    os.close(ready_w)
    close += [settings_w, ready_r]
    return ForkedChild(pid, os.fdopen(settings_w, "w"), os.fdopen(ready_r, "r"))


@dataclass
class Worker:
    index: int
    settings_text: str
    process: subprocess.Popen[str] | ForkedChild | None = None
    metrics_port: int | None = None
    restarts: int = 0

    def start(self, forked: ForkedChild | None = None) -> None:
        """Start the worker: ``forked`` (forked at start-up, waiting for its settings), or a new
        interpreter (a restart: this process runs threads by then, and forking a threaded
        process is unsafe)."""
        self.process = forked or subprocess.Popen(
            [sys.executable, "-m", "agent_otel.collector.workers", "--child", str(self.index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(self.settings_text + "\n")
        self.process.stdin.flush()  # stdin stays open: closing it tells the worker to stop
        for line in self.process.stdout:
            if line.startswith(WORKER_READY):
                self.metrics_port = int(line.rsplit(":", 1)[1])
                break
        else:
            raise RuntimeError(f"worker {self.index} exited during start-up (code {self.process.wait()})")
        threading.Thread(target=self._drain_stdout, daemon=True, name=f"worker-{self.index}-out").start()

    def _drain_stdout(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.write(line)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
        return code


@dataclass(eq=False)  # registries key collectors by identity
class WorkerMetrics(PromCollector):
    """Merges the workers' OpenMetrics expositions at scrape time."""

    workers: list[Worker]
    timeout: float = 5.0
    local: CollectorRegistry | None = None
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    def _families(self) -> Iterator[Metric]:
        if self.local is not None:
            yield from self.local.collect()
        for worker in self.workers:
            if worker.metrics_port is None:
                continue
            try:
                response = self._client.get(
                    f"http://127.0.0.1:{worker.metrics_port}/metrics", headers={"Accept": _OPENMETRICS}
                )
            except httpx.HTTPError:
                continue  # a worker being restarted: its counters come back with it
            yield from text_string_to_metric_families(response.text)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        return merge_families(self._families())


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Sample]] = {}
    for family in families:
        target = merged.get(family.name)
        if target is None:
            target = Metric(family.name, family.documentation, family.type, family.unit)
            merged[family.name] = target
            values[family.name] = {}
        samples = values[family.name]
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            seen = samples.get(key)
            if seen is None:
                samples[key] = Sample(sample.name, sample.labels, sample.value, None, sample.exemplar)
            elif family.type == "info":
                continue
            elif (family.type == "gauge" and family.name.endswith("_up")) or sample.name.endswith("_created"):
                samples[key] = seen._replace(value=min(seen.value, sample.value))
            else:
                samples[key] = seen._replace(value=seen.value + sample.value, exemplar=sample.exemplar or seen.exemplar)
    for name, target in merged.items():
        target.samples = list(values[name].values())
    return list(merged.values())


def workers_ready(workers: Iterable[Worker], timeout: float = 1.0) -> bool:
    """The supervisor's readiness (its ``/readyz`` "writer"): whether ingest works, that is
    whether at least one worker answers its own ``/readyz`` (its database connection and its
    writer accept work). A worker that died or is being restarted does not answer; while another
    one does, the kernel sends new connections to that one."""
    for worker in workers:
        if worker.metrics_port is None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{worker.metrics_port}/readyz", timeout=timeout).status_code == 200:
                return True
    return False


def serve_workers(settings: Settings, ready: Callable[[Collector], None] | None = None) -> int:
    """Run the parent: reserve ports, start the workers, serve the API, supervise. ``ready`` is
    called once the workers ingest and the API listens (as ``Collector.run`` calls it)."""
    from agent_otel.collector.service import Collector, ensure_free, tune_gc

    # Fork the workers first: nothing is open yet and no thread runs (see fork_worker); they wait
    # for their settings, sent once the ports are reserved and the database is migrated.
    count = settings.worker_count
    forked: list[ForkedChild | None] = [None] * count
    if threading.active_count() == 1:
        inherited: list[int] = []
        forked = [fork_worker(i, inherited) for i in range(count)]
    try:
        grpc_sock, grpc_port = reserve_port(settings.otlp_grpc)
        http_sock, http_port = reserve_port(settings.otlp_http)
        ensure_free(settings.http)  # the API's port, before the workers start
        parent = Collector(settings, role="api")
        parent.prepare_database()  # migrations, partitions and prices once, before any worker writes
    except BaseException:
        for child in forked:
            if child is not None:
                child.stdin.close()  # end of stdin before any settings: the worker exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(30)
        raise
    worker_text = settings_json(
        settings,
        otlp_grpc=f"{settings.otlp_grpc.host}:{grpc_port}",
        otlp_http=f"{settings.otlp_http.host}:{http_port}",
        http="127.0.0.1:0",
        migrate=False,
        workers=1,
    )
    workers = [Worker(i, worker_text) for i in range(count)]
    for worker, child in zip(workers, forked, strict=True):
        worker.start(child)
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(workers, local=parent.registry))
    parent.api_context.registry = registry
    parent.api_context.is_ready = lambda: workers_ready(workers)
    parent.ports = {"otlp-grpc": grpc_port, "otlp-http": http_port}

    stopping = threading.Event()

    def supervise() -> None:
        while not stopping.wait(1.0):
            for worker in workers:
                if worker.process is not None and worker.process.poll() is not None and not stopping.is_set():
                    log.warning("worker %d exited (code %s); restarting", worker.index, worker.process.returncode)
                    worker.restarts += 1
                    worker.wait(0)
                    with contextlib.suppress(Exception):
                        worker.start()

    threading.Thread(target=supervise, daemon=True, name="supervisor").start()
    tune_gc()
    try:
        asyncio.run(parent.run(ready, skip_prepare=True))
    finally:
        stopping.set()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.wait(60)
        grpc_sock.close()
        http_sock.close()
    return 0


def _child(index: int) -> int:
    """A worker: read settings from stdin, ingest until SIGTERM or until stdin closes."""
    from agent_otel.collector.service import Collector, tune_allocator, tune_gc
    from agent_otel.settings import load_settings

    tune_allocator()  # inherited when forked; a restarted worker is a new interpreter

    line = sys.stdin.readline()
    if not line:  # the parent failed to start (or is gone) before sending settings
        return 0
    settings = load_settings(json.loads(line), environ={})
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,  # a forked worker inherits the parent's logging set-up
    )
    collector = Collector(settings, role="ingest", announce=lambda _line: None)

    async def ready(c: Collector) -> None:
        print(f"{WORKER_READY}127.0.0.1:{c.ports['http']}", flush=True)
        loop = asyncio.get_running_loop()

        def watch_parent() -> None:
            sys.stdin.read()  # returns at EOF: the parent is gone
            loop.call_soon_threadsafe(c.stop)

        threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()

    started = time.monotonic()
    tune_gc()
    asyncio.run(collector.run(ready))
    log.info("worker %d stopped after %.0f s", index, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child(int(sys.argv[2])))
    sys.exit("agent_otel.collector.workers is started by `agent-otel serve --workers N`")
