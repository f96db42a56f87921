"""Admin API latency with 5 million executions in PostgreSQL (issue 4).

    python bench/admin_api.py [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--executions 5000000]
        [--days 30] [--agents 50] [--users 2000] [--requests 40] [--keep]

1. a fresh database, migrated, with a daily partition per day of data;
2. the raw executions generated inside PostgreSQL (``generate_series``, one statement per day,
   no Python in between), plus agents and feedback;
3. rollups built by ``agent-otel rollups rebuild`` (the same code as backfills);
4. a real ``agent-otel serve`` process (row-level security on, as in production) answers
   ``GET /api/admin/metrics?hours=24`` and one agent's 30-day daily series, each called
   ``--requests`` times after a warm-up; the median and p95 latencies are printed.

Both answer from rollups (hour rows for the last 24 hours, 30 day rows for the series), so they
do not grow with the number of executions; the target is a median under 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_otel.collector.analytics.commands import ProgressBar
from agent_otel.collector.analytics.rebuild import rebuild
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.partitions import ensure_partitions
from agent_otel.settings import normalize_db_url
from bench.throughput import create_database, database_url, drop_database

TOKEN = "bench-admin-token-0123456789"

DAY_SQL = """
INSERT INTO agent_executions (tenant_id, execution_id, started_at, agent_id, user_id, status, duration,
    credits_consumed, error_code, completed_at, model, provider, input_tokens, output_tokens, cost_usd,
    llm_calls, tool_calls, trace_id, span_id, intent, feature, source, session_id)
SELECT 'default', 'x' || CAST(:day AS text) || '-' || g, t, a, u, s, d, 1 + (g % 3),
       CASE WHEN s <> 'success' THEN 'UpstreamError' END,
       t + d * interval '1 millisecond', m, p, ti, tout, (ti * 0.15 + tout * 0.60) / 1e6, 1 + (g % 3), g % 4,
       md5(CAST(:day AS text) || '-' || g), substr(md5(g::text), 1, 16),
       (ARRAY['refund','billing','search','report'])[1 + g % 4],
       'support', 'bench', 's-' || u
FROM (
    SELECT g,
           CAST(:start AS timestamptz) + random() * interval '1 day' AS t,
           'agent-' || lpad(floor(:agents * random() ^ 2)::int::text, 2, '0') AS a,
           'user-' || lpad(floor(:users * random())::int::text, 5, '0') AS u,
           (ARRAY['success','success','success','success','success','success','success','success','success',
                  'success','success','success','success','success','success','success','success','success',
                  'failed','timeout'])[1 + floor(20 * random())::int] AS s,
           floor(exp(6 + 2.5 * random()))::int AS d,
           (ARRAY['gpt-4o-mini','gpt-4.1','claude-sonnet-4-5','gemini-2.5-flash'])[1 + g % 4] AS m,
           (ARRAY['openai','openai','anthropic','gcp.gemini'])[1 + g % 4] AS p,
           200 + floor(3000 * random())::int AS ti,
           20 + floor(600 * random())::int AS tout
    FROM generate_series(1, :n) g
) rows
"""


def load(url: str, executions: int, days: int, agents: int, users: int) -> datetime:
    engine = create_engine(url)
    migrate.upgrade(engine)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first_day = end - timedelta(days=days)  # the data runs up to the current hour
    ensure_partitions(engine, days + 2, today=first_day.date() + timedelta(days=1))
    per_day = executions // days
    bar = ProgressBar(sys.stderr, "loading executions", "days")
    with engine.begin() as conn:
        conn.execute(text("SELECT setseed(0.42)"))
        for day in range(days):
            start = first_day + timedelta(days=day)
            conn.execute(
                text(DAY_SQL),
                {"day": day, "start": start, "agents": agents, "users": users, "n": per_day},
            )
            bar(day + 1, days)
        conn.execute(
            text(
                "INSERT INTO agents (tenant_id, id, name, first_seen_at, last_seen_at)"
                " SELECT DISTINCT 'default', agent_id, agent_id, :start, :end FROM agent_executions"
            ),
            {"start": first_day, "end": end},
        )
        conn.execute(
            text(
                "INSERT INTO agent_feedback"
                " (tenant_id, feedback_id, timestamp, execution_id, agent_id, user_id, rating)"
                " SELECT tenant_id, 'f-' || execution_id, completed_at, execution_id, agent_id, user_id,"
                " 1 + floor(5 * random())::int FROM agent_executions WHERE random() < 0.01"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return end


def serve(url: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "agent_otel", "serve", "--db", url, "--no-migrate", "--log-level", "WARNING"]
    command += ["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env={"AGENT_OTEL_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("http listening on "):
            return process, "http://" + line.split()[-1]
    raise SystemExit("the collector did not start")


def latency(client: httpx.Client, path: str, requests: int) -> tuple[float, float, dict[str, object]]:
    for _ in range(3):  # warm-up: connections, plans, caches
        client.get(path).raise_for_status()
    samples = []
    body: dict[str, object] = {}
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        body = response.json()
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--executions", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()

    name = create_database(args.pg)
    url = normalize_db_url(database_url(name, args.pg))
    process = None
    try:
        started = time.perf_counter()
        load(url, args.executions, args.days, args.agents, args.users)
        loaded = time.perf_counter() - started
        engine = create_engine(url)
        report = rebuild(engine, progress=ProgressBar(sys.stderr, "rebuilding rollups", "days"))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM agent_executions")).scalar_one()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()
        process, api = serve(url)
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
            metrics = latency(client, "/api/admin/metrics?hours=24", args.requests)
            series = latency(client, "/api/admin/agents/agent-00/series?period=day", args.requests)
            ranking = latency(client, "/api/admin/agents?sort=p95", args.requests)
        total = metrics[2]["metrics"]["total_requests"]  # type: ignore[index]
        print(f"database {name}: {rows:,} executions over {args.days} days, {args.agents} agents, {args.users} users")
        print(f"load (generate_series inside PostgreSQL): {loaded:.0f} s")
        print(f"rollups rebuild: {report.seconds:.0f} s ({', '.join(f'{k}={v:,}' for k, v in report.rows.items())})")
        print(f"GET /api/admin/metrics?hours=24 ({total:,} executions in the window): median {metrics[0]:.1f} ms, "
              f"p95 {metrics[1]:.1f} ms")  # fmt: skip
        print(f"GET /api/admin/agents/agent-00/series?period=day (30 days): median {series[0]:.1f} ms, "
              f"p95 {series[1]:.1f} ms")  # fmt: skip
        print(f"GET /api/admin/agents?sort=p95 (30 days, all agents): median {ranking[0]:.1f} ms, "
              f"p95 {ranking[1]:.1f} ms")  # fmt: skip
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
            if process.stdout is not None:
                process.stdout.close()
        if not args.keep:
            drop_database(name, args.pg)


if __name__ == "__main__":
    main()
