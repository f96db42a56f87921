"""Response models of the admin API: they are the OpenAPI document's schemas, and FastAPI
validates every response against them, so the document cannot drift from what is served.

Durations are milliseconds, money US dollars, times ISO 8601 UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Status = Literal["success"]


# -- seed 002 -------------------------------------------------------------------------------------


class SeedAgentMetrics(_Model):
    """Seed 002's per-agent entry, plus percentiles, cost and the status breakdown."""

    name: str | None = Field(description="agent display name")
    count: int
    successful: int
    failed: int = Field(description="executions that did not succeed (failed, timeout or error)")
    avg_time_ms: float | None
    success_rate: float | None
    total_tokens: int
    p50_time_ms: float | None
    p95_time_ms: float | None
    p99_time_ms: float | None
    cost_usd: float


class SystemMetrics(_Model):
    hours: int
    since: datetime = Field(description="start of the first hour bucket read")
    until: datetime = Field(description="end of the last hour bucket read")
    total_requests: int
    successful: int
    failed: int = Field(description="total_requests - successful")
    timeout: int
    error: int
    success_rate: float | None
    avg_execution_time_ms: float | None
    p50_execution_time_ms: float | None
    p95_execution_time_ms: float | None
    p99_execution_time_ms: float | None
    total_tokens_used: int
    input_tokens: int
    output_tokens: int
    total_cost_usd: float
    total_credits: float
    unpriced_llm_calls: int
    agent_metrics: dict[str, SeedAgentMetrics]


class MetricsResponse(_Model):
    status: Status = "success"
    metrics: SystemMetrics


class Execution(_Model):
    tenant_id: str
    execution_id: str
    agent_id: str
    agent_name: str | None
    user_id: str | None
    session_id: str | None
    status: str
    duration_ms: int
    started_at: datetime
    completed_at: datetime | None
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    credits_consumed: float
    llm_calls: int
    tool_calls: int
    unpriced_llm_calls: int
    error_code: str | None
    error_message: str | None
    http_status: int | None
    intent: str | None
    feature: str | None
    trace_id: str


class ErrorsResponse(_Model):
    status: Status = "success"
    count: int
    errors: list[Execution]


class Interaction(_Model):
    """Seed 000's UserAgentInteraction."""

    tenant_id: str
    agent_id: str
    agent_name: str | None
    total_executions: int
    successful_executions: int
    first_executed_at: datetime | None
    last_executed_at: datetime | None
    is_favorite: bool
    rating: int | None
    feedback: str | None
    avg_executions_per_day: float | None
    preferred_time_of_day: int | None = Field(description="hour 0-23, UTC")
    preferred_day_of_week: int | None = Field(description="0 = Monday")


class UserSummary(_Model):
    total_executions: int
    successful_executions: int
    success_rate: float | None
    agents_used: int
    first_executed_at: datetime | None
    last_executed_at: datetime | None


class UserActivityResponse(_Model):
    status: Status = "success"
    user_id: str
    count: int
    activity: list[Execution]
    agents: list[Interaction]
    summary: UserSummary


# -- agents ---------------------------------------------------------------------------------------


class AgentFigures(_Model):
    executions: int
    successful: int
    failed: int
    timeout: int
    error: int
    success_rate: float | None
    avg_duration_ms: float | None
    min_duration_ms: int | None
    max_duration_ms: int | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    p99_duration_ms: float | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    credits: float
    llm_calls: int
    tool_calls: int
    unpriced_llm_calls: int


class AgentSummary(AgentFigures):
    tenant_id: str
    agent_id: str
    name: str | None
    avg_rating: float | None = Field(description="mean of users' current ratings, all time")
    ratings: int
    total_users: int = Field(description="distinct users, all time")
    total_executions: int = Field(description="all time")
    last_executed_at: datetime | None


class AgentsResponse(_Model):
    status: Status = "success"
    since: datetime
    until: datetime
    sort: str
    order: str
    count: int
    agents: list[AgentSummary]


class AgentComparison(AgentSummary):
    unique_users: int = Field(description="distinct users in the range (exact)")
    models: dict[str, int] = Field(description="executions per model, top 10")
    model_costs: dict[str, float]
    errors: dict[str, int] = Field(description="failed executions per error type, top 10")
    intents: dict[str, int] = Field(description="executions per intent, top 10")


class CompareResponse(_Model):
    status: Status = "success"
    since: datetime
    until: datetime
    agents: list[AgentComparison]


class SeriesPoint(AgentFigures):
    period_start: datetime
    unique_users: int


class SeriesResponse(_Model):
    status: Status = "success"
    agent_id: str
    period: str
    since: datetime
    until: datetime
    points: list[SeriesPoint]


# -- executions and tools -------------------------------------------------------------------------


class ExecutionsResponse(_Model):
    status: Status = "success"
    count: int
    executions: list[Execution]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class ToolStats(_Model):
    tool: str
    calls: int
    successful: int
    failed: int
    success_rate: float
    avg_duration_ms: float
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    p99_duration_ms: float | None
    max_duration_ms: int
    agents: int = Field(description="distinct agents that called it")
    failures_by_status: dict[str, int]


class ToolsResponse(_Model):
    status: Status = "success"
    since: datetime
    until: datetime
    tools: list[ToolStats]


# -- usage and cost ---------------------------------------------------------------------------------


class UsageFigures(_Model):
    interactions: int
    successful: int
    duration_ms: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    credits: float
    avg_satisfaction: float | None
    ratings: int


class UsageDay(UsageFigures):
    date: date
    active_users: int


class UsageDailyResponse(_Model):
    status: Status = "success"
    since: date
    until: date
    days: list[UsageDay]


class UserUsage(UsageFigures):
    tenant_id: str
    user_id: str
    active_days: int
    agents_used: int


class UsageUsersResponse(_Model):
    status: Status = "success"
    since: date
    until: date
    sort: str
    count: int
    users: list[UserUsage]


class Breakdown(_Model):
    interactions: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class UserUsageDay(UsageFigures):
    date: date
    unique_agents_used: int
    agent_usage: dict[str, int]
    feature_usage: dict[str, int]
    vendor_usage: dict[str, Breakdown]
    model_usage: dict[str, Breakdown]


class UserUsageResponse(_Model):
    status: Status = "success"
    user_id: str
    since: date
    until: date
    totals: UsageFigures
    days: list[UserUsageDay]


class CostBucket(_Model):
    key: str = Field(description="the day (YYYY-MM-DD), agent id or model")
    executions: int
    input_tokens: int | None = Field(description="null when grouped by model (rollups keep cost per model only)")
    output_tokens: int | None
    cost_usd: float


class CostResponse(_Model):
    status: Status = "success"
    group_by: str
    since: datetime
    until: datetime
    total_cost_usd: float
    unpriced_llm_calls: int
    buckets: list[CostBucket]


class UnpricedModel(_Model):
    model: str | None
    provider: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    last_seen: datetime


class UnpricedResponse(_Model):
    status: Status = "success"
    since: datetime
    until: datetime
    models: list[UnpricedModel]
    hint: str


class Price(_Model):
    provider: str
    model: str
    effective_from: date
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None
    source: str


class PricesResponse(_Model):
    status: Status = "success"
    count: int
    prices: list[Price]
