"""Deferred rollups: the write transaction commits a delta, one applier folds deltas in.

Why. Updating the rollup rows inside every ingest transaction (``RollupHook`` as a writer hook)
puts the hottest rows of the database (the current hour, day, week and month of each agent, each
user's day) under the row locks of every writer: concurrent writers and ``serve --workers N``
serialize on them, and each small group pays the rollup statements for few executions. Here the
write transaction instead inserts one ``rollup_outbox`` row holding what the rollups need from
its ``ChangeSet`` (executions, late-step deltas, feedback), and a ``RollupApplier`` consumes the
outbox in large batches.

Exactness and durability
- The outbox row commits in the same transaction as the raw rows it describes, so an
  acknowledged span's rollup delta is as durable as the span itself.
- The applier deletes the outbox rows it applies in the same transaction as the rollup updates
  (``DELETE ... RETURNING``): each delta is applied exactly once, even across crashes.
- On PostgreSQL one applier runs at a time (``pg_try_advisory_xact_lock``), whichever process or
  collector gets the lock; the others skip the round. On SQLite ``BEGIN IMMEDIATE`` serializes it.
- On a SQLite file the rollup tables live in a file of their own, so a round cannot be one
  transaction: it folds the deltas after a mark kept in the rollups file, then settles ``agents``
  and deletes the deltas in the main file, each step safe to repeat (``rollups_file.py``).
- ``agent-otel rollups rebuild`` applies (ranged) or discards (full) the pending outbox inside
  its own transaction, under its table locks, so nothing is counted twice.

Rollups, and the ``agents`` counters the hook keeps, lag behind ingest by the applier's round
(well under a second when idle, one round under load); ``agent_otel_rollup_backlog`` and
``agent_otel_rollup_lag_seconds`` say by how much. ``ingest.rollups = "inline"`` keeps the
previous behaviour (rollups committed with the raw rows, before the acknowledgement).

Payload: JSON (``orjson``), facts as arrays in ``ExecutionFacts`` / ``FeedbackFacts`` field
order, datetimes as RFC 3339 text. It holds only values already sanitized for the raw tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import datetime
from operator import attrgetter
from typing import Final, Protocol

import orjson
from sqlalchemy import Connection, Engine, text

from agent_otel.collector.analytics import rollups_file
from agent_otel.collector.analytics.aggregate import (
    EXECUTION_FACT_COLUMNS,
    FEEDBACK_FACT_COLUMNS,
    ExecutionFacts,
    FeedbackFacts,
)
from agent_otel.collector.analytics.hook import RollupHook, RollupInput, needs_rollup
from agent_otel.collector.pipeline.assemble import Totals
from agent_otel.collector.storage.database import has_split_rollups, reading, rollups_file_of, sqlite_rollups_engine
from agent_otel.collector.storage.store import Store, parse_sqlite_ts
from agent_otel.collector.storage.transaction import ChangeSet, ExecutionDelta
from agent_otel.collector.storage.writer import is_data_error, run_after_commit

log = logging.getLogger(__name__)

FORMAT: Final = 1
TABLE: Final = "rollup_outbox"
# pg_try_advisory_xact_lock key of the applier ("agent-otel rollups", as a fixed 63-bit number)
APPLIER_LOCK: Final = 0x61676F746C726F6C
# a delta that failed to apply alone this many times is left for an operator (rebuild)
MAX_ATTEMPTS: Final = 3

_execution_facts = attrgetter(*EXECUTION_FACT_COLUMNS)
_feedback_facts = attrgetter(*FEEDBACK_FACT_COLUMNS)
_EXEC_STARTED = EXECUTION_FACT_COLUMNS.index("started_at")
_FEEDBACK_AT = FEEDBACK_FACT_COLUMNS.index("timestamp")
_totals = attrgetter(*(f.name for f in fields(Totals)))


# -- the payload (pure) --------------------------------------------------------------------------


def encode(changes: ChangeSet) -> bytes:
    """What the rollups need from one transaction's ``ChangeSet``, as bytes."""
    return orjson.dumps(
        {
            "v": FORMAT,
            "e": [_execution_facts(row) for row in changes.executions],
            "d": [
                (d.tenant_id, d.execution_id, d.agent_id, d.user_id, d.started_at, _totals(d.before), _totals(d.after))
                for d in changes.deltas
            ],
            "f": [_feedback_facts(row) for row in changes.feedback],
        }
    )


def decode(payload: bytes, into: ChangeSet | None = None) -> ChangeSet:
    """The inverse of ``encode`` (executions and feedback as facts, which the hook reads alike)."""
    data = orjson.loads(payload)
    if data.get("v") != FORMAT:
        raise ValueError(f"unknown rollup outbox format {data.get('v')!r}")
    out = into if into is not None else ChangeSet()
    parse = datetime.fromisoformat
    for values in data["e"]:
        values[_EXEC_STARTED] = parse(values[_EXEC_STARTED])
        out.executions.append(ExecutionFacts(*values))  # type: ignore[arg-type]
    for tenant, execution, agent, user, started, before, after in data["d"]:
        out.deltas.append(
            ExecutionDelta(tenant, execution, agent, user, parse(started), Totals(*before), Totals(*after))
        )
    for values in data["f"]:
        values[_FEEDBACK_AT] = parse(values[_FEEDBACK_AT])
        out.feedback.append(FeedbackFacts(*values))  # type: ignore[arg-type]
    return out


# -- the write side ------------------------------------------------------------------------------


class OutboxHook:
    """A ``ChangeHook``: the write transaction records its rollup delta instead of applying it."""

    def apply(self, conn: Connection, store: Store, changes: ChangeSet) -> None:
        if needs_rollup(changes):
            insert = _INSERT_PG if conn.dialect.name == "postgresql" else _INSERT
            conn.execute(insert, {"payload": encode(changes)})


_INSERT: Final = text(f"INSERT INTO {TABLE} (payload) VALUES (:payload)")
# On PostgreSQL a delta's created_at is when it was written (clock_timestamp(), a few milliseconds
# before its commit), not when its transaction began (now()): the applier tells from the newest
# one whether the writers have gone quiet (RollupApplier._pace), and a write transaction lasts
# longer than that quiet stretch under load.
_INSERT_PG: Final = text(f"INSERT INTO {TABLE} (payload, created_at) VALUES (:payload, clock_timestamp())")


# -- the apply side ------------------------------------------------------------------------------


class ApplierMetrics(Protocol):
    def rollup_backlog(self, rows: int, lag_seconds: float) -> None: ...
    def rollup_applied(self, deltas: int, seconds: float) -> None: ...
    def rollup_failed(self) -> None: ...


def backlog(conn: Connection) -> tuple[int, datetime | None]:
    """(pending outbox rows, when the oldest was written)."""
    count, oldest = conn.execute(text(f"SELECT count(*), min(created_at) FROM {TABLE}")).one()
    if oldest is not None and conn.dialect.name != "postgresql":
        oldest = parse_sqlite_ts(oldest)
    return int(count), oldest


def pending_ids_sql(where: str, limit: int | None, max_bytes: int | None) -> str:
    """The ids of up to ``limit`` deltas matching ``where``, oldest first, within ``max_bytes``
    of payload (the first one always)."""
    order = f"ORDER BY id LIMIT {int(limit)}" if limit is not None else "ORDER BY id"
    if max_bytes is None:
        return f"SELECT id FROM {TABLE} WHERE {where} {order}"
    before = "sum(length(payload)) OVER (ORDER BY id) - length(payload)"  # bytes of the older ones
    return (
        f"SELECT id FROM (SELECT id, {before} AS before FROM {TABLE} WHERE {where} {order}) t"
        f" WHERE before < {int(max_bytes)}"
    )


def take(
    conn: Connection, limit: int | None, *, only: int | None = None, max_bytes: int | None = None
) -> list[tuple[int, bytes]]:
    """Delete up to ``limit`` pending deltas (oldest first) and return them, in the caller's
    transaction: they are gone exactly when that transaction commits. ``max_bytes`` bounds the
    payload taken (a backlog of large deltas is applied in several rounds, not held in memory at
    once); the first delta is always taken."""
    where = f"attempts < {MAX_ATTEMPTS}" if only is None else f"id = {int(only)}"
    ids = pending_ids_sql(where, limit, max_bytes)
    rows = conn.execute(text(f"DELETE FROM {TABLE} WHERE id IN ({ids}) RETURNING id, payload")).all()
    return sorted((int(r[0]), bytes(r[1])) for r in rows)


# Deltas are decoded and aggregated this many executions at a time: a round under full load takes
# two seconds of deltas (12,000 to 15,000 executions), and decoding a second of them (about 10,000)
# before aggregating held about 25 MB of facts at once in the process that runs the applier
# (issue 7's memory target).
_CHUNK_EXECUTIONS: Final = 2_000


def gather(hook: RollupHook, payloads: Iterable[bytes]) -> tuple[RollupInput, int]:
    """The deltas decoded and tallied a chunk at a time: (their aggregate, executions)."""
    started = time.perf_counter()
    data = RollupInput()
    chunk = ChangeSet()
    executions = 0
    for payload in payloads:
        decode(payload, chunk)
        if len(chunk.executions) >= _CHUNK_EXECUTIONS:
            executions += len(chunk.executions)
            data.add(chunk)
            chunk = ChangeSet()
    executions += len(chunk.executions)
    data.add(chunk)
    data.finish()
    hook.timings.add("aggregate", time.perf_counter() - started)
    return data, executions


def apply_deltas(conn: Connection, hook: RollupHook, payloads: Iterable[bytes]) -> int:
    """Fold the deltas into the rollups as one change (aggregated a chunk of deltas at a time);
    returns the executions counted."""
    data, executions = gather(hook, payloads)
    hook.apply_input(conn, data)
    return executions


def drain(conn: Connection, hook: RollupHook, *, discard: bool = False) -> int:
    """Apply (or, with ``discard``, drop) every pending delta in the caller's transaction; for
    ``rollups rebuild``, which holds the applier's lock and the tables' locks. Returns the
    deltas taken."""
    if rollups_file_of(conn) is not None:  # rounds folded into the rollups file, not yet into agents
        rollups_file.settle_attached(conn, hook, TABLE, MAX_ATTEMPTS, discard=discard)
    if discard:
        return int(conn.execute(text(f"DELETE FROM {TABLE}")).rowcount or 0)
    rows = take(conn, None)
    apply_deltas(conn, hook, (payload for _, payload in rows))
    return len(rows)


# A round's aggregate grows with the distinct rollup rows it touches. On two files the applier no
# longer waits for the ingest writer, so its rounds and the writer's groups are in memory at once:
# with 100,000 distinct agent names in one process (tests/hostile) the RSS grew by 161 to 312 MB
# with 8 MB rounds (102 on one file), 134 with 1 MB; ingest into SQLite measured alike with either
# (docs/performance.md, 2026-12-06, sixth session).
_TWO_FILE_MAX_BYTES: Final = 2**20


# A pause of the writers this many times their mean interval between deltas ends a pace early.
# Under full load on 2 cores the writers commit about 7 deltas a second, some 0.2 to 0.4 s apart:
# a fixed 0.2 s took those gaps for the end of the load and cut most paces short, so rounds ran
# about once a second whatever the pace (a pace of 5 s gave 29 rounds in 30 s; docs/performance.md).
QUIET_GAPS: Final = 5


def quiet_after(quiet: float, pace: float, gap: float | None) -> float:
    """How long the outbox must stay unchanged before the applier takes the writers for quiet:
    ``quiet`` at least; ``QUIET_GAPS`` times ``gap``, the writers' mean interval between deltas
    over the last rounds (None when not known), if that is longer; never more than ``pace``."""
    if gap is None:
        return quiet
    return max(quiet, min(QUIET_GAPS * gap, pace))


class RollupApplier:
    """A thread that folds pending deltas into the rollups, in batches, until stopped.

    A round takes up to ``batch`` outbox rows (at most ``max_bytes`` of payload) in one
    transaction. Under load, a round that applied deltas is followed by the next ``pace`` seconds
    after it started, so each round folds about ``pace`` seconds of deltas: the rollup statements
    cost per distinct row they touch (an agent's hour, a user's day, an (agent, user) pair), and
    one round over a second of traffic touches each such row once where rounds taken back to back
    touched it in many of them (measured: about a tenth less PostgreSQL CPU under full load; see
    docs/performance.md). Rollups lag by about ``pace`` more while the load lasts; when the
    writers go quiet (no delta for ``quiet`` seconds, or for ``QUIET_GAPS`` of their usual interval
    between deltas if that is longer) the pending deltas are applied at once. A full round
    goes on at once (a backlog); a round that found nothing waits ``interval`` (or for ``stop``)."""

    def __init__(
        self,
        engine: Engine,
        hook: RollupHook,
        *,
        interval: float = 1.0,
        pace: float = 1.0,
        quiet: float = 0.2,
        batch: int = 256,
        max_bytes: int = 8 * 2**20,
        metrics: ApplierMetrics | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.after_commit = after_commit  # SQLite: checkpoint_wal after a round that wrote
        self.hook = hook
        self.interval = interval
        self.pace = pace
        self.quiet = quiet
        self.batch = batch
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self._deadline = 0.0
        # a SQLite file: its rollup tables may live in a file of their own (analytics/rollups_file.py)
        self._rollups: Engine | None = None
        self._split: bool | None = None  # known at the first round

    def _rollups_file(self) -> Engine | None:
        """The rollups file's engine when the rollup tables live there, else None."""
        if self._split is None:
            path = self.engine.url.database
            if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
                self._split = False
                return None
            with reading(self.engine) as conn:
                synchronous = str(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
            engine = sqlite_rollups_engine(path, synchronous)
            with reading(engine) as conn:
                self._split = has_split_rollups(conn.connection.driver_connection, "main")  # type: ignore[arg-type]
            if self._split:
                self._rollups = engine
            else:
                engine.dispose()
        return self._rollups

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-otel-rollups", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after applying what is pending (within ``timeout``; what remains waits in the
        outbox for the next applier)."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._rollups is not None:
            self._rollups.dispose()

    def _run(self) -> None:
        previous: float | None = None  # when the last round that applied deltas started (empty ones
        # come between when a pace ends early, so they do not count)
        while True:
            stopping = self._stopping.is_set()
            started = time.monotonic()
            try:
                applied, full = self._run_round()
                self._backoff = 0.0
                # with a rollups file (SQLite) the round's write to the main file is small and the
                # ingest writer checkpoints that file after each of its groups
                if applied and self.after_commit is not None and not self._split:
                    run_after_commit(self.after_commit)
            except Exception as exc:  # the thread must survive: the deltas wait in the outbox
                self._backoff = min(max(self._backoff * 2, 0.5), 30.0)
                log.warning("rollup applier round failed (%s); retrying in %.1f s", type(exc).__name__, self._backoff)
                applied, full = 0, False
            if stopping:
                if applied and time.monotonic() < self._deadline:
                    continue  # drain before exiting
                return
            if applied:
                gap = self._writers_gap(previous, started, applied)
                previous = started
                # Under load: the next round starts `pace` after this one started (a full round,
                # a backlog, at once). Waiting the whole idle interval here left the rollups that
                # far behind; going on at once made many small rounds that cost more in all.
                if not full:
                    self._pace(started, gap)
                continue
            self._wake.wait(self._backoff or self.interval)
            self._wake.clear()

    def _writers_gap(self, previous: float | None, started: float, applied: int) -> float | None:
        """The writers' mean interval between deltas: a round takes what was written since the
        previous round that took deltas started. None at first, or after a pause longer than
        two paces (the load stopped in between; such an interval says nothing of its rate)."""
        if previous is None or started - previous > 2 * self.pace + self.interval:
            return None
        return (started - previous) / applied

    def _pace(self, started: float, gap: float | None = None) -> None:
        """Wait until ``pace`` after ``started``, or less when the writers have gone quiet: no
        delta written for a quiet stretch (``quiet_after``) means the load paused or ended, and
        the deltas pending then have nothing to wait for (the rollups catch up at once instead of
        up to a pace later). ``gap``: the writers' mean interval between deltas, if known."""
        deadline = started + self.pace
        if deadline <= time.monotonic():
            return
        quiet = quiet_after(self.quiet, self.pace, gap)
        seen, newest = self._outbox_state()
        if newest is not None and newest >= quiet:
            return  # the last delta was written during the round, long enough ago: the load ended
        since = time.monotonic()
        poll = self.quiet / 4  # a quiet stretch is seen within a quarter of `quiet` of its length
        while (rest := deadline - time.monotonic()) > 0:
            if self._wake.wait(min(rest, poll)):
                self._wake.clear()
                return
            now, newest = self._outbox_state()
            if now is None or now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def _outbox_state(self) -> tuple[int | None, float | None]:
        """(pending deltas, seconds since the newest was written). While this applier waits
        only writers change the count, so it grows whenever one commits a delta; the age is
        known on PostgreSQL (``_INSERT_PG``), None elsewhere. (None, None) when the database is
        away (keep pacing; the round itself will report it)."""
        try:
            with reading(self.engine) as conn:
                if conn.dialect.name != "postgresql":
                    return backlog(conn)[0], None
                count, age = conn.execute(
                    text(f"SELECT count(*), extract(epoch FROM clock_timestamp() - max(created_at)) FROM {TABLE}")
                ).one()
                return int(count), None if age is None else float(age)
        except Exception:
            return None, None

    def run_once(self) -> int:
        """One round: returns the deltas applied (0 if another applier holds the lock)."""
        return self._run_round()[0]

    def _run_round(self) -> tuple[int, bool]:
        """One round: (deltas applied, whether the round was full: more may be waiting)."""
        started = time.perf_counter()
        full = False
        rollups = self._rollups_file()
        try:
            if rollups is not None:
                applied, executions, full = self._two_file_round(rollups, self.batch)
            else:
                applied, executions, full = self._round(None)
        except Exception as exc:
            if _transient(exc):
                raise
            log.error("applying rollup deltas failed (%s); applying them one by one", type(exc).__name__)
            applied = self._isolate() if rollups is None else self._two_file_isolate(rollups)
        else:
            if applied and self.metrics is not None:
                self.metrics.rollup_applied(applied, time.perf_counter() - started)
            log.debug("applied %d rollup deltas (%d executions)", applied, executions)
        self._report()
        return applied, full

    def _round(self, only: int | None) -> tuple[int, int, bool]:
        """(deltas applied, executions counted, whether the batch limits cut the round short)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                locked = conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)", (APPLIER_LOCK,)).scalar()
                if not locked:
                    return 0, 0, False
            rows = take(conn, self.batch, only=only, max_bytes=self.max_bytes)
            if not rows:
                return 0, 0, False
            full = len(rows) >= self.batch or sum(len(payload) for _, payload in rows) >= self.max_bytes
            return len(rows), apply_deltas(conn, self.hook, (payload for _, payload in rows)), full

    def _two_file_round(self, rollups: Engine, limit: int) -> tuple[int, int, bool]:
        """One round on a SQLite file with a rollups file (analytics/rollups_file.py): read the
        deltas after the rollups file's mark, fold them in under that file's lock alone, then
        settle ``agents`` and the outbox under the main file's lock."""
        with reading(rollups) as conn:
            after = rollups_file.folded_mark(conn)
        with reading(self.engine) as conn:
            settled = rollups_file.agents_mark(conn)
            max_bytes = min(self.max_bytes, _TWO_FILE_MAX_BYTES)
            ids = pending_ids_sql(f"attempts < {MAX_ATTEMPTS} AND id > {int(after)}", limit, max_bytes)
            rows = [
                (int(r[0]), bytes(r[1]))
                for r in conn.execute(text(f"SELECT id, payload FROM {TABLE} WHERE id IN ({ids}) ORDER BY id"))
            ]
        executions, full = 0, False
        if rows:
            full = len(rows) >= limit or sum(len(payload) for _, payload in rows) >= max_bytes
            data, executions = gather(self.hook, (payload for _, payload in rows))
            if not rollups_file.fold(rollups, self.hook, data, after, rows[-1][0], settled):
                return 0, 0, False  # another applier went first
        if rows or settled < after:
            rollups_file.settle(self.engine, rollups, self.hook, TABLE, MAX_ATTEMPTS)
        return len(rows), executions, full

    def _two_file_isolate(self, rollups: Engine) -> int:
        """A round failed for a reason other than the database's availability: fold its deltas
        one at a time, in order, up to the one that fails; that one's attempt is counted and it
        waits for the next round (set aside after ``MAX_ATTEMPTS``, as on one file). The mark
        cannot pass a delta that is neither folded nor set aside, so the rest wait with it."""
        applied = 0
        for _ in range(self.batch):
            try:
                done = self._two_file_round(rollups, 1)[0]
            except Exception as exc:
                if _transient(exc):
                    raise
                with reading(rollups) as conn:
                    after = rollups_file.folded_mark(conn)
                with reading(self.engine) as conn:
                    failed = conn.execute(
                        text(f"SELECT min(id) FROM {TABLE} WHERE id > :after AND attempts < {MAX_ATTEMPTS}"),
                        {"after": after},
                    ).scalar_one()
                self._failed(None if failed is None else int(failed), exc)
                break
            if not done:
                break
            applied += done
        return applied

    def _isolate(self) -> int:
        """A batch failed for a reason other than the database's availability: apply its deltas
        alone, so one bad delta is set aside (after ``MAX_ATTEMPTS``) and the others apply."""
        with reading(self.engine) as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    text(f"SELECT id FROM {TABLE} WHERE attempts < {MAX_ATTEMPTS} ORDER BY id LIMIT {int(self.batch)}")
                )
            ]
        applied = 0
        for delta_id in ids:
            try:
                applied += self._round(delta_id)[0]
            except Exception as exc:
                if _transient(exc):
                    raise
                self._failed(delta_id, exc)
        return applied

    def _failed(self, delta_id: int | None, exc: Exception) -> None:
        """A delta failed to apply alone: logged, counted, and its attempt recorded (set aside
        after ``MAX_ATTEMPTS``); ``None`` when no pending delta is left to hold to account."""
        log.error("rollup delta %s failed to apply (%s)", delta_id, type(exc).__name__)
        if self.metrics is not None:
            self.metrics.rollup_failed()
        if delta_id is not None:
            with self.engine.begin() as conn:
                conn.execute(text(f"UPDATE {TABLE} SET attempts = attempts + 1 WHERE id = :id"), {"id": delta_id})

    def _report(self) -> None:
        if self.metrics is None:
            return
        with reading(self.engine) as conn:
            count, oldest = backlog(conn)
        lag = 0.0 if oldest is None else max(0.0, time.time() - oldest.timestamp())
        self.metrics.rollup_backlog(count, lag)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Apply until the outbox is empty (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.run_once()
            except Exception as exc:
                if not _transient(exc):  # a busy database (another writer) is retried
                    raise
            with reading(self.engine) as conn:
                if backlog(conn)[0] == 0:
                    return True
            time.sleep(0.05)
        return False


def _transient(exc: BaseException) -> bool:
    """Errors that say nothing about the deltas: retry the round later, leaving their attempts as
    they are. That is every error but one about the values (``is_data_error``): the database down
    or locked (``is_unavailable``, ``is_retryable``, both never about the values), and any other
    database error (a rollup table missing during a restore, a revoked grant, a read-only
    server), which every delta would hit alike: counting those against the deltas set every one
    of them aside after three rounds, and the rollups then waited for ``rollups rebuild``."""
    return not is_data_error(exc)


__all__ = [
    "APPLIER_LOCK",
    "MAX_ATTEMPTS",
    "TABLE",
    "OutboxHook",
    "RollupApplier",
    "backlog",
    "decode",
    "drain",
    "encode",
]
