"""The ingest benchmark (issue 7): one command, one table.

    .venv/bin/python bench/throughput.py                 # every scenario (about 15 minutes; --repeat 3 about 45)
    .venv/bin/python bench/throughput.py --quick         # fewer spans per scenario
    .venv/bin/python bench/throughput.py --spans 400000  # closed-loop scenarios of another size
    .venv/bin/python bench/throughput.py --soak 600      # also a 10-minute memory soak
    .venv/bin/python bench/throughput.py --only none --soak 600   # the soak alone
    .venv/bin/python bench/throughput.py --only none --soak 600 --soak-on sqlite   # on a SQLite file
    .venv/bin/python bench/throughput.py --quick --repeat 3  # each scenario 3 times, the median run
    .venv/bin/python bench/throughput.py --arrival shuffled  # the same hour of traces in random order

Each scenario starts a real ``agent-otel serve`` process on a fresh database and sends
pre-encoded realistic agent traces (bench/loadgen.py) over OTLP/HTTP protobuf or OTLP/gRPC, an
hour of traces in the order they ran as live agents export them (``--arrival shuffled``: the
same hour in random order, as a replay would send it; figures before 2026-12-07's eighth
session were measured that way). The
first 10 requests (5,120 spans) warm the fresh collector up (connections, temp tables, caches)
and are not measured. On PostgreSQL each measured phase (the load, the raw COPY) starts right
after a ``CHECKPOINT``. Reported per scenario:

- spans acknowledged per second: acknowledgements come only after the commit of the spans' rows
  and of their rollup deltas (deferred rollups, the default; see docs/performance.md);
- spans persisted per second: until every rollup delta has been applied to the rollup tables too
  (the outbox is empty; the rows are committed before their acknowledgement, and counted after);
- acknowledgement latency p50 and p99;
- collector CPU (cores used during the run, all its processes), peak RSS and PSS (summed over its
  processes; PSS counts a page shared by N processes 1/N in each), and PostgreSQL's CPU;
- for PostgreSQL, in the same run, the raw COPY rate: the rows the collector just stored, copied
  out and back into twin tables with the same indexes by binary COPY in one transaction, psql to
  psql with no Python in between. That is the database's own limit on this machine; the ratio
  persisted / raw is the headline figure, since absolute rates drift with the machine's load;
- from the collector's own /metrics, what its ingest writers and rollup applier did in the
  measured phase: groups, spans and requests per group, time per group, groups being written at
  a time on average, applier rounds and the share of the time it was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import ARRIVALS, SendResult, build_bodies, send  # noqa: E402

PG_ADMIN = os.environ.get("AGENT_OTEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
LISTENING = re.compile(r"^(otlp-grpc|otlp-http|http) listening on [^:]+:(\d+)$")
RAW_TABLES = ("agent_executions", "agent_steps", "agent_logs")
WARMUP_REQUESTS = 10  # 5,120 spans sent before each measurement starts


@dataclass
class Scenario:
    name: str
    database: str  # "postgresql" or "sqlite"
    protocol: str  # "http" or "grpc"
    spans: int
    workers: int | None = None  # None: serve's own default (PostgreSQL: one per CPU but one, 1 to 4; SQLite: one)
    single_process: bool = False  # `serve --single-process`: ingest, API and rollup applier in one process
    # 32 senders x 512 spans: enough work in flight to keep the collector busy (8 senders capped
    # it at 4,096 spans in flight, so the closed loop measured latency, not capacity)
    senders: int = 32
    rate: float | None = None  # open-loop spans/s; None: as fast as acknowledged
    batch_size: int = 512


@dataclass
class Outcome:
    scenario: Scenario
    sent: SendResult
    persisted_per_second: float
    collector_cores: float
    postgres_cores: float
    peak_rss_mb: float
    peak_pss_mb: float
    raw_copy_rows_per_second: float | None = None
    pipeline: PipelineFigures | None = None


# The collector's own histograms of its writer and rollup applier (its merged /metrics): where a
# run's time went, from the same run. A sum and a count per family, over every label set.
WRITE_SECONDS = "agent_otel_batch_write_duration_seconds"
GROUP_SPANS = "agent_otel_batch_size_spans"
GROUP_REQUESTS = "agent_otel_batch_size_requests"
ROUND_SECONDS = "agent_otel_rollup_apply_duration_seconds"
PIPELINE_FAMILIES = (WRITE_SECONDS, GROUP_SPANS, GROUP_REQUESTS, ROUND_SECONDS)


def histogram_totals(exposition: str) -> dict[str, float]:
    """``{family_sum: ..., family_count: ...}`` of ``PIPELINE_FAMILIES`` in a Prometheus text
    exposition, each summed over its label sets (0 when absent)."""
    totals = {f"{family}{suffix}": 0.0 for family in PIPELINE_FAMILIES for suffix in ("_sum", "_count")}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


@dataclass
class PipelineFigures:
    """What the collector's writer and rollup applier did during the measured phase."""

    groups: int  # transactions the ingest writers committed
    spans: int
    requests: int
    write_seconds: float  # summed over the groups (they overlap: writer threads, workers)
    rounds: int  # rollup applier rounds that applied deltas
    round_seconds: float
    elapsed: float  # the measured phase, until the rollups were applied

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float], elapsed: float) -> PipelineFigures:
        def delta(name: str) -> float:
            return after[name] - before[name]

        return cls(
            groups=round(delta(f"{WRITE_SECONDS}_count")),
            spans=round(delta(f"{GROUP_SPANS}_sum")),
            requests=round(delta(f"{GROUP_REQUESTS}_sum")),
            write_seconds=delta(f"{WRITE_SECONDS}_sum"),
            rounds=round(delta(f"{ROUND_SECONDS}_count")),
            round_seconds=delta(f"{ROUND_SECONDS}_sum"),
            elapsed=elapsed,
        )

    def describe(self) -> str:
        if not self.groups:
            return "no group committed"
        groups = self.groups
        spans, requests, seconds = self.spans / groups, self.requests / groups, self.write_seconds / groups
        line = (
            f"{self.groups} groups of {spans:,.0f} spans ({requests:.1f} requests), {seconds * 1000:.0f} ms each,"
            f" {self.write_seconds / self.elapsed:.2f} being written at a time on average;"
            f" rollup applier {self.rounds} rounds"
        )
        if self.rounds:
            per_round = self.round_seconds / self.rounds
            line += f" of {per_round * 1000:.0f} ms, busy {self.round_seconds / self.elapsed:.0%}"
        return line


def scrape_totals(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        return histogram_totals(response.read().decode())


class ProcessWatch:
    """CPU and peak memory of a process tree, sampled in the background: RSS summed over the
    processes, and PSS (proportional set size: each shared page divided among the processes that
    map it), which is what the tree as a whole holds; with ``--workers N`` summing RSS counts the
    interpreter's shared pages once per process."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) of the tree now, in bytes."""
        rss = pss = 0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                memory = process.memory_full_info()  # /proc/PID/smaps_rollup
                rss += memory.rss
                pss += memory.pss
        return rss, pss

    def _sample(self) -> None:
        # every half second: reading /proc/PID/smaps_rollup walks the page tables, and at five
        # reads a second per process the sampling took about 1% of the machine under test
        while not self._stop.wait(0.5):
            rss, pss = self.memory()
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class BackendWatch:
    """CPU of the PostgreSQL backends serving one database (found through pg_stat_activity),
    sampled in the background so backends that come and go are counted too. Other databases'
    activity on the same server (another benchmark, another test) is left out."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _pids(self, conn: psycopg.Connection) -> list[int]:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)).fetchall()
        return [int(r[0]) for r in rows]

    def _read(self, conn: psycopg.Connection, initial: bool = False) -> None:
        for pid in self._pids(conn):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = psutil.Process(pid).cpu_times()
                value = times.user + times.system
                if pid not in self.first:
                    self.first[pid] = value if initial else 0.0
                self.last[pid] = value

    def _sample(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            while not self._stop.wait(0.5):
                self._read(conn)

    def start(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            self._read(conn, initial=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            self._read(conn)
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def database_url(database: str, admin: str = PG_ADMIN) -> str:
    """The URL of ``database`` on the server of ``admin``."""
    base, _, _ = admin.rpartition("/")
    return f"{base}/{database}"


def create_database(admin: str = PG_ADMIN) -> str:
    name = f"agent_otel_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def drop_database(name: str, admin: str = PG_ADMIN) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def fresh_database(on: str, file_name: str, admin: str = PG_ADMIN) -> Iterator[tuple[str, str | None]]:
    """(URL, PostgreSQL database name or None) of a new database, PostgreSQL (on the server of
    ``admin``) or a SQLite file named ``file_name`` in a directory of its own; dropped or deleted
    afterwards."""
    database = create_database(admin) if on == "postgresql" else None
    sqlite_dir = tempfile.mkdtemp() if database is None else None
    try:
        yield (database_url(database, admin) if database else f"sqlite:///{sqlite_dir}/{file_name}"), database
    finally:
        if database is not None:
            drop_database(database, admin)
        if sqlite_dir is not None:
            shutil.rmtree(sqlite_dir, ignore_errors=True)


def start_collector(
    db_url: str, workers: int | None, single_process: bool
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    layout = ["--single-process"] if single_process else [] if workers is None else ["--workers", str(workers)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_otel",
            "serve",
            "--db",
            db_url,
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
            *layout,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ports: dict[str, int] = {}
    assert process.stdout is not None
    while len(ports) < 3:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("collector exited during start-up")
        match = LISTENING.match(line.strip())
        if match:
            ports[match.group(1)] = int(match.group(2))
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    return process, ports


SETTLED_SQL = (
    "SELECT (SELECT count(*) FROM agent_executions) + (SELECT count(*) FROM agent_steps),"
    " (SELECT count(*) FROM rollup_outbox)"
)
PENDING_SQL = "SELECT count(*) FROM rollup_outbox"


class OutboxWatch:
    """Rollup deltas not applied yet, on one connection, polled every 20 ms: the clock of
    "persisted". Rows need no polling: a request is acknowledged only after its rows commit, so
    once every request is acknowledged only the rollups can lag (the row count is checked once,
    after the clock stops). Counting both raw tables in every poll took a tenth of a second at
    400,000 rows, so the figure included the benchmark's own query and reconnections."""

    def __init__(self, db_url: str) -> None:
        if db_url.startswith("sqlite"):
            import sqlite3

            self._sqlite = sqlite3.connect(db_url.removeprefix("sqlite:///"))
            self._pg = None
        else:
            self._pg = psycopg.connect(db_url, autocommit=True)

    def wait_until_applied(self) -> None:
        while True:
            if self._pg is not None:
                row = self._pg.execute(PENDING_SQL).fetchone()
            else:
                row = self._sqlite.execute(PENDING_SQL).fetchone()
            if row is not None and int(row[0]) == 0:
                return
            time.sleep(0.02)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        else:
            self._sqlite.close()


def stored_rows(db_url: str) -> tuple[int, int]:
    """(raw rows stored, rollup deltas not applied yet)."""
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            rows, pending = conn.execute(SETTLED_SQL).fetchone()
            return int(rows), int(pending)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(SETTLED_SQL).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def checkpoint(db_url: str) -> None:
    """Start a measured phase (the collector's load, the raw COPY) right after a checkpoint, so
    neither inherits the other's: with the server's 1 GB ``max_wal_size`` either phase writes
    about a checkpoint's worth of WAL, and whether a checkpoint (and the full-page images after
    it) fell inside a phase depended on where the previous phase left the WAL."""
    if not db_url.startswith("sqlite"):
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def raw_copy_rate(db_url: str) -> float:
    """Rows per second of binary COPY into twins of the raw tables (same indexes), psql to psql."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for table in RAW_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS twin_{table}")
            conn.execute(f"CREATE TABLE twin_{table} (LIKE {table} INCLUDING ALL)")
        counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in RAW_TABLES}  # type: ignore[index]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for table in RAW_TABLES:
            files[table] = Path(tmp) / f"{table}.bin"
            with files[table].open("wb") as out:
                subprocess.run(
                    ["psql", db_url, "-qc", f"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)"],
                    stdout=out,
                    check=True,
                )
        checkpoint(db_url)
        started = time.perf_counter()
        script = "".join(f"\\copy twin_{t} FROM '{files[t]}' (FORMAT binary)\n" for t in RAW_TABLES)
        subprocess.run(["psql", db_url, "-q", "-1", "-v", "ON_ERROR_STOP=1"], input=script, text=True, check=True)
        elapsed = time.perf_counter() - started
    with psycopg.connect(db_url, autocommit=True) as conn:
        for table in RAW_TABLES:
            conn.execute(f"DROP TABLE twin_{table}")
    return sum(counts.values()) / elapsed


def run(scenario: Scenario, seed: int, arrival: str = "live") -> Outcome:
    with fresh_database(scenario.database, "bench.db") as (db_url, database):
        return _run(scenario, seed, arrival, db_url, database)


def _run(scenario: Scenario, seed: int, arrival: str, db_url: str, database: str | None) -> Outcome:
    bodies = build_bodies(scenario.spans, scenario.batch_size, seed, arrival)
    total = sum(count for _, count in bodies)
    process, ports = start_collector(db_url, scenario.workers, scenario.single_process)
    watch = ProcessWatch(process.pid)
    try:
        endpoint = (
            f"http://127.0.0.1:{ports['otlp-http']}"
            if scenario.protocol == "http"
            else (f"127.0.0.1:{ports['otlp-grpc']}")
        )
        watch.start()
        backends = BackendWatch(database) if database else None
        if backends is not None:
            backends.start()
        # warm-up, not measured: the first requests of a fresh process open its connections,
        # create its temp tables and fill its caches (PostgreSQL's too)
        warm, measured = bodies[:WARMUP_REQUESTS], bodies[WARMUP_REQUESTS:]
        asyncio.run(send(warm, endpoint, scenario.protocol, scenario.senders, scenario.rate))
        checkpoint(db_url)
        totals0 = scrape_totals(ports["http"])
        cpu0 = watch.cpu_seconds()
        sent = asyncio.run(send(measured, endpoint, scenario.protocol, scenario.senders, scenario.rate))
        # from the first measured request, not from before the load generator made its clients
        # (about 0.6 s of its own CPU, during which the collector idles)
        t0 = sent.started
        outbox = OutboxWatch(db_url)
        try:
            outbox.wait_until_applied()  # every span is stored (acknowledged) and every rollup delta applied
            elapsed = time.perf_counter() - t0
        finally:
            outbox.close()
        pipeline = PipelineFigures.between(totals0, scrape_totals(ports["http"]), elapsed)
        rows, _ = stored_rows(db_url)
        if rows < total:
            raise RuntimeError(f"{rows} rows stored after {total} spans were acknowledged")
        cpu1 = watch.cpu_seconds()
        postgres_seconds = backends.stop() if backends is not None else 0.0
        watch.stop()
        raw = raw_copy_rate(db_url) if database else None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    return Outcome(
        scenario,
        sent,
        persisted_per_second=sum(count for _, count in measured) / elapsed,
        collector_cores=(cpu1 - cpu0) / elapsed,
        postgres_cores=postgres_seconds / elapsed,
        peak_rss_mb=watch.peak_rss / 2**20,
        peak_pss_mb=watch.peak_pss / 2**20,
        raw_copy_rows_per_second=raw,
        pipeline=pipeline,
    )


def with_new_trace_ids(bodies: list[tuple[bytes, int]], round_: int) -> list[tuple[bytes, int]]:
    """The same requests as new traces: every trace id XORed with a mask of this round (spans of a
    trace keep sharing theirs), so a soak sends fresh rows without building new bodies between
    rounds (about 5 s per 50,000 spans, which lowered the rate the soak named)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    mask = hashlib.blake2b(round_.to_bytes(8, "big"), digest_size=16).digest()
    out = []
    for body, count in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.trace_id = bytes(a ^ b for a, b in zip(span.trace_id, mask, strict=True))
        out.append((request.SerializeToString(), count))
    return out


def soak(seconds: int, rate: float, on: str = "postgresql", arrival: str = "live") -> list[tuple[float, float]]:
    """Memory over time at a steady rate, PostgreSQL (or a SQLite file), the default layout (a
    supervisor and its ingest workers): (elapsed s, PSS MB of all of them) samples."""
    per_round = int(rate * 10)  # 10 s of traffic per round
    pool = build_bodies(per_round, 512, 100, arrival)
    samples: list[tuple[float, float]] = []
    with fresh_database(on, "soak.db") as (db_url, _):
        process, ports = start_collector(db_url, None, single_process=False)
        watch = ProcessWatch(process.pid)
        try:
            started = time.perf_counter()
            round_ = 0
            while time.perf_counter() - started < seconds:
                round_ += 1
                bodies = with_new_trace_ids(pool, round_)
                asyncio.run(send(bodies, f"http://127.0.0.1:{ports['otlp-http']}", "http", 4, rate))
                samples.append((time.perf_counter() - started, watch.memory()[1] / 2**20))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
    return samples


def persisted_over_raw(o: Outcome) -> float | None:
    """The headline figure: persisted spans/s over the raw COPY rate (None on SQLite)."""
    return o.persisted_per_second / o.raw_copy_rows_per_second if o.raw_copy_rows_per_second else None


def spread(name: str, runs: list[Outcome]) -> str:
    """One scenario's runs in a line: the range of each figure the targets of issue 7 name, and the
    median of persisted spans/s and of persisted / raw over the runs (each its own median: the
    run with the median acked rate, the one the table shows, need not have either)."""
    acked = [o.sent.spans_per_second for o in runs]
    persisted = [o.persisted_per_second for o in runs]
    p99 = [o.sent.percentile(0.99) * 1000 for o in runs]
    ratios = [r for r in map(persisted_over_raw, runs) if r is not None]
    line = (
        f"{name}: acked {min(acked):,.0f} to {max(acked):,.0f} spans/s, persisted {min(persisted):,.0f} to"
        f" {max(persisted):,.0f} (median {median(persisted):,.0f}), ack p99 {min(p99):.0f} to {max(p99):.0f} ms"
    )
    if ratios:
        line += f", persisted / raw {min(ratios):.2f} to {max(ratios):.2f} (median {median(ratios):.2f})"
    return line


def row(o: Outcome) -> str:
    """One run as a row of ``table``."""
    raw = f"{o.raw_copy_rows_per_second:,.0f}" if o.raw_copy_rows_per_second else "n/a"
    ratio = persisted_over_raw(o)
    return (
        f"| {o.scenario.name:38s} | {o.sent.spans_per_second:13,.0f} | {o.persisted_per_second:17,.0f} | "
        f"{o.sent.percentile(0.5) * 1000:10.0f} | {o.sent.percentile(0.99) * 1000:10.0f} | "
        f"{o.collector_cores:15.2f} | {o.postgres_cores:14.2f} | {o.peak_rss_mb:11.0f} | {o.peak_pss_mb:11.0f} | "
        f"{raw:>15s} | "
        f"{'n/a' if ratio is None else f'{ratio:.2f}':>15s} |"
    )


def pipeline_line(o: Outcome) -> str:
    return o.pipeline.describe() if o.pipeline is not None else "not measured"


def table(outcomes: list[Outcome]) -> str:
    header = (
        f"| {'scenario':38s} | acked spans/s | persisted spans/s | ack p50 ms | ack p99 ms | "
        "collector cores | postgres cores | peak RSS MB | peak PSS MB | raw COPY rows/s | persisted / raw |"
    )
    return "\n".join([header, "|" + "|".join("---" for _ in range(11)) + "|", *map(row, outcomes)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer spans per scenario")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument("--soak", type=int, default=0, metavar="SECONDS", help="also run a memory soak")
    parser.add_argument(
        "--soak-on", choices=["postgresql", "sqlite"], default="postgresql", help="the soak's database (PostgreSQL)"
    )
    parser.add_argument(
        "--spans", type=int, default=0, metavar="N", help="spans per closed-loop scenario (default 1,000,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each scenario N times and report the median run"
    )
    parser.add_argument(
        "--arrival",
        choices=ARRIVALS,
        default="live",
        help="the traces' order (bench/loadgen.py): live (default) or shuffled",
    )
    args = parser.parse_args()
    # Closed loop (as fast as acknowledged): a million spans in the full run, about half a minute of
    # sustained load, in which the rollup applier's last round after the senders stop (about half a
    # second) weighs a few percent; in 400,000-span runs it was 5 to 8% of "persisted".
    sustained = args.spans or (100_000 if args.quick else 1_000_000)
    n = 100_000 if args.quick else 400_000  # open loop: 10 s (--quick) or 40 s at 10,000 spans/s
    scenarios = [
        # the default layout: a supervising process (API, rollup applier, jobs) and, on PostgreSQL,
        # one ingest worker per CPU but one (one on this 2-CPU machine), one on SQLite
        Scenario("PostgreSQL, OTLP/HTTP, default", "postgresql", "http", sustained),
        Scenario("PostgreSQL, OTLP/gRPC, default", "postgresql", "grpc", sustained),
        Scenario("PostgreSQL, OTLP/HTTP, --workers 2", "postgresql", "http", sustained, workers=2),
        Scenario("PostgreSQL, OTLP/gRPC, --workers 2", "postgresql", "grpc", sustained, workers=2),
        Scenario("PostgreSQL, OTLP/HTTP, --single-process", "postgresql", "http", sustained, single_process=True),
        Scenario("SQLite, OTLP/HTTP, default", "sqlite", "http", sustained // 2),
        # open loop: long enough that the p99 is not one request's time (10 s with --quick, 40 s in full)
        Scenario("PostgreSQL, 10,000 spans/s, default", "postgresql", "http", n, rate=10_000),
        # the same over gRPC: its latency, and its CPU per span against HTTP's at the same rate
        Scenario("PostgreSQL, 10,000 spans/s, OTLP/gRPC, default", "postgresql", "grpc", n, rate=10_000),
        Scenario("PostgreSQL, 10,000 spans/s, --workers 2", "postgresql", "http", n, workers=2, rate=10_000),
        Scenario(
            "PostgreSQL, 10,000 spans/s, --single-process", "postgresql", "http", n, single_process=True, rate=10_000
        ),
        Scenario("PostgreSQL, 5,000 spans/s, default", "postgresql", "http", n // 2, rate=5_000),
    ]
    if args.only:
        scenarios = [s for s in scenarios if args.only.lower() in s.name.lower()]
    print(
        f"building request bodies ({sustained:,} spans per closed-loop scenario, {n:,} per open-loop one,"
        f" arrival {args.arrival}; cached in bench/results/cache)",
        flush=True,
    )
    outcomes = []
    spreads = []
    for scenario in scenarios:
        runs = []
        for attempt in range(args.repeat):
            print(f"running: {scenario.name} ({attempt + 1}/{args.repeat}) ...", flush=True)
            # the same traffic in every scenario (one body cache)
            runs.append(run(scenario, seed=100, arrival=args.arrival))
            if args.repeat > 1:  # every run's row as it ends, so none is lost in the median
                print(row(runs[-1]), flush=True)
                print(f"  {pipeline_line(runs[-1])}", flush=True)
        runs.sort(key=lambda o: o.sent.spans_per_second)
        outcomes.append(runs[len(runs) // 2])
        spreads.append(spread(scenario.name, runs))
    print()
    if args.repeat > 1 and outcomes:
        print(f"median of {args.repeat} runs per scenario (by acked spans/s)")
    if outcomes:
        print(table(outcomes))
        print("\nthe collector's writer and rollup applier in the same runs (its /metrics):")
        print("\n".join(f"{o.scenario.name}: {pipeline_line(o)}" for o in outcomes))
    if args.repeat > 1:
        print(f"\nspread over the {args.repeat} runs:")
        print("\n".join(spreads))
    if args.soak:
        samples = soak(args.soak, 5_000, args.soak_on, args.arrival)
        print(
            f"\nsoak on {args.soak_on} at 5,000 spans/s for {args.soak} s,"
            " collector PSS MB over time (all its processes):"
        )
        print(", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in samples[:: max(1, len(samples) // 20)]))
        first, last = samples[len(samples) // 10][1], samples[-1][1]
        print(f"PSS after warm-up {first:.0f} MB, at the end {last:.0f} MB, peak {max(m for _, m in samples):.0f} MB")
        average = len(samples) * 50_000 / samples[-1][0]
        print(f"{len(samples)} rounds of 50,000 spans ({average:,.0f} spans/s on average)")


if __name__ == "__main__":
    main()
