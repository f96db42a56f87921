"""Rollup row states: what one row of each rollup table holds, and how two of them merge.

Every state merges exactly (integer counters, integer fixed-point money, bucket counts, sets),
so the order in which executions arrive, and how they are grouped into transactions, cannot
change a rollup: incremental updates, merges of finer periods and a recomputation from raw
rows all give the same row, value for value. Money is summed as integers (nano-dollars for
cost, micro-credits for credits) and divided only when a row is written; a stored row is read
back into integers the same way, which is exact for sums below about nine million dollars.

A state converts to and from the row's column values (``values()`` / ``from_values``) in the
column order of the ``*_VALUE_COLUMNS`` tuples below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from agent_otel.collector.analytics.periods import Period, row_date_hour
from agent_otel.collector.analytics.sketch import DenseCounts, DurationSketch, bucket_index

NANO: Final = 1_000_000_000
MICRO: Final = 1_000_000

MetricKey = tuple[str, str, str, datetime]  # tenant, agent, period, period start
PairKey = tuple[str, str, str]  # tenant, user, agent
UsageKey = tuple[str, str, date]  # tenant, user, day
AgentKey = tuple[str, str]  # tenant, agent

METRIC_KEY_COLUMNS: Final = ("tenant_id", "agent_id", "period", "period_start")
METRIC_VALUE_COLUMNS: Final = (
    "date",
    "hour",
    "total_executions",
    "successful_executions",
    "failed_executions",
    "timeout_executions",
    "error_executions",
    "sum_duration",
    "avg_duration",
    "min_duration",
    "max_duration",
    "p50_duration",
    "p95_duration",
    "p99_duration",
    "duration_sketch",
    "unique_users",
    "total_credits_consumed",
    "avg_credits_per_execution",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "llm_calls",
    "tool_calls",
    "unpriced_llm_calls",
    "error_counts",
    "model_counts",
    "model_costs",
    "intent_counts",
)
HOUR_COLUMNS: Final = tuple(f"hour_{h:02d}" for h in range(24))
WEEKDAY_COLUMNS: Final = tuple(f"weekday_{d}" for d in range(7))
INTERACTION_KEY_COLUMNS: Final = ("tenant_id", "user_id", "agent_id")
INTERACTION_VALUE_COLUMNS: Final = (
    "total_executions",
    "successful_executions",
    "first_executed_at",
    "last_executed_at",
    "is_favorite",
    "rating",
    "feedback",
    "avg_executions_per_day",
    "preferred_time_of_day",
    "preferred_day_of_week",
    "hour_counts",
    "weekday_counts",
    *HOUR_COLUMNS,
    *WEEKDAY_COLUMNS,
)
USAGE_KEY_COLUMNS: Final = ("tenant_id", "user_id", "date")
USAGE_VALUE_COLUMNS: Final = (
    "total_interactions",
    "successful_interactions",
    "unique_agents_used",
    "total_duration_ms",
    "total_duration_minutes",
    "total_input_tokens",
    "total_output_tokens",
    "total_cost",
    "total_credits",
    "agent_usage",
    "feature_usage",
    "vendor_usage",
    "model_usage",
    "ratings_count",
    "ratings_sum",
    "avg_satisfaction",
)
AGENT_VALUE_COLUMNS: Final = (
    "last_executed_at",
    "total_executions",
    "total_users",
    "rating_count",
    "rating_sum",
    "avg_rating",
)
JSON_COLUMNS: Final = frozenset(
    {
        "duration_sketch",
        "error_counts",
        "model_counts",
        "model_costs",
        "intent_counts",
        "hour_counts",
        "weekday_counts",
        "agent_usage",
        "feature_usage",
        "vendor_usage",
        "model_usage",
    }
)
STATUS_COLUMNS: Final = {"success": 0, "failed": 1, "timeout": 2, "error": 3}


def nanos(usd: float | None) -> int:
    return 0 if usd is None else round(usd * NANO)


def micros(credits: float | None) -> int:
    return 0 if credits is None else round(credits * MICRO)


def _bump(counts: dict[str, int], key: str | None, by: int) -> None:
    if key is None or by == 0:
        return
    value = counts.get(key, 0) + by
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def _add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        _bump(into, key, value)


def _int_map(data: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (data or {}).items() if v}


def _usd_map(data: Any) -> dict[str, int]:
    return {str(k): nanos(float(v)) for k, v in (data or {}).items() if v}


def _usd_json(counts: Mapping[str, int]) -> dict[str, float]:
    return {k: v / NANO for k, v in sorted(counts.items())}


# -- agent_metrics ------------------------------------------------------------------------------


@dataclass(slots=True)
class MetricState:
    """One ``agent_metrics`` row. ``users`` (not stored) are the user ids seen by this state."""

    statuses: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    total: int = 0
    sum_duration: int = 0
    min_duration: int | None = None
    max_duration: int | None = None
    sketch: DurationSketch = field(default_factory=DurationSketch)
    unique_users: int = 0
    credits: int = 0  # micro-credits
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0  # nano-dollars
    llm_calls: int = 0
    tool_calls: int = 0
    unpriced: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    model_costs: dict[str, int] = field(default_factory=dict)  # nano-dollars
    intents: dict[str, int] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)

    def add_execution(self, e: Any) -> None:
        """``e`` has the attributes of ``ExecutionFacts`` (an ``ExecutionRow`` does)."""
        self.total += 1
        status = STATUS_COLUMNS.get(e.status)
        if status is not None:
            self.statuses[status] += 1
        if e.status != "success":
            _bump(self.errors, e.error_code or e.status, 1)
        duration = e.duration
        self.sum_duration += duration
        if self.min_duration is None or duration < self.min_duration:
            self.min_duration = duration
        if self.max_duration is None or duration > self.max_duration:
            self.max_duration = duration
        self.sketch.add(duration)
        if e.credits_consumed:
            self.credits += micros(e.credits_consumed)
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        cost = nanos(e.cost_usd)
        self.cost += cost
        self.llm_calls += e.llm_calls
        self.tool_calls += e.tool_calls
        self.unpriced += e.unpriced_llm_calls
        if e.model is not None:
            _bump(self.models, e.model, 1)
            _bump(self.model_costs, e.model, cost)
        if e.intent is not None:
            _bump(self.intents, e.intent, 1)
        if e.user_id is not None:
            self.users.add(e.user_id)

    def add_executions(self, executions: Iterable[Any]) -> None:
        """``add_execution`` of each, in one pass over local variables (the hook's hot path: a
        method call and a dozen attribute writes per execution cost more than the arithmetic)."""
        statuses, errors, models, model_costs, intents = (
            self.statuses,
            self.errors,
            self.models,
            self.model_costs,
            self.intents,
        )
        buckets, users = self.sketch.buckets, self.users
        total = sum_duration = zero = credits = tokens_in = tokens_out = cost = llm = tool = unpriced = 0
        low, high = self.min_duration, self.max_duration
        for e in executions:
            total += 1
            status = e.status
            if status == "success":
                statuses[0] += 1
            else:
                position = STATUS_COLUMNS.get(status)
                if position is not None:
                    statuses[position] += 1
                _bump(errors, e.error_code or status, 1)
            duration = e.duration
            sum_duration += duration
            if low is None or duration < low:
                low = duration
            if high is None or duration > high:
                high = duration
            if duration <= 0:
                zero += 1
            else:
                index = bucket_index(duration)
                buckets[index] = buckets.get(index, 0) + 1
            spent = e.credits_consumed
            if spent:
                credits += round(spent * MICRO)
            tokens_in += e.input_tokens
            tokens_out += e.output_tokens
            usd = e.cost_usd
            nano = 0 if usd is None else round(usd * NANO)
            cost += nano
            llm += e.llm_calls
            tool += e.tool_calls
            unpriced += e.unpriced_llm_calls
            model = e.model
            if model is not None:
                _bump(models, model, 1)
                _bump(model_costs, model, nano)
            intent = e.intent
            if intent is not None:
                _bump(intents, intent, 1)
            user = e.user_id
            if user is not None:
                users.add(user)
        self.total += total
        self.sum_duration += sum_duration
        self.min_duration, self.max_duration = low, high
        self.sketch.zero += zero
        self.credits += credits
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        self.cost += cost
        self.llm_calls += llm
        self.tool_calls += tool
        self.unpriced += unpriced

    def add_totals_change(self, before: Any, after: Any) -> None:
        """An execution's totals changed (late steps): ``before``/``after`` are ``Totals``."""
        self.input_tokens += after.input_tokens - before.input_tokens
        self.output_tokens += after.output_tokens - before.output_tokens
        old, new = nanos(before.cost_usd), nanos(after.cost_usd)
        self.cost += new - old
        self.llm_calls += after.llm_calls - before.llm_calls
        self.tool_calls += after.tool_calls - before.tool_calls
        self.unpriced += after.unpriced_llm_calls - before.unpriced_llm_calls
        _bump(self.models, before.model, -1)
        _bump(self.models, after.model, 1)
        _bump(self.model_costs, before.model, -old)
        _bump(self.model_costs, after.model, new)

    def merge(self, other: MetricState) -> None:
        for i in range(4):
            self.statuses[i] += other.statuses[i]
        self.total += other.total
        self.sum_duration += other.sum_duration
        if other.min_duration is not None and (self.min_duration is None or other.min_duration < self.min_duration):
            self.min_duration = other.min_duration
        if other.max_duration is not None and (self.max_duration is None or other.max_duration > self.max_duration):
            self.max_duration = other.max_duration
        self.sketch.merge(other.sketch)
        self.unique_users += other.unique_users
        self.credits += other.credits
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.llm_calls += other.llm_calls
        self.tool_calls += other.tool_calls
        self.unpriced += other.unpriced
        _add_counts(self.errors, other.errors)
        _add_counts(self.models, other.models)
        _add_counts(self.model_costs, other.model_costs)
        _add_counts(self.intents, other.intents)
        self.users |= other.users

    def copy(self) -> MetricState:
        return MetricState(
            list(self.statuses),
            self.total,
            self.sum_duration,
            self.min_duration,
            self.max_duration,
            self.sketch.copy(),
            self.unique_users,
            self.credits,
            self.input_tokens,
            self.output_tokens,
            self.cost,
            self.llm_calls,
            self.tool_calls,
            self.unpriced,
            dict(self.errors),
            dict(self.models),
            dict(self.model_costs),
            dict(self.intents),
            set(self.users),
        )

    def values(self, period: Period, start: datetime) -> tuple[Any, ...]:
        day, hour = row_date_hour(period, start)
        total = self.total
        p50, p95, p99 = self.sketch.quantiles((0.5, 0.95, 0.99), self.min_duration, self.max_duration)
        credits = self.credits / MICRO
        return (
            day,
            hour,
            total,
            *self.statuses,
            self.sum_duration,
            self.sum_duration / total if total else None,
            self.min_duration,
            self.max_duration,
            p50,
            p95,
            p99,
            self.sketch.to_json(),
            self.unique_users,
            credits,
            credits / total if total else None,
            self.input_tokens,
            self.output_tokens,
            self.cost / NANO,
            self.llm_calls,
            self.tool_calls,
            self.unpriced,
            dict(sorted(self.errors.items())),
            dict(sorted(self.models.items())),
            _usd_json(self.model_costs),
            dict(sorted(self.intents.items())),
        )

    @classmethod
    def from_values(cls, v: Sequence[Any]) -> MetricState:
        """A stored row (columns in ``METRIC_VALUE_COLUMNS`` order, JSON already parsed)."""
        return cls(
            statuses=[int(v[3] or 0), int(v[4] or 0), int(v[5] or 0), int(v[6] or 0)],
            total=int(v[2] or 0),
            sum_duration=int(v[7] or 0),
            min_duration=v[9],
            max_duration=v[10],
            sketch=DurationSketch.from_json(v[14]),
            unique_users=int(v[15] or 0),
            credits=micros(v[16]),
            input_tokens=int(v[18] or 0),
            output_tokens=int(v[19] or 0),
            cost=nanos(v[20]),
            llm_calls=int(v[21] or 0),
            tool_calls=int(v[22] or 0),
            unpriced=int(v[23] or 0),
            errors=_int_map(v[24]),
            models=_int_map(v[25]),
            model_costs=_usd_map(v[26]),
            intents=_int_map(v[27]),
        )


# -- user_agent_interactions -----------------------------------------------------------------


# Latest feedback per field: (timestamp, feedback id, value); the greatest tuple wins, so the
# outcome does not depend on arrival order.
Latest = tuple[datetime, str, Any]


def later(current: Latest | None, candidate: Latest | None) -> Latest | None:
    if candidate is None:
        return current
    if current is None or candidate[:2] > current[:2]:
        return candidate
    return current


@dataclass(slots=True)
class InteractionState:
    """One ``user_agent_interactions`` row (seed 000's UserAgentInteraction)."""

    total: int = 0
    successful: int = 0
    first: datetime | None = None
    last: datetime | None = None
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    weekdays: list[int] = field(default_factory=lambda: [0] * 7)
    rating: Latest | None = None
    favorite: Latest | None = None
    comment: Latest | None = None
    # stored rows carry values only (the feedback table is the source of "latest")
    stored_rating: int | None = None
    stored_favorite: bool = False
    stored_comment: str | None = None

    def add_execution(self, e: Any) -> None:
        self.total += 1
        if e.status == "success":
            self.successful += 1
        at: datetime = e.started_at
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at
        self.hours[at.hour] += 1
        self.weekdays[at.weekday()] += 1

    def add_feedback(self, f: Any) -> None:
        at, fid = f.timestamp, f.feedback_id
        if f.rating is not None:
            self.rating = later(self.rating, (at, fid, f.rating))
        if f.is_favorite is not None:
            self.favorite = later(self.favorite, (at, fid, f.is_favorite))
        if f.comment is not None:
            self.comment = later(self.comment, (at, fid, f.comment))

    def merge_executions(self, other: InteractionState) -> None:
        self.total += other.total
        self.successful += other.successful
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last
        self.hours = [a + b for a, b in zip(self.hours, other.hours, strict=True)]
        self.weekdays = [a + b for a, b in zip(self.weekdays, other.weekdays, strict=True)]

    def feedback_values(self) -> tuple[bool, int | None, str | None]:
        """(is_favorite, rating, feedback): the latest of each, else what the row held."""
        favorite = bool(self.favorite[2]) if self.favorite is not None else self.stored_favorite
        comment = self.comment[2] if self.comment is not None else self.stored_comment
        return favorite, self.current_rating, comment

    @property
    def current_rating(self) -> int | None:
        return int(self.rating[2]) if self.rating is not None else self.stored_rating

    def values(self) -> tuple[Any, ...]:
        per_day: float | None = None
        if self.total and self.first is not None and self.last is not None:
            per_day = self.total / ((self.last.date() - self.first.date()).days + 1)
        return (
            self.total,
            self.successful,
            self.first,
            self.last,
            *self.feedback_values(),
            per_day,
            _argmax(self.hours) if self.total else None,
            _argmax(self.weekdays) if self.total else None,
            list(self.hours),
            list(self.weekdays),
            *self.hours,
            *self.weekdays,
        )

    @classmethod
    def from_values(cls, v: Sequence[Any]) -> InteractionState:
        """From stored columns: the integer histogram columns are the source of the counts."""
        hours = [int(x or 0) for x in v[12:36]] if len(v) >= 43 else [int(x) for x in (v[10] or [0] * 24)]
        weekdays = [int(x or 0) for x in v[36:43]] if len(v) >= 43 else [int(x) for x in (v[11] or [0] * 7)]
        return cls(
            total=int(v[0] or 0),
            successful=int(v[1] or 0),
            first=v[2],
            last=v[3],
            hours=hours if len(hours) == 24 else [0] * 24,
            weekdays=weekdays if len(weekdays) == 7 else [0] * 7,
            stored_rating=v[5],
            stored_favorite=bool(v[4]),
            stored_comment=v[6],
        )


def _argmax(counts: list[int]) -> int:
    """The first index of the largest count (ties: the earliest hour or day)."""
    return counts.index(max(counts))


# -- usage_daily ---------------------------------------------------------------------------------

_BREAKDOWN: Final = ("interactions", "input_tokens", "output_tokens", "cost_usd")


@dataclass(slots=True)
class UsageState:
    """One ``usage_daily`` row (seed 004's ai_usage_stats)."""

    interactions: int = 0
    successful: int = 0
    duration_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0  # nano-dollars
    credits: int = 0  # micro-credits
    agents: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)
    # name -> [interactions, input tokens, output tokens, nano-dollars]
    vendors: dict[str, list[int]] = field(default_factory=dict)
    models: dict[str, list[int]] = field(default_factory=dict)
    ratings_count: int = 0
    ratings_sum: int = 0

    def add_execution(self, e: Any) -> None:
        self.interactions += 1
        if e.status == "success":
            self.successful += 1
        self.duration_ms += e.duration
        tokens_in, tokens_out = e.input_tokens, e.output_tokens
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        usd = e.cost_usd
        cost = 0 if usd is None else round(usd * NANO)
        self.cost += cost
        spent = e.credits_consumed
        if spent:
            self.credits += round(spent * MICRO)
        _bump(self.agents, e.agent_id, 1)
        feature = e.feature
        if feature is not None:
            _bump(self.features, feature, 1)
        for into, name in ((self.vendors, e.provider), (self.models, e.model)):  # _add_usage, inlined
            if name is None:
                continue
            entry = into.get(name)
            if entry is None:
                into[name] = [1, tokens_in, tokens_out, cost]
                continue
            entry[0] += 1
            entry[1] += tokens_in
            entry[2] += tokens_out
            entry[3] += cost
            if not (entry[0] or entry[1] or entry[2] or entry[3]):
                del into[name]

    def add_totals_change(self, before: Any, after: Any) -> None:
        self.input_tokens += after.input_tokens - before.input_tokens
        self.output_tokens += after.output_tokens - before.output_tokens
        old, new = nanos(before.cost_usd), nanos(after.cost_usd)
        self.cost += new - old
        gone = (-1, -before.input_tokens, -before.output_tokens, -old)
        came = (1, after.input_tokens, after.output_tokens, new)
        _add_usage(self.vendors, before.provider, gone)
        _add_usage(self.vendors, after.provider, came)
        _add_usage(self.models, before.model, gone)
        _add_usage(self.models, after.model, came)

    @property
    def ratings(self) -> tuple[int, int]:
        return self.ratings_count, self.ratings_sum

    def add_rating(self, rating: int) -> None:
        self.ratings_count += 1
        self.ratings_sum += rating

    def merge(self, other: UsageState) -> None:
        self.interactions += other.interactions
        self.successful += other.successful
        self.duration_ms += other.duration_ms
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.credits += other.credits
        _add_counts(self.agents, other.agents)
        _add_counts(self.features, other.features)
        for name, usage in other.vendors.items():
            _add_usage(self.vendors, name, usage)
        for name, usage in other.models.items():
            _add_usage(self.models, name, usage)
        self.ratings_count += other.ratings_count
        self.ratings_sum += other.ratings_sum

    def values(self) -> tuple[Any, ...]:
        return (
            self.interactions,
            self.successful,
            len(self.agents),
            self.duration_ms,
            self.duration_ms / 60_000,
            self.input_tokens,
            self.output_tokens,
            self.cost / NANO,
            self.credits / MICRO,
            dict(sorted(self.agents.items())),
            dict(sorted(self.features.items())),
            _usage_json(self.vendors),
            _usage_json(self.models),
            self.ratings_count,
            self.ratings_sum,
            self.ratings_sum / self.ratings_count if self.ratings_count else None,
        )

    @classmethod
    def from_values(cls, v: Sequence[Any]) -> UsageState:
        return cls(
            interactions=int(v[0] or 0),
            successful=int(v[1] or 0),
            duration_ms=int(v[3] or 0),
            input_tokens=int(v[5] or 0),
            output_tokens=int(v[6] or 0),
            cost=nanos(v[7]),
            credits=micros(v[8]),
            agents=_int_map(v[9]),
            features=_int_map(v[10]),
            vendors=_usage_from_json(v[11]),
            models=_usage_from_json(v[12]),
            ratings_count=int(v[13] or 0),
            ratings_sum=int(v[14] or 0),
        )


def _add_usage(into: dict[str, list[int]], name: str | None, usage: Sequence[int]) -> None:
    if name is None:
        return
    current = into.get(name)
    if current is None:
        current = into[name] = [0, 0, 0, 0]
    for i in range(4):
        current[i] += usage[i]
    if not any(current):
        del into[name]


def _usage_json(usage: Mapping[str, list[int]]) -> dict[str, dict[str, float | int]]:
    return {
        name: {"interactions": n, "input_tokens": tin, "output_tokens": tout, "cost_usd": cost / NANO}
        for name, (n, tin, tout, cost) in sorted(usage.items())
    }


def _usage_from_json(data: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, entry in (data or {}).items():
        if isinstance(entry, Mapping):
            out[str(name)] = [
                int(entry.get("interactions", 0)),
                int(entry.get("input_tokens", 0)),
                int(entry.get("output_tokens", 0)),
                nanos(float(entry.get("cost_usd", 0.0))),
            ]
    return out


# -- agents (computed fields) ---------------------------------------------------------------------


@dataclass(slots=True)
class AgentState:
    """The computed fields of an ``agents`` row; in the hook, the change to apply."""

    executions: int = 0
    last_executed_at: datetime | None = None
    users: int = 0
    rating_count: int = 0
    rating_sum: int = 0
    first_seen: datetime | None = None  # for an agent known only from feedback

    def add_execution(self, e: Any) -> None:
        self.executions += 1
        if self.last_executed_at is None or e.started_at > self.last_executed_at:
            self.last_executed_at = e.started_at

    @property
    def empty(self) -> bool:
        return not (self.executions or self.users or self.rating_count or self.rating_sum)

    def values(self) -> tuple[Any, ...]:
        return (
            self.last_executed_at,
            self.executions,
            self.users,
            self.rating_count,
            self.rating_sum,
            self.rating_sum / self.rating_count if self.rating_count else None,
        )


# -- fast merges of a stored row with a transaction's aggregate (the hook's hot path) -----------
#
# ``MetricState.from_values(...).merge(delta).values()`` converts every bucket and every map
# entry of the stored row; these functions touch only what the delta changes (a transaction
# adds a few executions to a row that may hold hundreds of buckets and map entries). They give
# the same values (the tests compare the rows with a recomputation).


def _bump_json_counts(stored: Any, delta: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = dict(stored or {})
    for key, by in delta.items():
        _bump(out, key, by)
    return out


def _bump_json_costs(stored: Any, delta: Mapping[str, int]) -> dict[str, float]:
    nanos_by_key = {k: nanos(v) for k, v in (stored or {}).items()}
    for key, by in delta.items():
        _bump(nanos_by_key, key, by)
    return {k: v / NANO for k, v in nanos_by_key.items()}


def merge_metric_row(
    v: Sequence[Any], d: MetricState, new_users: int, period: Period, start: datetime
) -> tuple[Any, ...]:
    """``v``: a stored ``agent_metrics`` row (value columns, JSON parsed, maybe all None: new)."""
    total = int(v[2] or 0) + d.total
    statuses = [int(v[3 + i] or 0) + d.statuses[i] for i in range(4)]
    sum_duration = int(v[7] or 0) + d.sum_duration
    low, high = v[9], v[10]
    if d.min_duration is not None and (low is None or d.min_duration < low):
        low = d.min_duration
    if d.max_duration is not None and (high is None or d.max_duration > high):
        high = d.max_duration
    sketch = DenseCounts()
    sketch.add_json(v[14])
    sketch.add_buckets(d.sketch.zero, d.sketch.buckets)
    p50, p95, p99 = sketch.quantiles((0.5, 0.95, 0.99), low, high)
    credits = (micros(v[16]) + d.credits) / MICRO
    day, hour = row_date_hour(period, start)
    return (
        day,
        hour,
        total,
        *statuses,
        sum_duration,
        sum_duration / total if total else None,
        low,
        high,
        p50,
        p95,
        p99,
        sketch.to_json(),
        int(v[15] or 0) + new_users,
        credits,
        credits / total if total else None,
        int(v[18] or 0) + d.input_tokens,
        int(v[19] or 0) + d.output_tokens,
        (nanos(v[20]) + d.cost) / NANO,
        int(v[21] or 0) + d.llm_calls,
        int(v[22] or 0) + d.tool_calls,
        int(v[23] or 0) + d.unpriced,
        _bump_json_counts(v[24], d.errors),
        _bump_json_counts(v[25], d.models),
        _bump_json_costs(v[26], d.model_costs),
        _bump_json_counts(v[27], d.intents),
    )


def _bump_json_usage(stored: Any, delta: Mapping[str, list[int]]) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = dict(stored or {})
    for name, (n, tin, tout, cost) in delta.items():
        entry = out.get(name)
        if entry is not None:
            n += int(entry.get("interactions", 0))
            tin += int(entry.get("input_tokens", 0))
            tout += int(entry.get("output_tokens", 0))
            cost += nanos(float(entry.get("cost_usd", 0.0)))
        if n or tin or tout or cost:
            out[name] = {"interactions": n, "input_tokens": tin, "output_tokens": tout, "cost_usd": cost / NANO}
        else:
            out.pop(name, None)
    return out


def merge_usage_row(v: Sequence[Any], d: UsageState) -> tuple[Any, ...]:
    """``v``: a stored ``usage_daily`` row (value columns, JSON parsed, maybe all None: new)."""
    duration = int(v[3] or 0) + d.duration_ms
    agents = _bump_json_counts(v[9], d.agents)
    ratings_count = int(v[13] or 0) + d.ratings_count
    ratings_sum = int(v[14] or 0) + d.ratings_sum
    return (
        int(v[0] or 0) + d.interactions,
        int(v[1] or 0) + d.successful,
        len(agents),
        duration,
        duration / 60_000,
        int(v[5] or 0) + d.input_tokens,
        int(v[6] or 0) + d.output_tokens,
        (nanos(v[7]) + d.cost) / NANO,
        (micros(v[8]) + d.credits) / MICRO,
        agents,
        _bump_json_counts(v[10], d.features),
        _bump_json_usage(v[11], d.vendors),
        _bump_json_usage(v[12], d.models),
        ratings_count,
        ratings_sum,
        ratings_sum / ratings_count if ratings_count else None,
    )
