"""``agent-otel serve``: builds every component from the settings and runs them in one loop.

Start-up: migrate -> partitions -> prices -> writer -> listeners (printed as
``<name> listening on HOST:PORT``). Shutdown (SIGTERM/SIGINT): stop accepting, let in-flight
requests finish, drain the writer, exit. Nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import os
import platform
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event

from agent_otel import __version__
from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.maintenance import refresh_statistics
from agent_otel.collector.analytics.outbox import OutboxHook, RollupApplier
from agent_otel.collector.analytics.unpriced import UnpricedMetrics
from agent_otel.collector.api.admin import create_admin_routers
from agent_otel.collector.api.app import ApiContext, create_api_app
from agent_otel.collector.api.auth import AdminAuth
from agent_otel.collector.api.workflows import create_workflows_router
from agent_otel.collector.metrics.health import HealthMetrics
from agent_otel.collector.metrics.otlp_metrics import GenAiMetricsSink, SinkLimits
from agent_otel.collector.metrics.spans import SpanMetrics
from agent_otel.collector.pipeline.normalize import Normalizer
from agent_otel.collector.pipeline.pricing import PriceBook, Pricer, builtin_prices, load_price_file
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.core import ReceiverCore
from agent_otel.collector.receiver.grpc import add_otlp_services
from agent_otel.collector.receiver.http import create_otlp_http_app
from agent_otel.collector.security import IngestAuthenticator, KeyTable, install_tenant_scope
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.database import (
    READ_ONLY,
    begin_immediate,
    checkpoint_wal,
    create_db_engine,
    is_sqlite_file,
    is_sqlite_url,
)
from agent_otel.collector.storage.partitions import ensure_partitions
from agent_otel.collector.storage.schema import model_prices
from agent_otel.collector.storage.transaction import ChangeHook
from agent_otel.collector.storage.writer import CommitListener, GroupCommitWriter
from agent_otel.settings import ListenAddress, Settings, SettingsError

log = logging.getLogger("agent_otel")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: the service, not uvicorn, owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def cannot_listen(address: ListenAddress, exc: OSError) -> SettingsError:
    """The start-up error for an address this collector cannot listen on (in use, not local)."""
    reason = exc.strerror or str(exc)
    hint = " (another collector running?)" if exc.errno == errno.EADDRINUSE else ""
    return SettingsError(f"cannot listen on {address.host}:{address.port}: {reason}{hint}")


def ensure_free(address: ListenAddress) -> None:
    """Refuse a fixed port that cannot be bound (something listens there, or the host is not a
    local address) before a server that would fail less clearly, or with SO_REUSEPORT not at
    all, tries it. Connections in TIME_WAIT (a collector just stopped) do not count."""
    if address.port == 0:
        return
    bind(address, listen=False).close()  # SO_REUSEADDR, no SO_REUSEPORT: a listener refuses it


def bind(address: ListenAddress, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``address``, listening unless ``listen`` is False (a port reserved
    for the workers, workers.py)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it a keep-alive client waits ~40 ms (Nagle + delayed ACK) for every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise cannot_listen(address, exc) from None
    if listen:
        sock.listen(2048)
        sock.setblocking(False)
    return sock


def writer_engine(settings: Settings, *, rollups: bool = True, ingest: bool = False) -> Engine:
    """The writer's own engine. On SQLite every transaction starts with BEGIN IMMEDIATE, so the
    write lock is taken up front (no lock upgrade, no SQLITE_BUSY deadlock between processes);
    a connection from ``reading(engine)`` begins a plain (deferred) read transaction instead.
    With ``rollups`` False a SQLite file's rollups file is not attached (``create_db_engine``):
    the ingest writer's engine when the rollups are deferred, so that it locks the main file
    alone and the rollup applier writes the rollups file meanwhile.

    ``ingest``: the engine of a process that runs the ingest writer. On SQLite its connections
    get a page cache of ``storage.sqlite_writer_cache_mb`` instead of SQLite's 2 MB. Each write
    group changes a page of every random-keyed index for nearly every row (tens of MB of pages
    per group): with 2 MB even the indexes' interior pages did not stay, so the writer read
    pages back from the OS (``pread``: 14% of its CPU, perf) and wrote dirty pages to the log
    mid-transaction, again when changed again. 24 MB gave 21% more spans/s into SQLite (the
    median of interleaved pairs) for about 24 MB more memory (docs/performance.md, 2026-12-07).
    The engine's other connections (the checkpoint's, the key refresh's reads) fill little of
    theirs."""
    engine = (
        # the writer handles lost connections itself (StorageUnavailable, probe, reconnect), so no
        # per-transaction ping round trip
        create_db_engine(settings, pool_size=settings.ingest.writer_threads, max_overflow=2, pool_pre_ping=False)
        if not is_sqlite_url(settings.db_url)
        else create_db_engine(settings, rollups=rollups)
    )
    if is_sqlite_url(settings.db_url):

        @event.listens_for(engine, "connect")
        def _autocommit(dbapi_conn: Any, _record: object) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")  # its writers call checkpoint_wal
            if ingest:
                dbapi_conn.execute(f"PRAGMA cache_size=-{settings.storage.sqlite_writer_cache_mb * 1024}")  # KiB

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                begin_immediate(conn.connection.dbapi_connection)

    return engine


def seed_prices(engine: Engine, book: PriceBook) -> None:
    """Make ``model_prices`` hold the built-in table and the user's file (upsert)."""
    rows = [
        {
            "provider": p.provider,
            "model": p.model,
            "effective_from": p.effective_from,
            "input_per_million": p.input_per_million,
            "output_per_million": p.output_per_million,
            "cached_input_per_million": p.cached_input_per_million,
            "source": p.source,
        }
        for p in book.prices
    ]
    if not rows:
        return
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(model_prices)
    statement = statement.on_conflict_do_update(
        index_elements=["provider", "model", "effective_from"],
        set_={
            "input_per_million": statement.excluded.input_per_million,
            "output_per_million": statement.excluded.output_per_million,
            "cached_input_per_million": statement.excluded.cached_input_per_million,
            "source": statement.excluded.source,
        },
    )
    with engine.begin() as conn:
        conn.execute(statement, rows)


def load_price_book(settings: Settings) -> PriceBook:
    prices = builtin_prices()
    if settings.price_file is not None:
        prices += load_price_file(settings.price_file)
    return PriceBook(prices)


GC_YOUNG_THRESHOLD = 100_000
# the rollup applier's pace when it has a process of its own (the parent of `serve`'s workers):
# a round every two seconds folds two seconds of deltas, so each usage_daily and interaction row
# is rewritten once for all of them: a second's pace took about a fifth less CPU than back-to-back
# rounds, and two seconds about 8% more spans/s than one at full load on PostgreSQL (the median
# of eight pairs in turn; PostgreSQL 0.81 to 0.85 cores instead of 0.88 to 0.92) for 5 to 15 MB
# (docs/performance.md, 2026-12-07, eleventh session). In a single process a long round competes
# with ingest for the interpreter's lock and raised the ack p99 at 10,000 spans/s (median of six
# runs 245 against 173 ms), so it runs back to back there.
DEFAULT_ROLLUP_PACE = 2.0


def tune_gc() -> None:
    """Tune the garbage collector for a process that serves (called by ``serve`` and its workers,
    once everything is imported).

    Ingest allocates a few objects per attribute and keeps tens of thousands of span records
    alive while their group commits, so with CPython's default young-generation threshold (700
    allocations) the collector ran a collection every few spans and re-scanned the records in
    flight: 17% of the write path's time (``gc.callbacks``), and 20 to 25% more collector CPU per
    span under load (issue 7, docs/performance.md). Reference counting frees nearly everything
    anyway; the threshold only sets how often cycles are looked for. ``gc.freeze`` moves what
    start-up created (modules, settings, compiled patterns) out of every later collection.

    The young count is the net growth of tracked objects, so 100,000 (not 10,000) is above what
    the records in flight at full load swing by: at 17,000 spans/s a worker went from about 250
    young and 22 middle passes per 400,000 spans (15% of its CPU) to one or two, its CPU per span
    fell about 8%, and a pass, when one comes, paused it 30 to 50 ms (docs/performance.md).
    Garbage in cycles is still collected after 100,000 net allocations."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


# glibc's malloc serves a block of at least this many bytes with a mapping of its own, handed
# back to the system when the block is freed; ``tune_allocator`` fixes it at glibc's default
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at 128 KiB in a process that serves (called by ``serve`` before
    it starts a thread or forks its workers, which inherit it, and by a restarted worker);
    returns whether it was set.

    glibc starts at 128 KiB but raises the threshold to the size of every mapped block freed
    (up to 32 MiB), so after the first request bodies (about 400 KB for 512 spans) were freed,
    later ones came from the heap and its arenas, where blocks freed between others stay in the
    process. A fixed threshold maps every block of that size (a body, a decoded request, a rollup
    delta) and unmaps it when freed, at a page fault per 4 KB touched: at 40,000 spans/s over
    gRPC the ingest worker took 5,700 more faults a second, about 0.13 us of CPU per span. At
    full load (docs/performance.md, 2026-12-07, fourteenth session) the collector held 15 to 20 MB
    less: 252 and 257 MB PSS against 272 to 281 over gRPC, and into SQLite 259 and 260 MB against
    275, 276 and 298; a threshold of 1 MiB did not do it (269 and 295). Not set when
    ``GLIBC_TUNABLES`` or ``MALLOC_MMAP_THRESHOLD_`` already say, nor with another C library."""
    environ = os.environ
    if "mmap_threshold" in environ.get("GLIBC_TUNABLES", "") or "MALLOC_MMAP_THRESHOLD_" in environ:
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@dataclass
class Collector:
    """Every component of a running collector, built from one ``Settings``."""

    settings: Settings
    hooks: list[ChangeHook] = field(default_factory=list)
    listeners: list[CommitListener] = field(default_factory=list)
    routers: list[Any] = field(default_factory=list)
    announce: Callable[[str], None] = print
    # "all": one process does everything (`serve --single-process`, tests); "ingest": a worker of
    # `serve` (OTLP, writer, private metrics); "api": their parent (HTTP API, merged metrics,
    # background jobs). workers.py
    role: str = "all"

    def __post_init__(self) -> None:
        settings = self.settings
        self.registry = CollectorRegistry()
        self.health = HealthMetrics(self.registry, __version__)
        self.span_metrics = SpanMetrics(self.registry, settings.metrics, self.health.label_overflow)
        self.otlp_metrics = GenAiMetricsSink(
            self.health.label_overflow, SinkLimits(max_streams=settings.metrics.max_otlp_streams), self.registry
        )
        self.registry.register(self.otlp_metrics)
        self.routers = [create_workflows_router(), *self.routers]
        self.routers = [*create_admin_routers(), *self.routers]
        # rollups (issue 4): by default each write commits a delta and one applier folds the deltas
        # in (issue 7, analytics/outbox.py); "inline" updates them inside every write transaction
        self.rollups = RollupHook(settings.retention)
        deferred = settings.ingest.rollups == "deferred"
        self.unpriced = UnpricedMetrics(self.registry, settings.metrics.max_models, self.health.label_overflow)
        # On a SQLite file the ingest writer's engine leaves the rollups file out when the rollups
        # are deferred (its write lock would cover both files); maintenance that touches the rollup
        # tables (migrations, retention) uses an engine that attaches it.
        on_file = is_sqlite_file(settings.db_url)
        split = deferred and on_file  # an in-memory database is private to its engine: one engine
        self.engine = writer_engine(settings, rollups=not split, ingest=self.role != "api")
        self.jobs_engine = writer_engine(settings) if split else self.engine
        checkpointer = (lambda: checkpoint_wal(self.engine)) if on_file else None  # SQLite's WAL
        self.read_engine = create_db_engine(settings)
        self.price_book = load_price_book(settings)
        self.writer = GroupCommitWriter(
            self.engine,
            hooks=[OutboxHook() if deferred else self.rollups, *self.hooks],
            listeners=[self.span_metrics, self.unpriced, *self.listeners],
            max_queue_spans=settings.ingest.max_queue_spans,
            max_batch_spans=settings.ingest.max_batch_spans,
            threads=1 if is_sqlite_url(settings.db_url) else settings.ingest.writer_threads,
            retry_after=settings.ingest.retry_after_seconds,
            metrics=self.health,
            after_commit=checkpointer,
        )
        self.health.watch_database(lambda: self.writer.available)
        # one applier per deployment runs where the database-wide jobs run (not in ingest workers);
        # collectors sharing a database take turns (advisory lock)
        self.applier: RollupApplier | None = None
        if deferred and self.role != "ingest":
            pace = settings.ingest.rollup_pace_seconds
            if pace is None:  # paced only where its rounds do not share the interpreter with ingest
                pace = DEFAULT_ROLLUP_PACE if self.role == "api" else 0.0
            self.applier = RollupApplier(
                self.engine,
                self.rollups,
                interval=settings.ingest.rollup_interval_seconds,
                pace=pace,
                metrics=self.health,
                after_commit=checkpointer,
            )
        self.keys = KeyTable()  # ingest keys and tenant admin tokens, loaded in prepare_database
        install_tenant_scope(self.read_engine)  # admin API reads run under row-level security
        self.core = ReceiverCore(
            settings,
            Normalizer(SpanSanitizer(settings.sanitizer)),
            self.writer,
            authenticator=IngestAuthenticator(
                self.keys, settings.default_tenant, settings.require_ingest_key, settings.security.key_header
            ),
            pricer=Pricer(self.price_book),
            metrics_sink=self.otlp_metrics,
            metrics=self.health,
        )
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.api_context = ApiContext(
            engine=self.read_engine,
            registry=self.registry,
            auth=AdminAuth(token, self.keys),
            is_ready=lambda: self.writer.available,
            extras={"settings": settings, "price_book": self.price_book, "collector": self},
        )
        self._stop = asyncio.Event()
        self.ports: dict[str, int] = {}

    def prepare_database(self) -> None:
        if self.settings.migrate:
            migrate.upgrade(self.jobs_engine)
        else:
            problems = [p for p in migrate.check(self.jobs_engine) if p.startswith("database is at revision")]
            if problems:
                raise RuntimeError(f"{problems[0]}; run `agent-otel db upgrade` or drop --no-migrate")
        ensure_partitions(self.engine, self.settings.storage.partition_days_ahead)
        seed_prices(self.engine, self.price_book)
        if not self.keys.refresh(self.engine) and self.settings.require_ingest_key:
            raise RuntimeError("cannot load the ingest keys, and require_ingest_key is set")

    def stop(self) -> None:
        self._stop.set()

    async def _periodic(self, every_seconds: float, job: Callable[[], Any], name: str) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every_seconds)
            if self._stop.is_set():
                return
            try:
                await asyncio.to_thread(job)
            except Exception as exc:
                log.warning("%s failed: %s", name, type(exc).__name__)

    def background_jobs(self) -> list[tuple[float, Callable[[], Any], str]]:
        """Periodic jobs for this process's role: database-wide maintenance runs once per
        deployment (role "all", or the parent "api" of workers); what keeps an ingest process's
        own state current runs wherever ingest runs."""
        days = self.settings.storage.partition_days_ahead
        once = [
            (3600.0, lambda: ensure_partitions(self.engine, days), "partition maintenance"),
            (self.settings.retention.interval_minutes * 60, self._retention, "retention"),
            (60.0, self._sweep_orphans, "orphan sweep"),
            # reads pg_stat_user_tables, so one process sees what every writer changed
            (15.0, self._rollup_statistics, "rollup statistics"),
        ]
        per_ingest: list[tuple[float, Callable[[], Any], str]] = []
        everywhere = [
            (self.settings.security.key_refresh_seconds, lambda: self.keys.refresh(self.engine), "key refresh"),
        ]
        if self.role == "ingest":
            return per_ingest + everywhere
        if self.role == "api":
            return once + everywhere
        return once + per_ingest + everywhere

    def _sweep_orphans(self) -> None:
        from agent_otel.collector.storage.orphans import sweep_orphans

        changes = sweep_orphans(self.engine, self.writer.hooks)
        for listener in self.writer.listeners:
            listener.committed(changes)

    def _rollup_statistics(self) -> None:
        refresh_statistics(self.engine)

    def _retention(self) -> None:
        from agent_otel.collector.storage.retention import apply_retention

        apply_retention(self.jobs_engine, self.settings.retention)

    async def _start_grpc(self) -> tuple[grpc.aio.Server, int]:
        settings = self.settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.ingest.max_body_bytes),
                ("grpc.so_reuseport", 1 if self.role == "ingest" else 0),
            ]
        )
        add_otlp_services(server, self.core)
        try:
            port = server.add_insecure_port(str(settings.otlp_grpc))
        except RuntimeError:  # grpc's "Failed to bind": taken since ensure_free looked
            raise SettingsError(f"cannot listen on {settings.otlp_grpc} (OTLP/gRPC)") from None
        await server.start()
        return server, port

    @staticmethod
    def _uvicorn(app: Any, **options: Any) -> _EmbeddedServer:
        return _EmbeddedServer(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", http="httptools", **options)
        )

    async def run(
        self, ready: Callable[[Collector], Awaitable[None] | None] | None = None, *, skip_prepare: bool = False
    ) -> None:
        settings = self.settings
        ingest = self.role in ("all", "ingest")
        if self.role == "all":
            # every fixed port is checked before any server starts (serve_workers checks its own)
            for address in (settings.otlp_grpc, settings.otlp_http, settings.http):
                ensure_free(address)
        if self.role != "ingest" and not skip_prepare:
            await asyncio.to_thread(self.prepare_database)
        servers: list[tuple[str, _EmbeddedServer, asyncio.Task[None]]] = []
        grpc_server: grpc.aio.Server | None = None
        if ingest:
            self.writer.start()
            grpc_server, self.ports["otlp-grpc"] = await self._start_grpc()
            http_sock = bind(settings.otlp_http, reuse_port=self.role == "ingest")
            otlp_http = self._uvicorn(create_otlp_http_app(self.core), timeout_keep_alive=30)
            servers.append(("otlp-http", otlp_http, asyncio.create_task(otlp_http.serve(sockets=[http_sock]))))
            self.ports["otlp-http"] = http_sock.getsockname()[1]
        api_sock = bind(settings.http)
        api = self._uvicorn(create_api_app(self.api_context, self.routers))
        servers.append(("http", api, asyncio.create_task(api.serve(sockets=[api_sock]))))
        self.ports["http"] = api_sock.getsockname()[1]
        if self.applier is not None:
            self.applier.start()
        jobs = self.background_jobs()
        tasks = [asyncio.create_task(self._periodic(*job), name=job[2]) for job in jobs]
        while not all(server.started for _, server, _ in servers):
            for _, _, task in servers:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await asyncio.sleep(0.01)

        for name, address in (
            ("otlp-grpc", settings.otlp_grpc),
            ("otlp-http", settings.otlp_http),
            ("http", settings.http),
        ):
            self.announce(f"{name} listening on {address.host}:{self.ports[name]}")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        if ready is not None:
            result = ready(self)
            if asyncio.iscoroutine(result):
                await result

        await self._stop.wait()
        log.info("shutting down: draining accepted work")
        # stop accepting, let requests in flight finish (they wait for their commits), drain the writer
        for name, server, task in servers:
            if name != "http":
                server.should_exit = True
                await asyncio.gather(task, return_exceptions=True)
        if grpc_server is not None:
            await grpc_server.stop(grace=10)
        if ingest:
            await asyncio.to_thread(self.writer.stop)
        if self.applier is not None:  # one last round; what remains waits in the outbox
            await asyncio.to_thread(self.applier.stop)
        for _, server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, _, task in servers), *tasks, return_exceptions=True)
        self.engine.dispose()
        self.jobs_engine.dispose()
        self.read_engine.dispose()
