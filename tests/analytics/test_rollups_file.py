"""On a SQLite file the rollup tables live in a file of their own, so the rollup applier and the
ingest writer each hold a write lock of their own (storage/database.py, migration 0006), and
a round spans the two files in steps that are each safe to repeat (analytics/rollups_file.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from agent_otel.collector.analytics import rollups_file
from agent_otel.collector.analytics.hook import RollupHook
from agent_otel.collector.analytics.outbox import OutboxHook, RollupApplier, backlog
from agent_otel.collector.analytics.rebuild import rebuild
from agent_otel.collector.service import writer_engine
from agent_otel.collector.storage import migrate
from agent_otel.collector.storage.database import rollups_path, sqlite_path
from agent_otel.collector.storage.schema import ROLLUP_TABLES
from agent_otel.collector.storage.transaction import write_group
from tests.analytics.helpers import assert_rollups_match_raw, metric_row, read_rollups
from tests.collector.storage.test_write_group import batch_of
from tests.conftest import make_settings
from tests.otlp_helpers import finished_spans


def _ingest(engine: Engine, groups: int) -> None:
    for _ in range(groups):
        with engine.begin() as conn:
            write_group(conn, [batch_of(finished_spans(3))], [OutboxHook()])


def _tables(path: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return backlog(conn)[0]


def _agent_executions(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(total_executions), 0) FROM agents")).scalar_one())


def _busy_main_file(*args: object, **kwargs: object) -> int:
    """Step 3 failing: the main file's lock not had in time (or a crash there)."""
    raise OperationalError("settle", None, sqlite3.OperationalError("database is locked"))


@pytest.fixture
def engine(sqlite_url: str, engine_for: Callable[[str], Engine]) -> Engine:
    engine = engine_for(sqlite_url)
    migrate.upgrade(engine)
    return engine


def test_the_rollup_tables_live_beside_the_database_file(sqlite_url: str, engine: Engine) -> None:
    main = sqlite_path(sqlite_url)
    rollups = rollups_path(main)
    assert Path(rollups).name == "agent-otel.rollups.db" and Path(rollups).parent == Path(main).parent
    assert set(ROLLUP_TABLES) | {"rollup_rounds"} <= _tables(rollups)
    in_main = _tables(main)
    assert not set(ROLLUP_TABLES) & in_main and {"agents", "agent_executions", "rollup_outbox"} <= in_main
    assert "agent_summary" not in in_main  # a view cannot span two files: a TEMP view per connection
    _ingest(engine, 2)  # 3 executions each
    assert RollupApplier(engine, RollupHook()).run_once() == 2
    with engine.connect() as conn:  # the tables by their plain names, the summary across both files
        summary = conn.execute(
            text("SELECT agent_id, total_executions, successful_executions FROM agent_summary")
        ).all()
    assert sorted(summary) == [("support-bot-id", 6, 6)]
    assert migrate.check(engine) == []
    with engine.begin() as conn:  # drift in the rollups file is found there
        conn.execute(text("ALTER TABLE usage_daily ADD COLUMN stray TEXT"))
    assert any("stray" in problem for problem in migrate.check(engine))


def test_the_ingest_writer_and_the_applier_lock_a_file_each(sqlite_url: str, engine: Engine) -> None:
    """While the ingest writer's engine holds the main file's write lock, the applier folds into
    the rollups file, and the other way round."""
    settings = make_settings(sqlite_url)
    ingest = writer_engine(settings, rollups=False)
    applier = RollupApplier(engine, RollupHook())
    rollups = applier._rollups_file()
    assert rollups is not None
    _ingest(engine, 1)
    try:
        with ingest.begin() as conn:  # BEGIN IMMEDIATE on the main file alone
            conn.execute(text("UPDATE agents SET name = name"))
            with rollups.connect() as other, other.begin():  # the rollups file's lock: free
                other.execute(text("UPDATE rollup_rounds SET mark = mark"))
            main = sqlite3.connect(sqlite_path(sqlite_url), timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                main.execute("BEGIN IMMEDIATE")  # the main file's: taken
            main.close()
        with rollups.begin():  # and the other way round
            with ingest.begin() as conn:
                conn.execute(text("UPDATE agents SET name = name"))
            other = sqlite3.connect(rollups_path(sqlite_path(sqlite_url)), timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    finally:
        ingest.dispose()
        applier.stop(timeout=1)


def test_a_round_cut_between_the_two_files_is_settled_by_the_next(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folded into the rollups file, then the main file's step fails (a crash, a busy file): the
    deltas stay pending and agents lacks them, but nothing is folded twice: the next round
    settles the recorded round, each execution counted exactly once."""
    _ingest(engine, 3)
    applier = RollupApplier(engine, RollupHook())
    settle = rollups_file.settle_rounds

    monkeypatch.setattr(rollups_file, "settle_rounds", _busy_main_file)
    with pytest.raises(OperationalError):
        applier.run_once()
    assert _pending(engine) == 3 and _agent_executions(engine) == 0
    with engine.connect() as conn:  # folded: the rollups file has the round
        day = conn.execute(text("SELECT total_executions FROM agent_metrics WHERE period = 'day'")).scalar_one()
    assert day == 9
    monkeypatch.setattr(rollups_file, "settle_rounds", settle)
    assert applier.run_once() == 0  # nothing new to fold; the recorded round is settled
    assert _pending(engine) == 0 and _agent_executions(engine) == 9
    _ingest(engine, 1)
    assert applier.run_once() == 1
    rows = assert_rollups_match_raw(engine)
    assert metric_row(rows, "support-bot-id", "day")["total_executions"] == 12


def test_a_delta_written_after_the_outbox_emptied_is_folded(engine: Engine) -> None:
    """The outbox's ids are never reused (AUTOINCREMENT): with plain rowids a delta written after
    the outbox emptied got id 1, under the applier's mark, and was never folded."""
    applier = RollupApplier(engine, RollupHook())
    for expected in (3, 6, 9):
        _ingest(engine, 1)
        assert applier.run_once() == 1 and _pending(engine) == 0
        assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == expected


def test_two_appliers_on_one_file_fold_each_delta_once(sqlite_url: str, engine: Engine) -> None:
    """Two appliers (as two collectors on one file would run) and a writer at once: each delta
    is folded once, and agents gets each round once."""
    writers = [writer_engine(make_settings(sqlite_url)) for _ in range(3)]  # BEGIN IMMEDIATE, as in serve
    appliers = [RollupApplier(w, RollupHook(), batch=2) for w in writers[1:]]
    writer = threading.Thread(target=_ingest, args=(writers[0], 12))
    writer.start()
    done = threading.Event()
    errors: list[BaseException] = []

    def run(applier: RollupApplier) -> None:
        try:
            while not done.is_set() or _pending(engine):
                applier.run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in appliers]
    try:
        for thread in threads:
            thread.start()
        writer.join(60)
        done.set()
        for thread in threads:
            thread.join(60)
    finally:
        for applier in appliers:
            applier.stop(timeout=1)
        for w in writers:
            w.dispose()
    assert errors == []
    rows = assert_rollups_match_raw(engine)
    assert metric_row(rows, "support-bot-id", "day")["total_executions"] == 36
    assert _agent_executions(engine) == 36


@pytest.mark.parametrize("since", [None, "2000-01-01"])
def test_a_rebuild_takes_the_rounds_agents_lacks_into_account(
    engine: Engine, sqlite_url: str, since: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round folded but not settled (and one settled before it, still recorded), then
    ``rollups rebuild``: the full rebuild recomputes agents (the rounds' changes are dropped),
    the ranged one adds the unsettled round's alone; either way exact."""
    from datetime import UTC, datetime

    applier = RollupApplier(engine, RollupHook())
    _ingest(engine, 1)
    assert applier.run_once() == 1  # settled; its record stays until the next fold
    _ingest(engine, 2)

    monkeypatch.setattr(rollups_file, "settle_rounds", _busy_main_file)
    with pytest.raises(OperationalError):
        applier.run_once()
    monkeypatch.undo()
    _ingest(engine, 1)  # and one delta not folded at all
    jobs = writer_engine(make_settings(sqlite_url))
    try:
        low = None if since is None else datetime.fromisoformat(since).replace(tzinfo=UTC)
        rebuild(jobs, since=low)
    finally:
        jobs.dispose()
    assert _pending(engine) == 0 and _agent_executions(engine) == 12
    assert metric_row(assert_rollups_match_raw(engine), "support-bot-id", "day")["total_executions"] == 12
    _ingest(engine, 1)
    assert applier.run_once() == 1 and _agent_executions(engine) == 15


def test_the_migration_moves_stored_rollups_and_back(sqlite_url: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(sqlite_url)
    migrate.upgrade(engine, "0005_steps_by_trace")
    assert set(ROLLUP_TABLES) <= _tables(sqlite_path(sqlite_url))
    _ingest(engine, 2)
    with engine.begin() as conn:  # fold the way revision 0005 did: one file, one transaction
        from agent_otel.collector.analytics.outbox import drain

        assert drain(conn, RollupHook()) == 2
    before = read_rollups(engine)
    migrate.upgrade(engine)
    engine.dispose()  # new connections: the TEMP view
    assert not set(ROLLUP_TABLES) & _tables(sqlite_path(sqlite_url))
    assert read_rollups(engine) == before and migrate.check(engine) == []
    _ingest(engine, 1)
    assert RollupApplier(engine, RollupHook()).run_once() == 1
    after = read_rollups(engine)
    migrate.downgrade(engine, "0005_steps_by_trace")
    engine.dispose()
    assert set(ROLLUP_TABLES) <= _tables(sqlite_path(sqlite_url))
    assert read_rollups(engine) == after and _pending(engine) == 0
    assert [p for p in migrate.check(engine) if "revision" not in p] == []


def test_a_settled_round_still_recorded_is_not_added_to_agents_again(engine: Engine, sqlite_url: str) -> None:
    """A settled round stays in ``rollup_rounds`` until the next fold; a ranged rebuild (which
    settles what it finds) must skip it, as it is below the main file's mark."""
    from datetime import UTC, datetime

    applier = RollupApplier(engine, RollupHook())
    _ingest(engine, 2)
    assert applier.run_once() == 2 and _agent_executions(engine) == 6
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rollup_rounds")).scalar_one() == 1
    jobs = writer_engine(make_settings(sqlite_url))
    try:
        rebuild(jobs, since=datetime(2000, 1, 1, tzinfo=UTC))
    finally:
        jobs.dispose()
    assert _agent_executions(engine) == 6
    assert_rollups_match_raw(engine)


def test_an_in_memory_database_keeps_its_rollups_with_it() -> None:
    """No file, no second file: the collector migrates, writes and folds on one engine (an
    in-memory SQLite database is private to its engine, so a second one would be empty)."""
    from agent_otel.collector.service import Collector

    collector = Collector(make_settings("sqlite:///:memory:"))
    try:
        collector.prepare_database()
        assert collector.jobs_engine is collector.engine
        _ingest(collector.engine, 1)
        assert RollupApplier(collector.engine, RollupHook()).run_once() == 1
        assert _agent_executions(collector.engine) == 3
    finally:
        collector.engine.dispose()
        collector.read_engine.dispose()
