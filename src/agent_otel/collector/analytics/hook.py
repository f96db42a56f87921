"""The rollup hook: runs inside every write transaction with exactly what it inserted.

Counting only what the transaction inserted is what makes rollups exact: a retried request
inserts nothing new, so it adds nothing; two collectors receiving the same spans insert each
row once between them, so each execution is counted by exactly one transaction.

Order of work (the lock order, identical in every transaction; see ``store.py``):
1. ``user_agent_interactions``: one additive upsert sums each pair's executions in SQL (counters,
   first/last, the hour and weekday histograms; the derived columns are recomputed in SQL) and
   locks the pairs; its totals say which pairs had no execution before (new pairs). Then the
   latest feedback of pairs with new feedback is read from ``agent_feedback`` (after the lock,
   so it sees what concurrent transactions committed).
2. ``agent_metric_users``: the (agent, period, user) rows of this transaction's executions that
   are not stored yet are the new unique users. A new pair has none stored: all four of its rows
   per hour are new without looking. Other pairs are looked up hours first; a user already
   present in an hour is present in that hour's day, week and month too, so only users new in
   the hour are looked up in the day, and only users new in the day in its week and month (while
   retention keeps coarser periods at least as long as finer ones; otherwise every period is
   looked up). The pair locks of step 1 make the look-up and the insert race-free.
3. ``agent_metrics``: lock, merge the transaction's aggregate, write.
4. ``usage_daily``: lock, merge, write.
5. ``agents``: additive updates of executions, users, ratings and the last execution time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from agent_otel.collector.analytics.aggregate import (
    Aggregate,
    PairExecution,
    Tally,
    pair_executions,
)
from agent_otel.collector.analytics.periods import starts_of
from agent_otel.collector.analytics.state import (
    AgentState,
    InteractionState,
    MetricKey,
    MetricState,
    PairKey,
    merge_metric_row,
)
from agent_otel.collector.analytics.store import METRICS, AgentBump, RollupStore, UserRow, rollup_store_for
from agent_otel.collector.storage.store import Store
from agent_otel.collector.storage.transaction import ChangeSet
from agent_otel.settings import RetentionSettings


def nested_retention(retention: RetentionSettings) -> bool:
    """True when every coarser rollup period is kept at least as long as every finer one."""

    def days(value: int) -> float:
        return float("inf") if value == 0 else float(value)

    hour, day = days(retention.hourly_rollups_days), days(retention.daily_rollups_days)
    week, month = days(retention.weekly_rollups_days), days(retention.monthly_rollups_days)
    return hour <= day <= week and day <= month


@dataclass
class HookTimings:
    """Seconds spent per stage, summed over the hook's calls (for benchmarks and the docs)."""

    calls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def needs_rollup(changes: ChangeSet) -> bool:
    """Whether a transaction's changes touch any rollup (executions, late steps, feedback)."""
    return bool(changes.executions or changes.deltas or changes.feedback)


@dataclass(slots=True)
class RollupInput:
    """What the rollups need of one or more change sets: their aggregate (``agg``), and each
    execution with a user as a ``PairExecution`` row (the interactions upsert sums those in SQL).
    Built by ``add``, one change set at a time, so the applier can let go of each batch of
    decoded deltas before the next (``outbox.apply_deltas``): the change sets are tallied into
    the same states, and rolled up into days, weeks and months once, when ``agg`` is first read
    (rolling up and merging an aggregate per batch was a third of the applier's aggregation)."""

    tally: Tally = field(default_factory=lambda: Tally(interactions=False))
    pairs: list[PairExecution] = field(default_factory=list)
    per_pair: dict[PairKey, int] = field(default_factory=dict)
    _agg: Aggregate | None = field(default=None, init=False, repr=False)

    def add(self, changes: ChangeSet) -> None:
        if self._agg is not None:
            raise ValueError("RollupInput.add after its aggregate was read")
        self.tally.add(changes.executions, changes.deltas, changes.feedback)
        pairs, per_pair = pair_executions(changes.executions)
        self.pairs += pairs
        for pair, count in per_pair.items():
            self.per_pair[pair] = self.per_pair.get(pair, 0) + count

    def finish(self) -> Aggregate:
        """Roll the tallied hours up (once); nothing can be added after."""
        if self._agg is None:
            self._agg = self.tally.result()
        return self._agg

    @property
    def agg(self) -> Aggregate:
        """The aggregate of every change set added (``finish``)."""
        return self.finish()


class RollupHook:
    """A ``ChangeHook`` that keeps every rollup table current."""

    def __init__(self, retention: RetentionSettings | None = None) -> None:
        self.chain_users = nested_retention(retention or RetentionSettings())
        self.timings = HookTimings()

    def apply(self, conn: Connection, store: Store, changes: ChangeSet) -> None:
        if not needs_rollup(changes):
            return
        started = time.perf_counter()
        data = RollupInput()
        data.add(changes)
        data.finish()
        self.timings.add("aggregate", time.perf_counter() - started)
        self.apply_input(conn, data)

    def apply_input(self, conn: Connection, data: RollupInput) -> None:
        """Add an aggregate of changes (``RollupInput``) to every rollup table, in this order."""
        if not data.agg.empty:
            self.apply_agents(conn, self.apply_rollups(conn, data))

    def apply_rollups(self, conn: Connection, data: RollupInput) -> list[AgentBump]:
        """Steps 1 to 4 (all but ``agents``); returns the changes step 5 adds to ``agents``,
        which depend on what steps 1 and 2 found (new pairs, changed ratings). The rollup applier
        on a SQLite file runs the two parts in transactions of their own, one per file
        (analytics/outbox.py)."""
        agg, pairs, per_pair = data.agg, data.pairs, data.per_pair
        if agg.empty:
            return []
        clock = time.perf_counter
        rollups = rollup_store_for(conn)
        t0 = clock()

        new_pairs = self._interactions(rollups, pairs, per_pair, agg.feedback, agg.agents)
        t1 = clock()
        self.timings.add("interactions", t1 - t0)

        new_users = self._unique_users(rollups, agg.metrics, new_pairs)
        t2 = clock()
        self.timings.add("users", t2 - t1)

        keys = sorted(agg.metrics)
        placeholders = [(*k, k[3].date(), k[3].hour if k[2] == "hour" else None) for k in keys]
        stored = rollups.lock_rows(METRICS, list(keys), placeholders)
        rows = []
        for key in keys:
            merged = merge_metric_row(stored[key], agg.metrics[key], new_users.get(key, 0), key[2], key[3])  # type: ignore[arg-type]
            rows.append((*key, *merged))
        rollups.write_rows(METRICS, rows)
        t3 = clock()
        self.timings.add("agent_metrics", t3 - t2)

        rollups.merge_usage(agg.usage)
        self.timings.add("usage_daily", clock() - t3)
        return [
            (tenant, agent, state.first_seen or state.last_executed_at or _epoch(), state)
            for (tenant, agent), state in agg.agents.items()
            if not state.empty or state.last_executed_at is not None
        ]

    def apply_agents(self, conn: Connection, bumps: list[AgentBump]) -> None:
        """Step 5: add executions, users and ratings to ``agents``."""
        t4 = time.perf_counter()
        rollup_store_for(conn).bump_agents(bumps)
        self.timings.add("agents", time.perf_counter() - t4)
        self.timings.calls += 1

    def _unique_users(
        self, rollups: RollupStore, metrics: dict[MetricKey, MetricState], new_pairs: set[PairKey]
    ) -> Counter[MetricKey]:
        """Insert the (agent, period, user) rows not stored yet and count them per rollup row."""
        new: dict[MetricKey, set[str]] = {}  # users known to be missing, per rollup row

        def missing(key: MetricKey) -> set[str]:
            users = new.get(key)
            if users is None:
                users = new[key] = set()
            return users

        hours: list[UserRow] = []  # to look up
        for (tenant, agent, period, start), state in metrics.items():
            if period != "hour" or not state.users:
                continue
            fresh = {user for user in state.users if (tenant, user, agent) in new_pairs}
            if fresh:
                _hour, day, week, month = starts_of(start)
                for period_start in ((period, start), ("day", day), ("week", week), ("month", month)):
                    missing((tenant, agent, *period_start)).update(fresh)
            hours.extend((tenant, agent, "hour", start, user) for user in state.users - fresh)
        found: list[UserRow] = []
        if hours and self.chain_users:
            new_hours = rollups.missing_users(sorted(hours))
            found += new_hours
            days = {(t, a, "day", starts_of(s)[1], u) for t, a, _p, s, u in new_hours}
            new_days = rollups.missing_users(sorted(days))
            found += new_days
            coarser: set[UserRow] = set()
            for t, a, _p, s, u in new_days:
                _hour, _day, week, month = starts_of(s)
                coarser.add((t, a, "week", week, u))
                coarser.add((t, a, "month", month, u))
            found += rollups.missing_users(sorted(coarser))
        elif hours:  # a coarser period may have expired before a finer one: look every period up
            every: set[UserRow] = set()
            for t, a, _p, s, u in hours:
                _hour, day, week, month = starts_of(s)
                every.update(((t, a, "hour", s, u), (t, a, "day", day, u), (t, a, "week", week, u)))
                every.add((t, a, "month", month, u))
            found += rollups.missing_users(sorted(every))
        for t, a, p, s, u in found:
            missing((t, a, p, s)).add(u)
        rows = [(*key, user) for key in sorted(new) for user in sorted(new[key])]  # key order: index order
        inserted = rollups.add_users(rows)
        if len(inserted) == len(rows):
            return Counter({key: len(users) for key, users in new.items()})
        return Counter((t, a, p, s) for t, a, p, s, _u in inserted)

    @staticmethod
    def _interactions(
        rollups: RollupStore,
        pairs: list[PairExecution],
        per_pair: dict[PairKey, int],
        feedback: dict[PairKey, list[Any]],
        agents: dict[tuple[str, str], AgentState],
    ) -> set[PairKey]:
        """Executions: one additive upsert of every touched pair (it locks them, in key order).
        Feedback: the latest rating, favorite and comment of those pairs, from ``agent_feedback``.
        Returns the pairs that had no execution before this transaction."""
        only_feedback: list[PairExecution] = [
            (*key, None, None, None, None) for key in sorted(feedback.keys() - per_pair.keys())
        ]
        if not pairs and not only_feedback:
            return set()
        totals = rollups.upsert_interactions(pairs + only_feedback)
        new_pairs = {key for key, added in per_pair.items() if totals.get(key, 0) == added}
        for tenant, _user, agent in new_pairs:
            change = agents.setdefault((tenant, agent), AgentState())
            change.users += 1
        if not feedback:
            return new_pairs
        keys = sorted(feedback)
        current = rollups.feedback_fields(keys)
        history = rollups.feedback_of(keys)
        updates = []
        for key in keys:
            favorite, rating, comment = current.get(key, (False, None, None))
            state = InteractionState(stored_rating=rating, stored_favorite=favorite, stored_comment=comment)
            for f in history.get(key, ()):
                state.add_feedback(f)
            new_favorite, new_rating, new_comment = state.feedback_values()
            if new_rating != rating:
                change = agents.setdefault((key[0], key[2]), AgentState())
                change.rating_count += (new_rating is not None) - (rating is not None)
                change.rating_sum += (new_rating or 0) - (rating or 0)
            updates.append((*key, new_favorite, new_rating, new_comment))
        rollups.set_feedback_fields(updates)
        return new_pairs


def _epoch() -> datetime:
    from agent_otel.collector.pipeline.rows import EPOCH

    return EPOCH
