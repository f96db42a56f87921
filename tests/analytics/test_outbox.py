"""Deferred rollups (analytics/outbox.py): deltas committed with the raw rows, applied exactly
once by whichever applier holds the lock, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from agent_otel.collector.analytics import outbox
from agent_otel.collector.analytics.aggregate import aggregate
from agent_otel.collector.analytics.hook import RollupHook, RollupInput
from agent_otel.collector.analytics.outbox import (
    MAX_ATTEMPTS,
    QUIET_GAPS,
    TABLE,
    OutboxHook,
    RollupApplier,
    backlog,
    decode,
    encode,
    quiet_after,
    take,
)
from agent_otel.collector.analytics.rebuild import rebuild
from agent_otel.collector.analytics.store import AgentBump
from agent_otel.collector.service import DEFAULT_ROLLUP_PACE, Collector
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.store import Store
from agent_otel.collector.storage.transaction import ChangeSet, write_group
from agent_otel.settings import load_settings
from tests.analytics.helpers import assert_rollups_match_raw, metric_row, read_rollups
from tests.collector.storage.test_write_group import batch_of
from tests.conftest import RunningCollector, wait_for_rollups
from tests.otlp_helpers import finished_spans


class Capture:
    """A change hook that keeps what each transaction inserted."""

    def __init__(self) -> None:
        self.changes: list[ChangeSet] = []

    def apply(self, conn: Connection, store: Store, changes: ChangeSet) -> None:
        self.changes.append(changes)


def pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return backlog(conn)[0]


def _ingest(engine: Engine, groups: int, spans_per_trace: int = 3) -> None:
    for _ in range(groups):
        with engine.begin() as conn:
            write_group(conn, [batch_of(finished_spans(spans_per_trace))], [OutboxHook()])


def test_payload_round_trip_aggregates_alike(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    capture = Capture()
    spans = finished_spans(4)
    late = [s for s in spans if s.name.startswith("chat")][::2]
    with engine.begin() as conn:
        write_group(conn, [batch_of([s for s in spans if s not in late])], [capture])
    with engine.begin() as conn:
        write_group(conn, [batch_of(late)], [capture])  # late steps: deltas, no executions
    assert capture.changes[0].executions and capture.changes[1].deltas
    for changes in capture.changes:
        decoded = decode(encode(changes))
        assert len(decoded.executions) == len(changes.executions)
        assert decoded.deltas == changes.deltas
        want = aggregate(changes.executions, changes.deltas, changes.feedback)
        assert aggregate(decoded.executions, decoded.deltas, decoded.feedback) == want


def test_change_sets_tallied_one_by_one_equal_one_aggregate(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """The applier tallies a round's deltas a chunk at a time into one aggregate
    (``RollupInput.add``): the same as aggregating every change set at once."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    capture = Capture()
    for spans_per_trace in (3, 4, 2, 5):
        spans = finished_spans(spans_per_trace)
        late = [s for s in spans if s.name.startswith("chat")][::2]
        with engine.begin() as conn:
            write_group(conn, [batch_of([s for s in spans if s not in late])], [capture])
        with engine.begin() as conn:
            write_group(conn, [batch_of(late)], [capture])
    assert sum(len(c.executions) for c in capture.changes) >= 4
    assert any(c.deltas for c in capture.changes)
    merged = RollupInput()
    for changes in capture.changes:
        merged.add(decode(encode(changes)))
    everything = ChangeSet()
    for changes in capture.changes:
        everything.merge(decode(encode(changes)))
    assert merged.agg == aggregate(everything.executions, everything.deltas, everything.feedback, interactions=False)
    whole = RollupInput()
    whole.add(everything)
    assert merged.pairs == whole.pairs and merged.per_pair == whole.per_pair
    with pytest.raises(ValueError, match="after its aggregate was read"):
        merged.add(everything)  # the states are the aggregate's now: adding would change it


def test_a_round_aggregated_in_chunks_gives_exact_rollups(
    db_url: str, engine_for: Callable[[str], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 6)
    monkeypatch.setattr(outbox, "_CHUNK_EXECUTIONS", 1)  # every delta its own chunk
    assert RollupApplier(engine, RollupHook()).run_once() == 6
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 6 * 3


def test_unknown_payload_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rollup outbox format"):
        decode(b'{"v": 99, "e": [], "d": [], "f": []}')


def test_deltas_wait_in_the_outbox_until_applied_once(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 4)
    assert pending(engine) == 4
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agent_metrics")).scalar_one() == 0  # not applied yet
    applier = RollupApplier(engine, RollupHook(), batch=3)
    assert applier.run_once() == 3  # a batch at most
    assert applier.run_once() == 1
    assert applier.run_once() == 0
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 4 * 3


def test_deltas_written_during_a_round_are_applied_after_the_pace_not_the_interval(
    pg_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """Under sustained load writers commit deltas while a round runs: the next round takes them
    one pace after the first started (the applier used to wait the idle interval unless the round
    had been full, so the rollups fell a whole interval behind). PostgreSQL: a writer commits while
    the applier's transaction is open."""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    _ingest(engine, 2)

    class WriterMeanwhile(RollupHook):
        rounds = 0

        def apply_input(self, conn: Connection, data: RollupInput) -> None:
            self.rounds += 1
            if self.rounds == 1:  # another writer commits while this round runs (before it locks rows)
                writer = threading.Thread(target=_ingest, args=(engine, 1))
                writer.start()
                writer.join(30)
            super().apply_input(conn, data)

    hook = WriterMeanwhile()
    applier = RollupApplier(engine, hook, interval=60.0, pace=0.2, batch=32)  # never full; a long interval
    applier.start()
    try:
        for _ in range(200):
            if hook.rounds >= 2 and pending(engine) == 0:
                break
            threading.Event().wait(0.05)
        assert hook.rounds >= 2 and pending(engine) == 0, "the delta written during the round waited"
    finally:
        applier.stop(timeout=10)
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 3 * 3


class CountingHook(RollupHook):
    """Counts the applier's rounds (``apply_rollups`` is what a round calls, on one file or two)."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds = 0

    def apply_rollups(self, conn: Connection, data: RollupInput) -> list[AgentBump]:
        self.rounds += 1
        return super().apply_rollups(conn, data)


def _commit_steadily(engine: Engine, applier: RollupApplier, *, seconds: float, every: float) -> int:
    """Run ``applier`` while a writer commits a delta ``every`` seconds for ``seconds``; then
    check that every delta was applied exactly once. Returns the commits."""
    applier.start()
    commits = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _ingest(engine, 1)
            commits += 1
            time.sleep(every)
    finally:
        applier.stop(timeout=10)
    assert pending(engine) == 0
    assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == commits * 3
    return commits


@pytest.mark.parametrize("pace", [0.0, 0.5])
def test_under_steady_load_rounds_are_paced(pace: float, pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    """A writer commits a delta every 20 ms for 1.5 s: with a pace the applier folds them in a
    few rounds of about that pace (each rollup row written once per round), without it nearly
    every delta gets a round of its own. Either way, all are applied exactly once. (PostgreSQL:
    the writer commits while the applier runs; the pacing itself is the same on SQLite.)"""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    hook = CountingHook()
    # quiet = pace: a stall of the writer on a busy machine must not end a pace early here
    applier = RollupApplier(engine, hook, interval=0.02, pace=pace, quiet=max(pace, 0.2), batch=1000)
    commits = _commit_steadily(engine, applier, seconds=1.5, every=0.02)
    if pace:
        assert hook.rounds <= 1.5 / pace + 3, (hook.rounds, commits)
    else:
        assert hook.rounds > commits / 3, (hook.rounds, commits)


def test_quiet_is_a_few_of_the_writers_intervals_within_quiet_and_the_pace() -> None:
    assert quiet_after(0.2, 2.0, None) == 0.2  # the writers' interval is not known yet
    assert quiet_after(0.2, 2.0, 0.01) == 0.2  # busy writers: a short pause already means quiet
    assert quiet_after(0.2, 2.0, 0.3) == pytest.approx(QUIET_GAPS * 0.3)
    assert quiet_after(0.2, 2.0, 10.0) == 2.0  # never longer than the pace


def test_writers_committing_further_apart_than_quiet_do_not_end_each_pace(
    pg_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """A writer commits a delta every 0.3 s, longer than ``quiet`` (0.2 s), for 3 s: once the
    applier knows that interval it keeps its 1.5 s pace (about 4 rounds), where a fixed quiet
    ended every pace at the next 0.2 s gap and made a round per delta (under full load on this
    machine, writers 0.2 to 0.4 s apart made every pace about a second, whatever it was set to)."""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    hook = CountingHook()
    applier = RollupApplier(engine, hook, interval=0.02, pace=1.5, quiet=0.2, batch=1000)
    commits = _commit_steadily(engine, applier, seconds=3.0, every=0.3)
    assert commits >= 6
    assert hook.rounds <= 3.0 / 1.5 + 3, (hook.rounds, commits)


def test_a_full_round_goes_on_at_once(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """A backlog (each round full) is applied round after round, not one round per pace."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 6)
    hook = CountingHook()
    applier = RollupApplier(engine, hook, interval=60.0, pace=60.0, batch=2)
    applier.start()
    try:
        wait_for_rollups(engine, timeout=10)  # a full round that waited the pace would take 60 s
    finally:
        applier.stop(timeout=10)
    assert hook.rounds == 3


def test_when_the_writers_go_quiet_pending_deltas_do_not_wait_the_pace(
    db_url: str, engine_for: Callable[..., Engine]
) -> None:
    """The last deltas of a burst are applied soon after the writers stop, not a pace later.
    The two write concurrently, so each through the collector's engine for it."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    ingest = engine_for(db_url, writer=True, ingest=True)
    _ingest(ingest, 1)
    hook = CountingHook()
    applier = RollupApplier(engine_for(db_url, writer=True), hook, interval=0.05, pace=60.0, quiet=0.2)
    applier.start()
    try:
        deadline = time.monotonic() + 10
        while hook.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        _ingest(ingest, 2)  # written while the applier paces after its first round
        written = time.monotonic()
        wait_for_rollups(engine, timeout=10)  # the pace is 60 s
        assert time.monotonic() - written < 5
    finally:
        applier.stop(timeout=10)
    assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == 9


def test_deltas_written_long_enough_before_a_round_ended_do_not_wait_for_quiet(
    pg_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """PostgreSQL: a delta's created_at is when it was written, so after a round the applier sees
    that the newest pending delta is already older than ``quiet`` (the load ended while the round
    ran) and goes on at once instead of watching the outbox for another ``quiet``."""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    _ingest(engine, 2)
    quiet = 1.0
    applier = RollupApplier(engine, RollupHook(), pace=60.0, quiet=quiet)
    count, age = applier._outbox_state()
    assert count == 2 and age is not None and 0 <= age < quiet
    time.sleep(quiet + 0.1)
    started = time.monotonic()
    applier._pace(started)  # the round "started" now: without the age it would wait `quiet` at least
    assert time.monotonic() - started < quiet / 2
    _ingest(engine, 1)  # a fresh delta: the writers are busy, so the pace is kept until they stop
    started = time.monotonic()
    applier._pace(started)
    assert quiet <= time.monotonic() - started < 30


def test_a_round_takes_at_most_max_bytes_of_payload_but_always_one_delta(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 5)
    with engine.connect() as conn:
        sizes = [int(r[0]) for r in conn.execute(text(f"SELECT length(payload) FROM {TABLE} ORDER BY id"))]
    with engine.begin() as conn:
        assert len(take(conn, 100, max_bytes=1)) == 1  # larger than the bound: taken alone
    with engine.begin() as conn:
        # a delta is taken while the ones before it in the round hold fewer bytes than the bound
        assert len(take(conn, 100, max_bytes=sizes[1] + sizes[2])) == 2  # exactly the 2nd and 3rd
    with engine.begin() as conn:
        assert len(take(conn, 100, max_bytes=sizes[3] + 1)) == 2  # the 5th starts below the bound
    _ingest(engine, 2)
    applier = RollupApplier(engine, RollupHook(), max_bytes=1)
    assert [applier.run_once(), applier.run_once(), applier.run_once()] == [1, 1, 0]


def one_round(applier: RollupApplier) -> int:
    """One round without the isolation that follows a failed one: the round an error escapes."""
    rollups = applier._rollups_file()
    if rollups is not None:  # a SQLite file: the rollup tables in a file of their own
        return applier._two_file_round(rollups, applier.batch)[0]
    return applier._round(None)[0]


def test_a_failed_round_leaves_its_deltas_for_the_next(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    """The deltas are deleted in the applying transaction: if it fails, they are all still there."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 3)

    class FailsOnce(RollupHook):
        failed = False

        def apply_rollups(self, conn: Connection, data: RollupInput) -> list[AgentBump]:
            bumps = super().apply_rollups(conn, data)  # the rollup rows are written, then the round fails
            if not self.failed:
                self.failed = True
                raise RuntimeError("crash after writing rollups")
            return bumps

    applier = RollupApplier(engine, FailsOnce())
    with pytest.raises(RuntimeError):
        one_round(applier)
    assert pending(engine) == 3
    assert applier.run_once() == 3
    assert pending(engine) == 0
    assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == 9


def test_a_bad_delta_is_set_aside_and_the_others_apply(db_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rollup_outbox (payload) VALUES (:p)"), {"p": b"not json"})
    _ingest(engine, 1)
    failures: list[int] = []

    class Metrics:
        def rollup_backlog(self, rows: int, lag_seconds: float) -> None:
            self.rows = rows

        def rollup_applied(self, deltas: int, seconds: float) -> None:
            pass

        def rollup_failed(self) -> None:
            failures.append(1)

    metrics = Metrics()
    applier = RollupApplier(engine, RollupHook(), metrics=metrics)
    if applier._rollups_file() is None:
        assert applier.run_once() == 2  # the batch failed; alone, the two good deltas applied
    else:  # two files: the deltas alone in order up to the bad one; the one after waits for it
        assert applier.run_once() == 1
    for _ in range(MAX_ATTEMPTS - 1):
        applier.run_once()
    assert len(failures) == MAX_ATTEMPTS
    if applier._rollups_file() is not None:
        assert applier.run_once() == 1  # set aside, the bad delta no longer holds the next one back
    assert metrics.rows == 1
    assert applier.run_once() == 0  # set aside: no more attempts, no more failures
    assert len(failures) == MAX_ATTEMPTS
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT attempts, payload FROM rollup_outbox")).all()
    assert [(r[0], bytes(r[1])) for r in rows] == [(MAX_ATTEMPTS, b"not json")]
    day = metric_row(read_rollups_ignoring_backlog(engine), "support-bot-id", "day")
    assert day["total_executions"] == 6


def test_a_database_fault_is_retried_not_counted_against_the_deltas(
    db_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """A rollup table missing (a restore in progress, a revoked grant) fails every delta alike:
    the rounds fail and are retried, no delta's attempts grow, and once the table is back every
    delta applies, instead of all of them being set aside after three rounds."""
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 2)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE usage_daily RENAME TO usage_daily_away"))
    failures: list[int] = []

    class Metrics:
        def rollup_backlog(self, rows: int, lag_seconds: float) -> None:
            pass

        def rollup_applied(self, deltas: int, seconds: float) -> None:
            pass

        def rollup_failed(self) -> None:
            failures.append(1)

    applier = RollupApplier(engine, RollupHook(), metrics=Metrics())
    for _ in range(MAX_ATTEMPTS + 1):
        # the rollup store writes through the driver's cursors: its errors arrive unwrapped
        with pytest.raises((DBAPIError, psycopg.Error, sqlite3.Error)):
            applier.run_once()
    with engine.connect() as conn:
        attempts = [r[0] for r in conn.execute(text("SELECT attempts FROM rollup_outbox"))]
    assert attempts == [0, 0] and failures == []
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE usage_daily_away RENAME TO usage_daily"))
    assert applier.run_once() == 2
    assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == 6


def read_rollups_ignoring_backlog(engine: Engine) -> Any:
    """``read_rollups`` without waiting for an empty outbox (a delta is set aside on purpose)."""
    with engine.begin() as conn:
        held = conn.execute(text("SELECT id, attempts, payload FROM rollup_outbox")).all()
        conn.execute(text("DELETE FROM rollup_outbox"))
    try:
        return read_rollups(engine)
    finally:
        with engine.begin() as conn:
            for delta_id, attempts, payload in held:
                conn.execute(
                    text("INSERT INTO rollup_outbox (id, attempts, payload) VALUES (:i, :a, :p)"),
                    {"i": delta_id, "a": attempts, "p": payload},
                )


def test_concurrent_appliers_apply_each_delta_once(pg_url: str, engine_for: Callable[[str], Engine]) -> None:
    """Several appliers (as several collectors or processes would run) race over deltas that
    writers keep committing: the rollups still equal the raw rows."""
    engine = engine_for(pg_url)
    migrate.upgrade(engine)
    stop = threading.Event()
    errors: list[BaseException] = []

    def applier_loop() -> None:
        applier = RollupApplier(engine, RollupHook(), batch=2)
        try:
            while not stop.is_set():
                applier.run_once()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=applier_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        _ingest(engine, 30, spans_per_trace=2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors
    RollupApplier(engine, RollupHook()).wait_idle()
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 60


@pytest.mark.parametrize("ranged", [False, True], ids=["full", "ranged"])
def test_rebuild_accounts_for_pending_deltas(db_url: str, engine_for: Callable[[str], Engine], ranged: bool) -> None:
    engine = engine_for(db_url)
    migrate.upgrade(engine)
    _ingest(engine, 2)
    RollupApplier(engine, RollupHook()).run_once()
    _ingest(engine, 2)  # pending when the rebuild starts
    assert pending(engine) == 2
    if ranged:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        report = rebuild(engine, now - timedelta(days=400), now - timedelta(days=200), force=True)
    else:
        report = rebuild(engine)
    assert report.deltas == 2 and pending(engine) == 0
    rollups = assert_rollups_match_raw(engine)
    assert metric_row(rollups, "support-bot-id", "day")["total_executions"] == 12


def test_inline_rollups_are_committed_before_the_acknowledgement(
    db_url: str, collector_factory: Callable[..., RunningCollector]
) -> None:
    from tests.analytics.conftest import post_traces
    from tests.analytics.traffic import demo_requests

    running = collector_factory(db_url, **{"ingest.rollups": "inline"})
    assert running.collector.applier is None
    post_traces(running.http_endpoint, demo_requests(20, seed=8))
    assert pending(running.engine) == 0  # nothing deferred: the rollups are already there
    assert_rollups_match_raw(running.engine)


def test_deferred_rollups_catch_up_and_report_their_backlog(
    running_collector: RunningCollector, traffic: list[bytes]
) -> None:
    import httpx

    from tests.analytics.conftest import post_traces

    assert running_collector.collector.applier is not None
    post_traces(running_collector.http_endpoint, traffic)
    assert_rollups_match_raw(running_collector.engine)  # waits for an empty outbox
    exposition = httpx.get(f"{running_collector.api}/metrics").text
    applied = [line for line in exposition.splitlines() if line.startswith("agent_otel_rollup_deltas_applied_total")]
    assert applied and float(applied[0].split()[1]) > 0
    assert "agent_otel_rollup_backlog" in exposition and "agent_otel_rollup_lag_seconds" in exposition


@pytest.mark.parametrize(
    ("role", "configured", "expected"),
    [("all", None, 0.0), ("api", None, DEFAULT_ROLLUP_PACE), ("all", 0.5, 0.5), ("api", 0.0, 0.0)],
)
def test_the_applier_is_paced_by_default_only_in_a_process_of_its_own(
    tmp_path: Path, role: str, configured: float | None, expected: float
) -> None:
    """One process: rounds back to back (a long round would hold up ingest on the interpreter's
    lock); the parent of ``--workers N``: paced. A configured pace wins either way."""
    overrides: dict[str, Any] = {"db_url": f"sqlite:///{tmp_path / 'pace.db'}"}
    if configured is not None:
        overrides["ingest.rollup_pace_seconds"] = configured
    collector = Collector(load_settings(overrides, environ={}), role=role, announce=lambda _line: None)
    try:
        assert collector.applier is not None
        assert collector.applier.pace == expected
    finally:
        collector.engine.dispose()
