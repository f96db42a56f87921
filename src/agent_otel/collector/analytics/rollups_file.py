"""The rollup applier's round on a SQLite file whose rollup tables live in a file of their own.

SQLite has one write lock per file; with the rollup tables in the database file the applier and
the ingest writer took turns at it, the applier a third of the time under full load. So the
rollup tables live in a second file (``storage/database.py``, migration 0006) and each writer
locks its own. The rows a round touches are then in two files, which one transaction cannot
commit together (in WAL mode a transaction over attached files is atomic per file only). A
round is three steps instead, each on one file and each safe to repeat:

1. **Read**, no lock: the rollups file's mark (the last outbox id folded into the rollup
   tables: the highest ``rollup_rounds.mark``), then the deltas after it in the main file.
2. **Fold**, the rollups file's lock: the deltas go into the rollup tables, and the round is
   recorded in ``rollup_rounds``: its last delta id and the changes it computed for ``agents``
   (they depend on what the fold found: new user and agent pairs, changed ratings). The mark
   moves with the rollups in one commit, so no delta is folded twice; if another applier
   recorded a round since step 1, this one stops.
3. **Settle**, the main file's lock: the recorded rounds that ``agents`` lacks (after
   ``rollup_agents_mark``) are added to ``agents``, the mark moves to the last of them, and the
   deltas up to it are deleted, in one commit.

A failure between 2 and 3 (a crash, a busy main file) leaves the round recorded: the next round
settles it first. Step 2 forgets the rounds the main file's mark covers. The outbox's ids are
never reused (AUTOINCREMENT): a delta written after the outbox emptied would otherwise get an id
under the mark and never be folded. A delta that fails to apply is retried in later rounds
(``attempts``) and, after ``MAX_ATTEMPTS``, set aside as on one file; the rounds after it go on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, text

from agent_otel.collector.analytics.hook import RollupHook, RollupInput
from agent_otel.collector.analytics.state import AgentState
from agent_otel.collector.analytics.store import AgentBump
from agent_otel.collector.storage.database import reading

ROUNDS: Final = "rollup_rounds"  # in the rollups file
AGENTS_MARK: Final = "rollup_agents_mark"  # in the main file


def folded_mark(conn: Connection) -> int:
    """The last outbox id folded into the rollup tables (``conn``: on the rollups file)."""
    return int(conn.execute(text(f"SELECT coalesce(max(mark), 0) FROM {ROUNDS}")).scalar_one())


def agents_mark(conn: Connection) -> int:
    """The last round whose changes ``agents`` has (``conn``: on the main file)."""
    return int(conn.execute(text(f"SELECT mark FROM {AGENTS_MARK}")).scalar_one())


# -- a round's changes to agents, as bytes (pure) ---------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_bumps(bumps: list[AgentBump]) -> bytes:
    return orjson.dumps(
        [
            (t, a, _ts(seen), _ts(s.last_executed_at), s.executions, s.users, s.rating_count, s.rating_sum)
            for t, a, seen, s in bumps
        ]
    )


def decode_bumps(payload: bytes) -> list[AgentBump]:
    parse = datetime.fromisoformat
    out: list[AgentBump] = []
    for t, a, seen, last, executions, users, rating_count, rating_sum in orjson.loads(payload):
        state = AgentState(executions, None if last is None else parse(last), users, rating_count, rating_sum)
        out.append((t, a, parse(seen), state))
    return out


def merge_bumps(bumps: list[AgentBump]) -> list[AgentBump]:
    """Several rounds' changes, one per agent (counts summed, the latest execution, the first seen)."""
    merged: dict[tuple[str, str], AgentBump] = {}
    for tenant, agent, seen, s in bumps:
        key = (tenant, agent)
        if key not in merged:
            merged[key] = (
                tenant,
                agent,
                seen,
                AgentState(s.executions, s.last_executed_at, s.users, s.rating_count, s.rating_sum),
            )
            continue
        _t, _a, first, m = merged[key]
        m.executions += s.executions
        m.users += s.users
        m.rating_count += s.rating_count
        m.rating_sum += s.rating_sum
        if s.last_executed_at is not None and (m.last_executed_at is None or s.last_executed_at > m.last_executed_at):
            m.last_executed_at = s.last_executed_at
        merged[key] = (tenant, agent, min(first, seen), m)
    return list(merged.values())


# -- the steps ------------------------------------------------------------------------------------


def fold(rollups: Engine, hook: RollupHook, data: RollupInput, after: int, last_id: int, settled: int) -> bool:
    """Step 2: fold ``data`` (the deltas after ``after`` up to ``last_id``) into the rollup tables
    and record the round. False when another applier recorded a round since ``after`` was read
    (nothing is folded). ``settled``: the main file's mark as read in step 1."""
    with rollups.begin() as conn:  # the rollups file's lock alone (database.sqlite_rollups_engine)
        if folded_mark(conn) != after:
            return False
        bumps = hook.apply_rollups(conn, data)
        conn.execute(text(f"DELETE FROM {ROUNDS} WHERE mark <= :settled"), {"settled": settled})
        conn.execute(
            text(f"INSERT INTO {ROUNDS} (mark, agents) VALUES (:mark, :agents)"),
            {"mark": last_id, "agents": encode_bumps(bumps)},
        )
    return True


def settle(engine: Engine, rollups: Engine, hook: RollupHook, outbox: str, max_attempts: int) -> int:
    """Step 3: add the recorded rounds' changes that ``agents`` lacks, move the main file's mark,
    delete the deltas up to it. Returns the rounds settled."""
    with reading(rollups) as conn:
        rounds = [(int(m), bytes(a)) for m, a in conn.execute(text(f"SELECT mark, agents FROM {ROUNDS} ORDER BY mark"))]
    if not rounds:
        return 0
    with engine.begin() as conn:
        return settle_rounds(conn, hook, rounds, outbox, max_attempts)


def settle_rounds(
    conn: Connection, hook: RollupHook, rounds: list[tuple[int, bytes]], outbox: str, max_attempts: int
) -> int:
    """Step 3 in the caller's transaction on the main file, given the recorded rounds."""
    done = agents_mark(conn)
    todo = [(mark, agents) for mark, agents in rounds if mark > done]
    if not todo:
        return 0
    bumps: list[AgentBump] = []
    for _mark, agents in todo:
        bumps += decode_bumps(agents)
    hook.apply_agents(conn, merge_bumps(bumps))
    last = todo[-1][0]
    conn.execute(text(f"UPDATE {AGENTS_MARK} SET mark = :mark"), {"mark": last})
    conn.execute(text(f"DELETE FROM {outbox} WHERE id <= :mark AND attempts < {int(max_attempts)}"), {"mark": last})
    return len(todo)


def settle_attached(conn: Connection, hook: RollupHook, outbox: str, max_attempts: int, *, discard: bool) -> None:
    """For ``rollups rebuild``, on a main-file connection with the rollups file attached: settle
    the recorded rounds (``discard``: drop them, the full rebuild recomputes ``agents``)."""
    rounds: list[tuple[int, Any]] = [
        (int(m), bytes(a)) for m, a in conn.execute(text(f"SELECT mark, agents FROM rollups.{ROUNDS} ORDER BY mark"))
    ]
    if not rounds:
        return
    if discard:
        conn.execute(text(f"UPDATE {AGENTS_MARK} SET mark = :mark"), {"mark": rounds[-1][0]})
    else:
        settle_rounds(conn, hook, rounds, outbox, max_attempts)
    conn.execute(text(f"DELETE FROM rollups.{ROUNDS} WHERE mark < :mark"), {"mark": rounds[-1][0]})
