"""Group commit: many OTLP requests share one transaction, each waits for its own commit.

Requests (already normalized) queue up while a writer thread commits the previous group; the
thread then takes everything queued, up to ``max_batch_spans``, into the next transaction. Under
load groups grow by themselves; idle, a single request commits at once. No timers, no polling.

With ``threads`` > 1 (PostgreSQL), several groups are in flight on their own connections: one
thread's Python work (rows, rollups, COPY encoding) overlaps another's time in the database
(psycopg releases the GIL while it waits). Rows are written in primary-key order and hot rows
(rollups, agents) are locked last, so concurrent groups never deadlock and wait on each other
only for those last statements.

Failure handling
- The database is unreachable: the group fails with ``StorageUnavailable`` (503, retryable), new
  requests fail fast until a probe succeeds; the engine reconnects by itself.
- Deadlock or lock timeout: the group is retried.
- Any other error: the group is split so that one bad request, then one bad span, is rejected
  alone (each span in its own savepoint) while its neighbours commit. Only a refusal of the
  span's own values (``is_data_error``) rejects it; an error that says something about the
  database instead (a missing table, a revoked privilege, a read-only server) fails the request
  retryably (503): rejected spans are dropped by the client, so a server-side fault must not
  turn into rejections of every span.
- Memory is bounded: beyond ``max_queue_spans`` pending spans, requests get ``Overloaded`` (429).
- ``stop`` drains what was accepted before returning.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from agent_otel.collector.pipeline.model import NormalizedBatch
from agent_otel.collector.receiver.errors import Overloaded, StorageUnavailable
from agent_otel.collector.storage.transaction import ChangeHook, ChangeSet, write_group

log = logging.getLogger(__name__)

_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})  # deadlock, serialization, lock timeout
# SQLSTATE classes that refuse a row's values: data exception (a number out of range, a bad
# encoding), integrity constraint violation, program limit exceeded (a value too large to index)
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})


class CommitListener(Protocol):
    """Told what each committed transaction added (span-derived metrics are one)."""

    def committed(self, changes: ChangeSet) -> None: ...


class WriterMetrics(Protocol):
    def observe_commit(self, seconds: float, spans: int, requests: int) -> None: ...
    def rows_written(self, table: str, count: int) -> None: ...
    def database_error(self, kind: str) -> None: ...
    def queue_depth(self, spans: int) -> None: ...


class _NoMetrics:
    def observe_commit(self, seconds: float, spans: int, requests: int) -> None:
        pass

    def rows_written(self, table: str, count: int) -> None:
        pass

    def database_error(self, kind: str) -> None:
        pass

    def queue_depth(self, spans: int) -> None:
        pass


@dataclass(slots=True)
class WriteResult:
    """What happened to one request: rejected spans are reported in ``partial_success``."""

    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Item:
    batch: NormalizedBatch
    size: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]


def _size(batch: NormalizedBatch) -> int:
    return max(1, len(batch.spans) + len(batch.logs))


# The store writes through SQLAlchemy (errors wrapped in ``DBAPIError``) and through the
# driver's own cursors (COPY, the rollup store: the driver's error as raised); every
# classification below looks at the driver's error either way.


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be used right now (connection lost or refused, shutting down, out of
    resources): fail fast and probe until it answers. The drivers' OperationalError also covers
    lock conflicts (retryable) and PostgreSQL's "program limit exceeded" (a value too large to
    index: about the values, so the span is isolated and rejected, not retried forever)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    error = _driver_error(exc)
    operational = isinstance(error, psycopg.OperationalError | sqlite3.OperationalError)
    return operational and not is_retryable(exc) and not is_data_error(exc)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock, a serialization failure or a lock wait that timed out: the same work again
    can succeed at once."""
    error = _driver_error(exc)
    if isinstance(error, psycopg.Error):
        return error.sqlstate in _RETRYABLE_SQLSTATES
    return isinstance(error, sqlite3.OperationalError) and "database is locked" in str(error)


def is_data_error(exc: BaseException) -> bool:
    """Whether a span's write failed because of the span's own values, so rejecting that span is
    right: the database refused them (see ``_DATA_SQLSTATE_CLASSES``; SQLite's integrity, data and
    binding errors) or our code raised on them (not a database error at all). Any other database
    error is about the database's state, and would fail every span alike."""
    error = _driver_error(exc)
    if isinstance(error, psycopg.Error):
        return (error.sqlstate or "")[:2] in _DATA_SQLSTATE_CLASSES
    if isinstance(error, sqlite3.Error):
        return isinstance(error, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError)
    return not isinstance(exc, DBAPIError)


def _describe(exc: BaseException) -> str:
    """An error for logs: its class and SQLSTATE, never its message (which can quote values)."""
    error = _driver_error(exc)
    sqlstate = getattr(error, "sqlstate", None)
    return f"{type(error).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")


def run_after_commit(task: Callable[[], None]) -> None:
    """Upkeep after a commit (the WAL checkpoint): its failure is logged, never raised, since
    what was committed is committed and the next commit tries again."""
    try:
        task()
    except Exception as exc:
        log.warning("after-commit upkeep failed: %s", _describe(exc))


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        hooks: Sequence[ChangeHook] = (),
        listeners: Sequence[CommitListener] = (),
        max_queue_spans: int = 200_000,
        max_batch_spans: int = 20_000,
        retry_after: int = 2,
        metrics: WriterMetrics | None = None,
        threads: int = 1,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.after_commit = after_commit  # SQLite: checkpoint_wal, once the group is answered
        self.hooks = list(hooks)
        self.listeners = list(listeners)
        self.max_queue_spans = max_queue_spans
        self.max_batch_spans = max_batch_spans
        self.retry_after = retry_after
        self.metrics: WriterMetrics = metrics or _NoMetrics()
        self._queue: deque[_Item] = deque()
        self._pending = 0  # spans queued or being written
        self._cond = threading.Condition()
        self._stopping = False
        self._available = True
        self._threads: list[threading.Thread] = []
        self.threads = threads

    # -- public ------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    @property
    def pending_spans(self) -> int:
        return self._pending

    def start(self) -> None:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"agent-otel-writer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after writing everything already accepted (or failing it, if the database is down)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    async def write(self, batch: NormalizedBatch) -> WriteResult:
        """Queue a request's records and wait until they are committed."""
        if not batch.spans and not batch.logs:
            return WriteResult()
        size = _size(batch)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        with self._cond:
            if self._stopping:
                raise StorageUnavailable("collector is shutting down", self.retry_after)
            if not self._available:
                raise StorageUnavailable("database unavailable", self.retry_after)
            if self._pending + size > self.max_queue_spans and self._pending > 0:
                raise Overloaded(
                    f"collector queue is full ({self._pending} spans pending); retry later", self.retry_after
                )
            self._pending += size
            self._queue.append(_Item(batch, size, loop, future))
            self._cond.notify()
        self.metrics.queue_depth(self._pending)
        return await asyncio.shield(future)

    # -- writer thread ---------------------------------------------------------------------------

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            group = [self._queue.popleft()]
            spans = group[0].size
            while self._queue and spans + self._queue[0].size <= self.max_batch_spans:
                item = self._queue.popleft()
                spans += item.size
                group.append(item)
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            try:
                self._write(group)
            except BaseException as exc:  # the thread must survive anything, or nothing is written
                log.error("writer failed unexpectedly: %s", type(exc).__name__)
                self._fail(group, StorageUnavailable("internal error while writing", self.retry_after))

    def _write(self, group: list[_Item]) -> None:
        batches = [item.batch for item in group]
        started = time.perf_counter()
        try:
            changes = self._commit(batches)
        except Exception as exc:
            if is_unavailable(exc):
                self.metrics.database_error("unavailable")
                log.warning("database unavailable: %s", type(exc).__name__)
                self._fail(group, StorageUnavailable("database unavailable", self.retry_after))
                self._wait_for_database()
                return
            self.metrics.database_error("write_failed")
            log.warning("write of %d requests failed (%s); isolating", len(group), _describe(exc))
            self._isolate(group)
            return
        self._committed(group, changes, time.perf_counter() - started)

    def _commit(self, batches: list[NormalizedBatch]) -> ChangeSet:
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return write_group(conn, batches, self.hooks)
            except Exception as exc:
                if not is_retryable(exc) or attempt == 4:
                    raise
                self.metrics.database_error("retried")
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _committed(
        self, group: list[_Item], changes: ChangeSet, seconds: float, result: WriteResult | None = None
    ) -> None:
        """After a commit: metrics, listeners, every request of the group is answered, then the
        upkeep (``after_commit``)."""
        self.metrics.observe_commit(seconds, sum(item.size for item in group), len(group))
        for table, rows in (
            ("agent_executions", changes.executions),
            ("agent_steps", changes.steps),
            ("agent_logs", changes.logs),
            ("agent_feedback", changes.feedback),
        ):
            if rows:
                self.metrics.rows_written(table, len(rows))
        for listener in self.listeners:
            try:
                listener.committed(changes)
            except Exception as exc:  # metrics must never fail a commit that happened
                log.error("commit listener %s failed: %s", type(listener).__name__, type(exc).__name__)
        for item in group:
            self._resolve(item, result or WriteResult())
        if self.after_commit is not None:
            run_after_commit(self.after_commit)

    def _isolate(self, group: list[_Item]) -> None:
        if len(group) > 1:
            for item in group:
                self._write([item])
            return
        item = group[0]
        rejected: dict[str, int] = {}
        changes = ChangeSet()
        started = time.perf_counter()
        try:
            with self.engine.begin() as conn:
                for single in _singles(item.batch):
                    try:
                        with conn.begin_nested():
                            changes.merge(write_group(conn, [single], self.hooks))
                    except Exception as exc:
                        if not is_data_error(exc):
                            raise  # the database's state, not this span: the whole request fails
                        rejected["storage_rejected"] = rejected.get("storage_rejected", 0) + 1
        except Exception as exc:
            if is_unavailable(exc):
                self.metrics.database_error("unavailable")
                self._fail(group, StorageUnavailable("database unavailable", self.retry_after))
            else:
                self.metrics.database_error("write_failed")
                log.error("write failed on the database's side, not the data's: %s; answered 503", _describe(exc))
                self._fail(group, StorageUnavailable("storage error; retry later", self.retry_after))
            return
        self._committed(group, changes, time.perf_counter() - started, WriteResult(rejected))

    def _wait_for_database(self) -> None:
        """Fail what is queued, refuse new work, and probe until the database answers."""
        with self._cond:
            self._available = False
            queued = list(self._queue)
            self._queue.clear()
        self._fail(queued, StorageUnavailable("database unavailable", self.retry_after))
        delay = 0.2
        while True:
            with self._cond:
                if self._stopping:
                    self._available = True
                    return
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception:
                with self._cond:
                    self._cond.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.info("database reachable again")
            with self._cond:
                self._available = True
            return

    def _release(self, items: Sequence[_Item]) -> None:
        with self._cond:
            self._pending -= sum(item.size for item in items)
        self.metrics.queue_depth(self._pending)

    def _resolve(self, item: _Item, result: WriteResult) -> None:
        self._release([item])
        item.loop.call_soon_threadsafe(_set_result, item.future, result)

    def _fail(self, items: Sequence[_Item], error: Exception) -> None:
        self._release(items)
        for item in items:
            item.loop.call_soon_threadsafe(_set_exception, item.future, error)


def _singles(batch: NormalizedBatch) -> list[NormalizedBatch]:
    out = [NormalizedBatch(spans=[span]) for span in batch.spans]
    out += [NormalizedBatch(logs=[log]) for log in batch.logs]
    return out


def _set_result(future: asyncio.Future[WriteResult], result: WriteResult) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[WriteResult], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
