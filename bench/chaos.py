"""Chaos run: SIGKILL/restart, database restarts and overload against ``agent-otel serve`` under
load, then an exact count of what was acknowledged against what is stored.

    .venv/bin/python bench/chaos.py [--minutes 3] [--senders 4] [--db URL]

Without ``--db`` it creates a private PostgreSQL cluster (needs root and the PostgreSQL server
binaries; the shared server is never touched), so the database-restart phase can run; with a
``--db`` URL that phase is skipped. The run cycles through the phases until time is up:

- kill: SIGKILL the collector mid-load and restart it on the same ports;
- database: stop PostgreSQL (fast shutdown) for a few seconds, start it again;
- overload: another connection holds a lock the writer needs for a few seconds, while the senders
  push far more than ``ingest.max_queue_spans`` (set low): the collector answers 429;
and ends with SIGTERM (drain). Senders are threads posting OTLP/HTTP protobuf requests of five
complete executions (15 spans); a refused request is retried with the same bytes, and only a
200 puts its spans in the ledger.

Printed at the end: spans acknowledged, spans found, lost, duplicates, requests by outcome,
the collector's maximum RSS, and whether the rollups equal their recomputation from raw rows.
Exits 1 if anything acknowledged is missing or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import psycopg  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from tests.durability.support import (  # noqa: E402
    Ledger,
    PrivateCluster,
    Sender,
    ServeProcess,
    Traffic,
    rollup_problems,
)

from agent_otel.collector.storage.database import libpq_conninfo  # noqa: E402
from agent_otel.settings import normalize_db_url  # noqa: E402


@contextlib.contextmanager
def locked(db_url: str) -> Iterator[None]:
    if db_url.startswith("sqlite"):
        import sqlite3

        from agent_otel.collector.storage.database import sqlite_path

        conn = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    with psycopg.connect(libpq_conninfo(normalize_db_url(db_url))) as pg:
        pg.execute("LOCK TABLE agent_steps IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def stored_spans(db_url: str) -> dict[tuple[str, str], int]:
    engine = create_engine(normalize_db_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT trace_id, span_id, count(*) FROM ("
                    " SELECT trace_id, span_id FROM agent_executions UNION ALL"
                    " SELECT trace_id, span_id FROM agent_steps) s GROUP BY trace_id, span_id"
                )
            )
            return {(r[0], r[1]): r[2] for r in rows}
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--db", help="database URL (default: a private PostgreSQL cluster)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agent-otel-chaos-"))
    cluster: PrivateCluster | None = None
    if args.db:
        db_url = args.db
    elif PrivateCluster.available() is None:
        cluster = PrivateCluster()
        cluster.start()
        db_url = cluster.url
    else:
        print(f"no private PostgreSQL cluster ({PrivateCluster.available()}); using SQLite", file=sys.stderr)
        db_url = f"sqlite:///{work / 'chaos.db'}"
    config = work / "agent-otel.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"max_queue_spans": 3000, "retry_after_seconds": 1}}))
    serve = ServeProcess(db_url, work / "serve.log", extra_args=["--config", str(config)])
    ledger = Ledger()
    stop = threading.Event()
    traffic = Traffic(uuid.uuid4().hex, executions_per_request=5)
    burst = Traffic(uuid.uuid4().hex, executions_per_request=50)
    events: dict[str, int] = {"kills": 0, "database_restarts": 0, "overloads": 0}
    max_rss = 0

    def sample_memory() -> None:
        nonlocal max_rss
        while not stop.is_set():
            with contextlib.suppress(Exception):
                if serve.alive():
                    max_rss = max(max_rss, serve.rss_bytes())
            stop.wait(0.25)

    started = time.monotonic()
    try:
        serve.start()
        senders = [Sender(serve.http_endpoint, traffic, ledger, stop) for _ in range(args.senders)]
        for sender in [*senders, threading.Thread(target=sample_memory, daemon=True)]:
            sender.start()
        phases = ["kill", "database", "overload"] if cluster is not None else ["kill", "overload"]
        deadline = started + args.minutes * 60
        turn = 0
        while time.monotonic() < deadline:
            phase = phases[turn % len(phases)]
            turn += 1
            stop.wait(4.0)  # steady load between incidents
            if phase == "kill":
                serve.kill()
                events["kills"] += 1
                stop.wait(0.5)
                serve.start()
            elif phase == "database" and cluster is not None:
                cluster.stop("fast")
                events["database_restarts"] += 1
                stop.wait(3.0)
                cluster.start()
            else:
                # 30 more senders with 150-span requests: far more than the 3000-span queue
                burst_stop = threading.Event()
                bursts = [Sender(serve.http_endpoint, burst, ledger, burst_stop) for _ in range(30)]
                for sender in bursts:
                    sender.start()
                with locked(db_url):
                    events["overloads"] += 1
                    stop.wait(4.0)
                stop.wait(2.0)
                burst_stop.set()
                for sender in bursts:
                    sender.join(120)
            print(
                f"{time.monotonic() - started:6.0f}s {phase:<9} acknowledged spans so far: "
                f"{3 * len(ledger.acknowledged)}",
                flush=True,
            )
        stop.wait(3.0)
        stop.set()
        for sender in senders:
            sender.join(120)
        code = serve.terminate()
        serve.close()

        found = stored_spans(db_url)
        keys = {**traffic.span_keys, **burst.span_keys}
        acked = {key for execution in ledger.acknowledged for key in keys[execution]}
        lost = [key for key in acked if key not in found]
        duplicates = [key for key, count in found.items() if count != 1]
        engine = create_engine(normalize_db_url(db_url))
        try:
            rollups = rollup_problems(engine)
        finally:
            engine.dispose()
        print()
        print(f"database              {'private PostgreSQL cluster' if cluster else db_url.split('://')[0]}")
        print(f"duration              {time.monotonic() - started:.0f} s, {args.senders} senders")
        print(f"incidents             {events}")
        print(f"requests by outcome   {dict(ledger.outcomes)}")
        print(f"spans acknowledged    {len(acked)}")
        print(f"spans found           {len([k for k in acked if k in found])} of them (stored in all: {len(found)})")
        print(f"spans lost            {len(lost)}")
        print(f"duplicates            {len(duplicates)}")
        print(f"max collector RSS     {max_rss / 2**20:.0f} MiB")
        print(f"rollups = recomputed  {'yes' if not rollups else 'NO: ' + '; '.join(rollups[:3])}")
        print(f"SIGTERM exit code     {code}")
        return 0 if not lost and not duplicates and not rollups and code == 0 else 1
    finally:
        stop.set()
        serve.close()
        if cluster is not None:
            cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
