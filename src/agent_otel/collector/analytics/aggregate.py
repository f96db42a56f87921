"""Pure aggregation: executions, late-step changes and feedback -> rollup states.

One function, ``aggregate``, serves both paths:
- the rollup hook aggregates one transaction's ``ChangeSet`` (what it inserted) and adds the
  result to the stored rows;
- ``recompute`` aggregates every raw row at once, which is what the rollups must equal (tests
  compare the two; ``agent-otel rollups rebuild`` writes it).

Executions are first aggregated per agent and hour, then hours are merged into days, weeks and
months: merging is exact (see ``state.py``), so this is the same as aggregating each period
directly, and it costs one state update per execution instead of four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple, TypeVar

from agent_otel.collector.analytics.periods import PERIODS, Period, starts_of, utc
from agent_otel.collector.analytics.state import (
    AgentKey,
    AgentState,
    InteractionState,
    MetricKey,
    MetricState,
    PairKey,
    UsageKey,
    UsageState,
)


class ExecutionFacts(NamedTuple):
    """The columns of ``agent_executions`` that rollups read (an ``ExecutionRow`` has them all)."""

    tenant_id: str
    execution_id: str
    agent_id: str
    user_id: str | None
    status: str
    duration: int
    credits_consumed: float
    started_at: datetime
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    unpriced_llm_calls: int
    llm_calls: int
    tool_calls: int
    error_code: str | None
    intent: str | None
    feature: str | None


class FeedbackFacts(NamedTuple):
    """The columns of ``agent_feedback`` that rollups read (a ``FeedbackRow`` has them all)."""

    tenant_id: str
    feedback_id: str
    timestamp: datetime
    agent_id: str
    user_id: str | None
    rating: int | None
    is_favorite: bool | None
    comment: str | None


HourKey = tuple[str, str, datetime]  # tenant, agent, hour start
EXECUTION_FACT_COLUMNS = ExecutionFacts._fields
FEEDBACK_FACT_COLUMNS = FeedbackFacts._fields


@dataclass(slots=True)
class Aggregate:
    """Rollup states keyed like the tables' primary keys."""

    metrics: dict[MetricKey, MetricState] = field(default_factory=dict)
    interactions: dict[PairKey, InteractionState] = field(default_factory=dict)
    feedback: dict[PairKey, list[Any]] = field(default_factory=dict)
    usage: dict[UsageKey, UsageState] = field(default_factory=dict)
    agents: dict[AgentKey, AgentState] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.metrics or self.interactions or self.feedback or self.usage or self.agents)


def aggregate(
    executions: Iterable[Any] = (),
    deltas: Iterable[Any] = (),
    feedback: Iterable[Any] = (),
    periods: tuple[Period, ...] = PERIODS,
    *,
    interactions: bool = True,
) -> Aggregate:
    """Aggregate executions (``ExecutionFacts``-like), totals changes (``ExecutionDelta``-like:
    tenant_id, agent_id, user_id, started_at, before, after) and feedback (``FeedbackFacts``-like).

    ``interactions=False`` leaves ``Aggregate.interactions`` empty: the hook lets the database
    sum each pair's executions (``pair_executions``) inside its upsert."""
    tally = Tally(interactions=interactions)
    tally.add(executions, deltas, feedback)
    return tally.result(periods)


@dataclass(slots=True)
class Tally:
    """``aggregate`` a batch at a time: ``add`` each batch, then ``result`` once. The states
    grow with the distinct rollup rows, not with the facts added, so a caller can let go of each
    batch before decoding the next (the rollup applier's rounds), and the hours are rolled up
    into days, weeks and months once, at the end, instead of once per batch and merged."""

    interactions: bool = True
    hours: dict[HourKey, MetricState] = field(default_factory=dict)
    out: Aggregate = field(default_factory=Aggregate)

    def add(self, executions: Iterable[Any] = (), deltas: Iterable[Any] = (), feedback: Iterable[Any] = ()) -> None:
        out, hours = self.out, self.hours
        pairs, usage, agents = out.interactions, out.usage, out.agents
        interactions = self.interactions

        # executions of each agent and hour, keyed by the hour's number (a datetime's replace()
        # costs more than the rest of an execution's aggregation); each group is then added in
        # one pass
        groups: dict[tuple[str, str, int], list[Any]] = {}
        for e in executions:
            started: datetime = e.started_at
            if started.tzinfo is not UTC:
                started = utc(started)
            tenant, agent = e.tenant_id, e.agent_id
            hour_number = started.toordinal() * 24 + started.hour
            group_key = (tenant, agent, hour_number)
            group = groups.get(group_key)
            if group is None:
                groups[group_key] = [e]
            else:
                group.append(e)
            user = e.user_id
            if user is None:
                continue
            if interactions:
                pair = (tenant, user, agent)
                interaction = pairs.get(pair)
                if interaction is None:
                    interaction = pairs[pair] = InteractionState()
                interaction.add_execution(e)
            day_key = (tenant, user, started.date())
            day = usage.get(day_key)
            if day is None:
                day = usage[day_key] = UsageState()
            day.add_execution(e)

        for (tenant, agent, hour_number), group in groups.items():
            hour = _hour_start(hour_number)
            key = (tenant, agent, hour)
            state = hours.get(key)
            if state is None:
                state = hours[key] = MetricState()
            state.add_executions(group)
            agent_state = agents.get((tenant, agent))
            if agent_state is None:
                agent_state = agents[(tenant, agent)] = AgentState()
            agent_state.executions += len(group)
            last = max(e.started_at for e in group)
            if agent_state.last_executed_at is None or last > agent_state.last_executed_at:
                agent_state.last_executed_at = last

        for d in deltas:
            started = utc(d.started_at)  # read back from the database: maybe in the session's zone
            hour = starts_of(started)[0]
            key = (d.tenant_id, d.agent_id, hour)
            state = hours.get(key)
            if state is None:
                state = hours[key] = MetricState()
            state.add_totals_change(d.before, d.after)
            if d.user_id is not None:
                day_key = (d.tenant_id, d.user_id, started.date())
                day = usage.get(day_key)
                if day is None:
                    day = usage[day_key] = UsageState()
                day.add_totals_change(d.before, d.after)

        for f in feedback:
            agent_key = (f.tenant_id, f.agent_id)
            if f.rating is not None and f.user_id is not None:
                day_key = (f.tenant_id, f.user_id, f.timestamp.date())
                day = usage.get(day_key)
                if day is None:
                    day = usage[day_key] = UsageState()
                day.add_rating(f.rating)
            if f.user_id is not None:
                out.feedback.setdefault((f.tenant_id, f.user_id, f.agent_id), []).append(f)
                agent_state = agents.get(agent_key)
                if agent_state is None:
                    agent_state = agents[agent_key] = AgentState()
                if agent_state.first_seen is None or f.timestamp < agent_state.first_seen:
                    agent_state.first_seen = f.timestamp

    def result(self, periods: tuple[Period, ...] = PERIODS) -> Aggregate:
        """The aggregate of everything added: its states, not copies (add nothing after this)."""
        self.out.metrics = roll_up(self.hours, periods)
        return self.out


K = TypeVar("K")
S = TypeVar("S")


def merge_states(into: dict[K, S], items: Iterable[tuple[K, S]], merge: Callable[[S, S], None]) -> None:
    """Fold ``items`` into ``into``: a new key takes its state as it is (not copied), a known key's
    state is merged into the one already there (``merge(mine, theirs)``)."""
    for key, state in items:
        mine = into.get(key)
        if mine is None:
            into[key] = state
        else:
            merge(mine, state)


# One execution of a (tenant, user, agent) pair, as the interactions upsert sums them: tenant,
# user, agent, succeeded, started_at, its UTC hour of day and weekday (Monday = 0); the last four
# are None for a pair that only received feedback.
PairExecution = tuple[str, str, str, bool | None, datetime | None, int | None, int | None]


def pair_executions(executions: Iterable[Any]) -> tuple[list[PairExecution], dict[PairKey, int]]:
    """The executions with a user as ``PairExecution`` rows, and the number of them per pair."""
    rows: list[PairExecution] = []
    counts: dict[PairKey, int] = {}
    for e in executions:
        user = e.user_id
        if user is None:
            continue
        started: datetime = e.started_at
        if started.tzinfo is not UTC:
            started = utc(started)
        tenant, agent = e.tenant_id, e.agent_id
        rows.append((tenant, user, agent, e.status == "success", started, started.hour, started.weekday()))
        pair = (tenant, user, agent)
        counts[pair] = counts.get(pair, 0) + 1
    return rows, counts


_HOUR_STARTS: dict[int, datetime] = {}


def _hour_start(number: int) -> datetime:
    """The start of hour ``number`` (``toordinal() * 24 + hour``), UTC; cached."""
    start = _HOUR_STARTS.get(number)
    if start is None:
        day, hour = divmod(number, 24)
        start = datetime.combine(date.fromordinal(day), time(hour), tzinfo=UTC)
        if len(_HOUR_STARTS) > 100_000:
            _HOUR_STARTS.clear()
        _HOUR_STARTS[number] = start
    return start


def roll_up(
    hours: dict[tuple[str, str, datetime], MetricState], periods: tuple[Period, ...]
) -> dict[MetricKey, MetricState]:
    """Hour states -> states of every wanted period (hour states are reused, not copied)."""
    metrics: dict[MetricKey, MetricState] = {}
    coarser = [(i, p) for i, p in enumerate(PERIODS) if p in periods and p != "hour"]
    for (tenant, agent, hour), state in hours.items():
        if "hour" in periods:
            metrics[(tenant, agent, "hour", hour)] = state
        starts = starts_of(hour)
        for i, period in coarser:
            key = (tenant, agent, period, starts[i])
            into = metrics.get(key)
            if into is None:
                metrics[key] = state.copy()
            else:
                into.merge(state)
    return metrics


@dataclass(slots=True)
class RollupRows:
    """Every rollup row, as the tables hold them (values in the ``state.*_VALUE_COLUMNS`` order)."""

    agent_metrics: dict[MetricKey, tuple[Any, ...]] = field(default_factory=dict)
    agent_metric_users: set[tuple[str, str, str, datetime, str]] = field(default_factory=set)
    user_agent_interactions: dict[PairKey, tuple[Any, ...]] = field(default_factory=dict)
    usage_daily: dict[tuple[str, str, date], tuple[Any, ...]] = field(default_factory=dict)
    agents: dict[AgentKey, tuple[Any, ...]] = field(default_factory=dict)


def finish(agg: Aggregate) -> RollupRows:
    """Rows of an aggregate of *everything* (unique users are the sizes of the user sets)."""
    rows = RollupRows()
    for key, state in agg.metrics.items():
        state.unique_users = len(state.users)
        rows.agent_metrics[key] = state.values(key[2], key[3])  # type: ignore[arg-type]
        tenant, agent, period, start = key
        rows.agent_metric_users.update((tenant, agent, period, start, user) for user in state.users)
    agents: dict[AgentKey, AgentState] = {}
    for agent_key, agent_state in agg.agents.items():
        agents[agent_key] = AgentState(agent_state.executions, agent_state.last_executed_at)
    for pair in agg.interactions.keys() | agg.feedback.keys():
        interaction = agg.interactions.get(pair) or InteractionState()
        for f in agg.feedback.get(pair, ()):
            interaction.add_feedback(f)
        rows.user_agent_interactions[pair] = interaction.values()
        tenant, _user, agent = pair
        totals = agents.setdefault((tenant, agent), AgentState())
        if interaction.total:
            totals.users += 1
        rating = interaction.current_rating
        if rating is not None:
            totals.rating_count += 1
            totals.rating_sum += rating
    for usage_key, usage_state in agg.usage.items():
        rows.usage_daily[usage_key] = usage_state.values()
    for agent_key, totals in agents.items():
        if not totals.empty:
            rows.agents[agent_key] = totals.values()
    return rows


def recompute(executions: Iterable[Any], feedback: Iterable[Any] = ()) -> RollupRows:
    """What every rollup must hold, from the raw rows alone (the reference for tests and rebuild)."""
    return finish(aggregate(executions, (), feedback))
