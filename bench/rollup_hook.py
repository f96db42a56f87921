"""Time of the rollup hook per write group, on PostgreSQL and SQLite.

    python bench/rollup_hook.py [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--groups 12]
        [--executions 5000] [--agents 50] [--users 2000]

Each group is a ChangeSet like one write transaction of the collector hands the hook: new
executions (started over the last minutes, so consecutive groups touch the same hour, day, week
and month rows, as under steady load) and some feedback (5%). The hook runs inside a
transaction on a fresh, migrated database. Early groups create most rows (every (agent, user)
pair of the hour is new: the worst case); the steady state is the median of the last third of
the groups, when most of the 100,000 (agent, user) pairs have been seen this hour.

The process runs with the collector's garbage-collector thresholds (``service.tune_gc``), as the
rollup applier does. Figures before 2026-12-07's thirteenth session ran with CPython's defaults,
under which the "aggregate" stage took about twice as long (152 against 75 ms per group of 15,000
executions that day).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.maintenance import refresh_statistics
from agent_otel.collector.pipeline.rows import ExecutionRow, FeedbackRow
from agent_otel.collector.service import tune_gc
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.database import create_db_engine
from agent_otel.collector.storage.store import store_for
from agent_otel.collector.storage.transaction import ChangeSet
from agent_otel.settings import Settings, normalize_db_url
from bench.throughput import fresh_database

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
]
STATUSES = ["success"] * 18 + ["failed", "timeout"]


def changeset(rng: random.Random, n: int, agents: int, users: int, around: datetime) -> ChangeSet:
    rows = []
    for _ in range(n):
        provider, model = rng.choice(MODELS)
        status = rng.choice(STATUSES)
        started = around - timedelta(seconds=rng.uniform(0, 300))
        tokens_in, tokens_out = rng.randint(200, 4000), rng.randint(20, 800)
        agent, user = f"agent-{rng.randrange(agents):02d}", f"user-{rng.randrange(users):05d}"
        error = None if status == "success" else "UpstreamError"
        cost = (tokens_in * 0.15 + tokens_out * 0.6) / 1e6
        intent = rng.choice(("refund", "billing", "search", None))
        rows.append(
            ExecutionRow(
                "default", uuid.uuid4().hex, started, agent, user, status, int(rng.lognormvariate(7.5, 0.8)),
                float(rng.choice((1, 2, 3))), 200, error, None, 512, 256, "text", "text", None, None, None,
                f"s-{user}", None, None, started + timedelta(seconds=2), model, provider, tokens_in, tokens_out,
                cost, 0, rng.randint(1, 3), rng.randint(0, 3), uuid.uuid4().hex, uuid.uuid4().hex[:16], None,
                "bench", intent, "support", "genai",
            )
        )  # fmt: skip
    feedback = [
        FeedbackRow("default", uuid.uuid4().hex, around, None, row.agent_id, row.user_id, rng.randint(1, 5), None, None)
        for row in rng.sample(rows, n // 20)
    ]
    return ChangeSet(executions=rows, feedback=feedback)


def run(engine: Engine, groups: int, n: int, agents: int, users: int) -> dict[str, object]:
    migrate.upgrade(engine)
    rng = random.Random(1)
    hook = RollupHook()
    times: list[float] = []
    stages: list[dict[str, float]] = []
    base = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    for i in range(groups):
        changes = changeset(rng, n, agents, users, base + timedelta(seconds=5 * i))
        before = dict(hook.timings.seconds)
        with engine.begin() as conn:
            started = time.perf_counter()
            hook.apply(conn, store_for(conn), changes)
            times.append(time.perf_counter() - started)
        stages.append({k: v - before.get(k, 0.0) for k, v in hook.timings.seconds.items()})
        refresh_statistics(engine)  # what serve's "rollup statistics" job does every 15 s
    steady = times[-max(1, groups // 3) :]  # the last third: (agent, user) pairs of the hour mostly seen
    per_stage = {k: statistics.median(s[k] for s in stages[-len(steady) :]) * 1000 for k in stages[0]}
    return {
        "first_ms": times[0] * 1000,
        "early_ms": statistics.median(times[1 : max(2, groups // 3)]) * 1000,
        "median_ms": statistics.median(steady) * 1000,
        "max_ms": max(steady) * 1000,
        "stages_ms": per_stage,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="server to create a db in"
    )
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--executions", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    tune_gc()  # as the applier's process runs (the collector's thresholds)
    shape = (args.groups, args.executions, args.agents, args.users)
    print(f"rollup hook: {args.executions} executions per group, {args.agents} agents, {args.users} users")

    with fresh_database("postgresql", "bench.db", admin=args.pg) as (url, _):
        engine = create_engine(normalize_db_url(url))
        _report("postgresql", run(engine, *shape), args.executions)
        engine.dispose()
    with fresh_database("sqlite", "bench.db") as (url, _):
        # the collector's own engine factory: WAL and the default synchronous setting, as in `serve`
        engine = create_db_engine(Settings(db_url=url))
        _report("sqlite", run(engine, *shape), args.executions)
        engine.dispose()


def _report(name: str, result: dict[str, object], n: int) -> None:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result["stages_ms"].items())  # type: ignore[attr-defined]
    median = float(result["median_ms"])  # type: ignore[arg-type]
    print(
        f"{name:10s} first group {float(result['first_ms']):.0f} ms, early groups {float(result['early_ms']):.0f} ms"  # type: ignore[arg-type]
        " (mostly new rows); steady state median "
        f"{median:.0f} ms, max {float(result['max_ms']):.0f} ms = {1000 * median / n:.1f} us per execution"  # type: ignore[arg-type]
    )
    print(f"{'':10s} per stage (ms): {stages}")


if __name__ == "__main__":
    main()
