"""One settings object, loaded and validated once at start-up, then passed in.

Precedence (highest first): command-line flags, environment variables, the config file
(YAML or TOML, named by ``--config`` or ``AGENT_OTEL_CONFIG``), then the defaults below.
Nothing else in the package reads the environment for collector settings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_DB_URL = "sqlite:///./agent-otel.db"
AUTO_WORKERS_MAX = 4  # ingest processes when `workers` is unset (see auto_workers)


class SettingsError(ValueError):
    """The configuration is invalid; the message says which setting and why."""


class ListenAddress(BaseModel):
    """A ``HOST:PORT`` listen address; port 0 means "pick a free port"."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=0, le=65535)

    @classmethod
    def parse(cls, value: str) -> ListenAddress:
        text = value.strip()
        if text.startswith("["):  # [::1]:4317
            host, _, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise SettingsError(f"listen address {value!r} must be HOST:PORT")
        if not host or not (port.isascii() and port.isdigit()):  # "²" is a digit int() refuses
            raise SettingsError(f"listen address {value!r} must be HOST:PORT")
        return cls(host=host, port=int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSettings(_Section):
    """Limits on what one OTLP request may carry and how much the collector holds in memory."""

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body as received")
    max_decompressed_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest body after gunzip (guards against gzip bombs)"
    )
    max_queue_spans: int = Field(
        200_000, ge=100, description="spans accepted but not yet committed; beyond it requests get 429"
    )
    max_batch_spans: int = Field(20_000, ge=1, description="most spans the writer commits in one transaction")
    writer_threads: int = Field(
        2, ge=1, le=16, description="groups committed concurrently on PostgreSQL (SQLite always writes with one)"
    )
    rollups: Literal["deferred", "inline"] = Field(
        "deferred",
        description=(
            "deferred: a write commits its rollup delta with the raw rows and one applier folds deltas into the"
            " rollup tables in batches (they lag by about a second; see docs/performance.md); inline: rollups are"
            " updated inside every write transaction, before the acknowledgement"
        ),
    )
    rollup_interval_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="deferred rollups: how often an idle applier looks for new deltas",
    )
    rollup_pace_seconds: float | None = Field(
        None,
        ge=0,
        le=60,
        description=(
            "deferred rollups under load: a round that applied deltas is followed by the next this long after it"
            " started (a full round at once; sooner when the writers go quiet: no delta for 0.2 s or five of their"
            " usual intervals between deltas, whichever is longer), so each round folds about this long of"
            " deltas and touches each rollup row once for all of them (less database and collector CPU), while"
            " rollups lag that much more; unset: 2 s when the applier has a process of its own (the default), 0 with"
            " single_process, where long rounds compete with ingest for the interpreter and raise ack latency"
        ),
    )
    max_future_skew_seconds: float = Field(
        86_400.0, ge=0, description="spans starting further in the future are rejected"
    )
    max_past_age_days: float = Field(
        3650.0, gt=0, description="spans older than this are rejected (clock errors, not history)"
    )
    max_events_per_span: int = Field(32, ge=0, description="span events stored as log rows per span")
    retry_after_seconds: int = Field(2, ge=1, description="Retry-After sent with 429 and 503")
    store_untraced_logs: bool = Field(False, description="store OTLP log records that carry no trace id")


class SanitizerSettings(_Section):
    """Rules of the sanitizer. Content keys are never stored; free text is scrubbed."""

    extra_content_keys: list[str] = Field(
        default_factory=list, description="more attribute keys (exact) whose values are content"
    )
    extra_content_key_prefixes: list[str] = Field(
        default_factory=list, description="more attribute key prefixes whose values are content"
    )
    disabled_rules: list[str] = Field(
        default_factory=list, description="names of scrubbing rules to switch off (see README)"
    )
    extra_patterns: dict[str, str] = Field(
        default_factory=dict, description="rule name -> regular expression, redacted like the built-ins"
    )
    ipv4_keep_octets: int = Field(3, ge=0, le=4, description="IPv4 octets kept (192.168.1.xxx)")
    ipv6_keep_bits: int = Field(48, ge=0, le=128, description="IPv6 prefix bits kept (2001:db8:85a3::/48)")
    scrub_file_paths: bool = Field(True, description="replace absolute paths in free text by [PATH]/basename")
    max_text_length: int = Field(2048, ge=16, description="stored free text is cut to this many characters")
    user_id_hmac_key: SecretStr | None = Field(
        None, description="when set, user ids are stored as a keyed HMAC (pseudonymised)"
    )


class MetricsSettings(_Section):
    """Prometheus label cardinality caps (distinct values beyond a cap fold into ``__other__``) and
    the budgets the budget alerts compare against (exported as ``agent_otel_budget_*`` gauges)."""

    max_agents: int = Field(200, ge=1, description="distinct agents label values")
    max_models: int = Field(100, ge=1, description="distinct models label values")
    max_tools: int = Field(300, ge=1, description="distinct tools label values")
    max_error_types: int = Field(100, ge=1, description="distinct error types label values")
    max_providers: int = Field(50, ge=1, description="distinct providers label values")
    max_otlp_streams: int = Field(
        10_000, ge=1, description="OTLP metric streams (resource x attributes) tracked for cumulative-to-delta"
    )
    daily_cost_budget_usd: float = Field(
        0.0, ge=0, description="LLM spend per day, all agents, that the cost budget alert fires above (0: none)"
    )
    daily_token_budget: int = Field(
        0, ge=0, description="LLM tokens per day, all agents, that the token budget alert fires above (0: none)"
    )


class RetentionSettings(_Section):
    """How long rows are kept, in days, per table (0 keeps forever)."""

    executions_days: int = Field(30, ge=0, description="days kept (0: forever)")
    steps_days: int = Field(30, ge=0, description="days kept (0: forever)")
    logs_days: int = Field(14, ge=0, description="days kept (0: forever)")
    hourly_rollups_days: int = Field(90, ge=0, description="days kept (0: forever)")
    daily_rollups_days: int = Field(730, ge=0, description="days kept (0: forever)")
    weekly_rollups_days: int = Field(0, ge=0, description="days kept (0: forever)")
    monthly_rollups_days: int = Field(0, ge=0, description="days kept (0: forever)")
    usage_daily_days: int = Field(730, ge=0, description="days kept (0: forever)")
    interval_minutes: float = Field(60.0, gt=0, description="how often serve applies retention")
    batch_rows: int = Field(5000, ge=1, description="rows deleted per statement on SQLite")


class StorageSettings(_Section):
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "FULL", description="SQLite PRAGMA synchronous; FULL makes every acknowledged commit survive power loss"
    )
    sqlite_writer_cache_mb: int = Field(
        24,
        ge=1,
        le=4096,
        description="SQLite page cache of the ingest writer's connection, in MB (other connections keep SQLite's 2 MB)",
    )
    pool_size: int = Field(5, ge=1, description="PostgreSQL connections of the read (API) pool")
    partition_days_ahead: int = Field(3, ge=1, description="PostgreSQL daily partitions created ahead")


class SecuritySettings(_Section):
    """Ingest keys and per-tenant admin tokens (created with ``agent-otel keys|tokens``)."""

    key_header: str = Field(
        "x-agent-otel-key", description="OTLP request header carrying an ingest key (Authorization: Bearer works too)"
    )
    key_refresh_seconds: float = Field(
        5.0, gt=0, description="how often the in-memory table of keys and tokens is reloaded (new and revoked keys)"
    )


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str = Field(
        DEFAULT_DB_URL, description="sqlite:///PATH (embedded default) or postgresql://USER@HOST:PORT/DB (psycopg 3)"
    )
    otlp_grpc: ListenAddress = Field(
        ListenAddress(host="127.0.0.1", port=4317), description="OTLP/gRPC listen address; port 0 picks a free port"
    )
    otlp_http: ListenAddress = Field(
        ListenAddress(host="127.0.0.1", port=4318), description="OTLP/HTTP listen address; port 0 picks a free port"
    )
    http: ListenAddress = Field(
        ListenAddress(host="127.0.0.1", port=9464),
        description="/metrics, /healthz, /readyz, the admin API and /openapi.json",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the admin API (at least 16 characters); unset disables it (503)"
    )
    migrate: bool = Field(True, description="migrate the database to head on start (`--no-migrate` turns it off)")
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "ingest processes sharing the OTLP listeners; unset: on PostgreSQL one per CPU this process may use"
            f" but one (left to the rollup applier and the database), at least 1 and at most {AUTO_WORKERS_MAX};"
            " on SQLite one (it takes one writer at a time)"
        ),
    )
    single_process: bool = Field(
        False,
        description=(
            "run ingest, the HTTP API and the background jobs (rollup applier, retention) in one process"
            " (`--single-process`): about 45 MB less memory, slower under load (ingest shares the interpreter"
            " with the applier); unset: a supervising process serves the API and the jobs and `workers`"
            " processes ingest"
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level (stderr)")
    default_tenant: str = Field("default", description="tenant of requests that carry no ingest key")
    require_ingest_key: bool = Field(False, description="refuse OTLP requests without a valid ingest key (401)")
    price_file: Path | None = Field(
        None, description="YAML price table merged over the built-in one (same format as data/model_prices.yaml)"
    )
    ingest: IngestSettings = IngestSettings()
    sanitizer: SanitizerSettings = SanitizerSettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()
    storage: StorageSettings = StorageSettings()
    security: SecuritySettings = SecuritySettings()

    @field_validator("otlp_grpc", "otlp_http", "http", mode="before")
    @classmethod
    def _parse_address(cls, value: Any) -> Any:
        return ListenAddress.parse(value) if isinstance(value, str) else value

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        return normalize_db_url(value)

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        token = self.admin_token.get_secret_value() if self.admin_token else None
        if token is not None and len(token) < 16:
            raise ValueError("admin_token must be at least 16 characters")
        if self.single_process and self.workers is not None and self.workers > 1:
            raise ValueError(f"single_process runs one process; it cannot have workers = {self.workers}")
        return self

    @property
    def worker_count(self) -> int:
        """Ingest processes to run: ``workers``, or when unset, ``auto_workers()`` on PostgreSQL
        and one on SQLite (one writer at a time: a second process only waits for the lock)."""
        if self.workers is not None:
            return self.workers
        return 1 if self.single_process or not self.is_postgres else auto_workers()

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgresql")


def auto_workers() -> int:
    """Ingest processes when ``workers`` is unset (PostgreSQL): one per CPU this process may run
    on but one, at least one and at most ``AUTO_WORKERS_MAX``. The CPU left over is for the
    supervisor's rollup applier and, as often as not, the database on the same machine: on two
    cores shared with PostgreSQL a second worker bought 4 to 8% more spans per second for about
    65 MB more memory at full load, which took the collector past 300 MB over gRPC (issue 7,
    docs/performance.md)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus - 1, AUTO_WORKERS_MAX))


def normalize_db_url(url: str) -> str:
    """Accept ``postgresql://`` as the psycopg 3 driver; refuse drivers we do not support."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://") or url.startswith("sqlite:///") or url == "sqlite://":
        return url
    scheme = url.split("://", 1)[0] if "://" in url else url[:20]
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...")


ENV_KEYS: Mapping[str, str] = {
    "AGENT_OTEL_DB_URL": "db_url",
    "AGENT_OTEL_ADMIN_TOKEN": "admin_token",
    "AGENT_OTEL_OTLP_GRPC": "otlp_grpc",
    "AGENT_OTEL_OTLP_HTTP": "otlp_http",
    "AGENT_OTEL_HTTP": "http",
    "AGENT_OTEL_LOG_LEVEL": "log_level",
    "AGENT_OTEL_WORKERS": "workers",
    "AGENT_OTEL_SINGLE_PROCESS": "single_process",
    "AGENT_OTEL_PRICE_FILE": "price_file",
    "AGENT_OTEL_USER_ID_HMAC_KEY": "sanitizer.user_id_hmac_key",
}


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path} is not valid {path.suffix[1:] or 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return data


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge file < environment < overrides (dotted keys allowed) and validate once."""
    env = os.environ if environ is None else environ
    path = config_file or (Path(env["AGENT_OTEL_CONFIG"]) if env.get("AGENT_OTEL_CONFIG") else None)
    data: dict[str, Any] = read_config_file(path) if path else {}
    for env_key, dotted in ENV_KEYS.items():
        if env.get(env_key):
            _set_dotted(data, dotted, env[env_key])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
