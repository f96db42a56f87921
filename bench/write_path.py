"""CPU cost of the write transaction per span, by part, on a real database (no sockets).

    python bench/write_path.py [--db postgresql://postgres@127.0.0.1:5432/test | --db sqlite] [--spans 60000]

Normalizes pre-encoded load-generator requests once, then writes them in groups the size the
writer forms under load, with and without the rollup hook, and prints this process's CPU
microseconds per span and, on PostgreSQL, the CPU of the server backend that did the writing.

It writes as the ingest worker does: the garbage collector tuned as ``serve`` tunes it, the
ingest writer's engine (on SQLite its page cache, ``storage.sqlite_writer_cache_mb``, and the
main file alone when the rollups are deferred) and, on a SQLite file, the WAL checkpoint after
each group. Before 2026-12-07 it did none of the three, and on SQLite the untuned garbage collector
alone was 13% of its CPU (perf).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.outbox import OutboxHook
from agent_otel.collector.pipeline.model import NormalizedBatch
from agent_otel.collector.pipeline.normalize import Limits, Normalizer
from agent_otel.collector.pipeline.pricing import PriceBook, Pricer, builtin_prices
from agent_otel.collector.pipeline.sanitize import SpanSanitizer
from agent_otel.collector.receiver.decode import decode_traces
from agent_otel.collector.service import tune_gc, writer_engine
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.database import checkpoint_wal, create_db_engine, is_sqlite_file
from agent_otel.collector.storage.partitions import ensure_partitions
from agent_otel.collector.storage.transaction import ChangeHook, write_group
from agent_otel.sanitize import RedactionCounts
from agent_otel.settings import RetentionSettings, SanitizerSettings, load_settings
from bench.loadgen import ARRIVALS, build_bodies
from bench.throughput import fresh_database


def batches(spans: int, seed: int, arrival: str = "live") -> list[NormalizedBatch]:
    normalizer = Normalizer(SpanSanitizer(SanitizerSettings()))
    pricer = Pricer(PriceBook(builtin_prices()))
    limits = Limits(time.time_ns(), 86_400 * 10**9, 3650 * 86_400 * 10**9, 32)
    out = []
    for body, _ in build_bodies(spans, 512, seed, arrival):
        batch = normalizer.traces(decode_traces(body, "protobuf"), "default", limits, RedactionCounts())
        pricer.apply(batch)
        out.append(batch)
    return out


def _process_cpu(pid: int) -> float:
    """CPU seconds of another process on this machine (the PostgreSQL backend), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    db_url: str, groups: list[list[NormalizedBatch]], hooks: list[ChangeHook], cache_mb: int | None = None
) -> tuple[float, float | None, float, int]:
    """(collector CPU us per span, PostgreSQL backend CPU us per span or None, spans/s, spans).
    ``cache_mb``: the SQLite ingest writer's page cache instead of the default."""
    storage = {} if cache_mb is None else {"sqlite_writer_cache_mb": cache_mb}
    settings = load_settings({"db_url": db_url, "storage": storage}, environ={})
    setup = create_db_engine(settings)
    migrate.upgrade(setup)
    ensure_partitions(setup, 3)
    setup.dispose()
    # as Collector builds it: with deferred rollups the ingest writer's connections open the main
    # file alone (inline rollups write the rollup tables, so those connections attach them)
    inline = any(isinstance(hook, RollupHook) for hook in hooks)
    engine = writer_engine(settings, rollups=inline, ingest=True)
    checkpoint = is_sqlite_file(db_url)
    backend = None
    if engine.dialect.name == "postgresql":  # one thread, one pooled connection: one backend
        with engine.connect() as conn:
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    spans = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    db0 = _process_cpu(backend) if backend else 0.0
    for group in groups:
        with engine.begin() as conn:
            write_group(conn, group, hooks)
        if checkpoint:  # the writer's upkeep after answering a group (service.Collector)
            checkpoint_wal(engine)
        spans += sum(len(b.spans) for b in group)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    db = (_process_cpu(backend) - db0) / spans * 1e6 if backend else None
    engine.dispose()
    return cpu / spans * 1e6, db, spans / wall, spans


def main() -> None:
    variants: dict[str, tuple[str, list[ChangeHook]]] = {
        "none": ("without rollups", []),
        "outbox": ("rollup outbox", [OutboxHook()]),  # the default: rollups applied later (deferred)
        "inline": ("inline rollups", [RollupHook(RetentionSettings())]),
    }
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--group", type=int, default=8, help="requests of 512 spans per transaction")
    parser.add_argument("--only", choices=list(variants), help="one variant: no rollups, the outbox (default), inline")
    parser.add_argument("--arrival", choices=ARRIVALS, default="live", help="the traces' order (bench/loadgen.py)")
    parser.add_argument("--sqlite-cache-mb", type=int, help="storage.sqlite_writer_cache_mb (default: the setting's)")
    args = parser.parse_args()
    tune_gc()  # as serve does once everything is imported, before any traffic
    prepared = batches(args.spans, seed=4242, arrival=args.arrival)
    groups = [prepared[i : i + args.group] for i in range(0, len(prepared), args.group)]
    for label, hooks in [variants[args.only]] if args.only else variants.values():
        # a new database per variant, on the server of --db (SQLite: a new file; --db sqlite names
        # only the dialect)
        on = "postgresql" if args.db.startswith("postgresql") else "sqlite"
        with fresh_database(on, "write_path.db", admin=args.db) as (url, _):
            cpu, db, rate, spans = run(url, groups, hooks, args.sqlite_cache_mb)
        print(
            f"{label:16s}: {cpu:6.2f} CPU us per span in this process"
            + (f", {db:6.2f} in PostgreSQL" if db is not None else "")
            + f"; {rate:8,.0f} spans/s wall "
            f"({spans} spans, groups of {args.group} requests)"
        )
        for hook in hooks:
            timings = getattr(hook, "timings", None)
            if timings is not None and timings.calls:
                stages = ", ".join(f"{k} {v / timings.calls * 1000:.0f}" for k, v in timings.seconds.items())
                print(f"{'':18s}rollup hook, wall ms per group: {stages}")


if __name__ == "__main__":
    main()
