"""Pure aggregation: what each rollup row holds, and that batching never changes it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_otel.collector.analytics.aggregate import ExecutionFacts, FeedbackFacts, aggregate, recompute
from agent_otel.collector.analytics.state import METRIC_VALUE_COLUMNS, MetricState, UsageState
from agent_otel.collector.pipeline.assemble import Totals

MONDAY = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def facts(**overrides: Any) -> ExecutionFacts:
    values: dict[str, Any] = {
        "tenant_id": "default",
        "execution_id": "e1",
        "agent_id": "support-bot",
        "user_id": "u1",
        "status": "success",
        "duration": 1000,
        "credits_consumed": 2.0,
        "started_at": MONDAY,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.000027,
        "unpriced_llm_calls": 0,
        "llm_calls": 1,
        "tool_calls": 1,
        "error_code": None,
        "intent": "refund",
        "feature": "support",
    }
    values.update(overrides)
    return ExecutionFacts(**values)


def feedback(fid: str, at: datetime, **overrides: Any) -> FeedbackFacts:
    values: dict[str, Any] = {
        "tenant_id": "default",
        "feedback_id": fid,
        "timestamp": at,
        "agent_id": "support-bot",
        "user_id": "u1",
        "rating": None,
        "is_favorite": None,
        "comment": None,
    }
    values.update(overrides)
    return FeedbackFacts(**values)


def column(values: tuple[Any, ...], name: str) -> Any:
    return values[METRIC_VALUE_COLUMNS.index(name)]


def test_agent_metrics_of_every_period() -> None:
    executions = [
        facts(execution_id="e1", duration=100, user_id="u1"),
        facts(execution_id="e2", duration=300, user_id="u2", status="failed", error_code="RateLimitError"),
        facts(execution_id="e3", duration=200, user_id="u1", status="timeout", started_at=MONDAY + timedelta(hours=2)),
        facts(execution_id="e4", duration=50, user_id=None, model="llama-local", cost_usd=None, unpriced_llm_calls=1),
    ]
    rows = recompute(executions)
    periods = sorted({k[2] for k in rows.agent_metrics})
    assert periods == ["day", "hour", "month", "week"]
    day = rows.agent_metrics[("default", "support-bot", "day", datetime(2026, 3, 2, tzinfo=UTC))]
    assert column(day, "date") == date(2026, 3, 2) and column(day, "hour") is None
    assert column(day, "total_executions") == 4
    assert [column(day, c) for c in ("successful_executions", "failed_executions", "timeout_executions")] == [2, 1, 1]
    assert column(day, "min_duration") == 50 and column(day, "max_duration") == 300
    assert column(day, "avg_duration") == 162.5
    assert column(day, "unique_users") == 2
    assert column(day, "error_counts") == {"RateLimitError": 1, "timeout": 1}
    assert column(day, "model_counts") == {"gpt-4o-mini": 3, "llama-local": 1}
    assert column(day, "intent_counts") == {"refund": 4}
    assert column(day, "unpriced_llm_calls") == 1
    assert column(day, "cost_usd") == 81_000 / 1e9  # summed exactly in nano-dollars (3 x 27_000)
    assert column(day, "total_credits_consumed") == 8.0
    hour = rows.agent_metrics[("default", "support-bot", "hour", datetime(2026, 3, 2, 9, tzinfo=UTC))]
    assert column(hour, "hour") == 9 and column(hour, "total_executions") == 3
    week = rows.agent_metrics[("default", "support-bot", "week", datetime(2026, 3, 2, tzinfo=UTC))]
    month = rows.agent_metrics[("default", "support-bot", "month", datetime(2026, 3, 1, tzinfo=UTC))]
    assert week[2:] == day[2:] and month[2:] == day[2:]  # same executions: identical figures
    assert ("default", "support-bot", "hour", datetime(2026, 3, 2, 9, tzinfo=UTC), "u2") in rows.agent_metric_users


def test_interactions_usage_and_agents() -> None:
    executions = [
        facts(execution_id=f"e{i}", started_at=MONDAY + timedelta(days=d, hours=h), status=s)
        for i, (d, h, s) in enumerate([(0, 0, "success"), (0, 5, "success"), (2, 5, "failed"), (9, 5, "success")])
    ]
    later_rating = feedback("f2", MONDAY + timedelta(days=3), rating=2)
    rows = recompute(
        executions,
        [
            later_rating,  # arrives first, but is the latest: it wins
            feedback("f1", MONDAY + timedelta(days=1), rating=5, is_favorite=True, comment="great"),
            feedback("f3", MONDAY + timedelta(days=4), is_favorite=False),
        ],
    )
    (interaction,) = rows.user_agent_interactions.values()
    total, successful, first, last, favorite, rating, comment, per_day, hour, weekday, hours, weekdays, *ints = (
        interaction
    )
    assert ints == hours + weekdays  # the integer histogram columns hold the same counts
    assert (total, successful) == (4, 3)
    assert first == MONDAY and last == MONDAY + timedelta(days=9, hours=5)
    assert per_day == 4 / 10  # 4 executions over 10 calendar days
    assert (favorite, rating, comment) == (False, 2, "great")
    assert hour == 14  # 9:15 + 5 hours, three times
    assert weekday == 0 and sum(hours) == 4 and sum(weekdays) == 4
    assert rows.agents[("default", "support-bot")][1:] == (4, 1, 1, 2, 2.0)

    usage = rows.usage_daily[("default", "u1", date(2026, 3, 2))]
    assert usage[0:3] == (2, 2, 1)  # interactions, successful, unique agents
    assert usage[9] == {"support-bot": 2}
    assert usage[12]["gpt-4o-mini"]["interactions"] == 2
    rated_day = rows.usage_daily[("default", "u1", date(2026, 3, 5))]  # feedback f2's day: ratings only
    assert rated_day[0] == 0 and rated_day[13:] == (1, 2, 2.0)


def test_late_steps_change_totals_exactly() -> None:
    """Insert with the early totals, then add the delta: the same as the final execution alone."""
    early = facts(input_tokens=100, output_tokens=20, cost_usd=0.1, llm_calls=1, model="gpt-4o-mini")
    final = facts(input_tokens=300, output_tokens=70, cost_usd=0.3, llm_calls=2, model="gpt-4.1")

    class Delta:
        tenant_id, agent_id, user_id, started_at = "default", "support-bot", "u1", MONDAY
        before = Totals(100, 20, 0.1, 0, 1, 1, "gpt-4o-mini", "openai")
        after = Totals(300, 70, 0.3, 0, 2, 1, "gpt-4.1", "openai")

    stored = _apply_batches([aggregate([early]), aggregate((), [Delta()])])
    expected = aggregate([final])
    for key, state in expected.metrics.items():
        assert stored[key].values(key[2], key[3]) == state.values(key[2], key[3])  # type: ignore[arg-type]


def _apply_batches(batches: list[Any]) -> dict[Any, MetricState]:
    stored: dict[Any, MetricState] = {}
    for batch in batches:
        for key, delta in batch.metrics.items():
            stored.setdefault(key, MetricState()).merge(delta)
    return stored


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1, max_value=8))
@settings(max_examples=60, deadline=None)
def test_any_batching_gives_the_same_rows(seed: int, batches: int) -> None:
    """What the hook does (merge each transaction's aggregate into stored rows) equals recompute."""
    rng = random.Random(seed)
    executions = [
        facts(
            execution_id=f"e{i}",
            agent_id=rng.choice(("a", "b")),
            user_id=rng.choice(("u1", "u2", "u3", None)),
            status=rng.choice(("success", "success", "failed", "timeout", "error")),
            duration=int(rng.lognormvariate(6, 1.5)),
            started_at=MONDAY + timedelta(minutes=rng.randint(0, 60 * 24 * 40)),
            cost_usd=rng.choice((None, rng.random() / 100)),
            credits_consumed=rng.choice((0.0, 1.5, 3.0)),
            model=rng.choice(("m1", "m2", None)),
        )
        for i in range(rng.randint(1, 60))
    ]
    cuts = sorted(rng.sample(range(len(executions) + 1), min(batches, len(executions) + 1)))
    parts = [executions[a:b] for a, b in zip([0, *cuts], [*cuts, len(executions)], strict=False)]
    stored = _apply_batches([aggregate(part) for part in parts])
    usage: dict[Any, UsageState] = {}
    for part in parts:
        for key, state in aggregate(part).usage.items():
            usage.setdefault(key, UsageState()).merge(state)
    expected = recompute(executions)
    for key, values in expected.agent_metrics.items():
        state = stored[key]
        state.unique_users = len(state.users)
        assert state.values(key[2], key[3]) == values  # type: ignore[arg-type]
    assert {k: v.values() for k, v in usage.items()} == expected.usage_daily
