"""Grafana's variable and macro expansion, reimplemented for the tests (pure functions).

Grafana runs a panel query in two steps: the frontend interpolates template and global variables
(``$agent``, ``$__rate_interval``, ``$__interval``, ``$__range`` ...), then, for SQL datasources,
the backend expands macros (``$__timeFilter(col)``, ``$__timeGroupAlias(col, 1h)`` ...). These
functions do the same so the tests can send the exact text Grafana would send to Prometheus and
PostgreSQL. The PostgreSQL macro forms follow Grafana's grafana-postgresql-datasource (macros.go).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """``"1h"`` -> 3600.0 (Grafana interval syntax)."""
    match = _DURATION.match(text.strip().strip("'\""))
    if match is None:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs a panel: the time range, the interval, the variables."""

    start: datetime
    end: datetime
    interval: str  # $__interval, e.g. "20s"
    rate_interval: str  # $__rate_interval, e.g. "1m"
    variables: Mapping[str, str]

    @property
    def range_seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def globals(self) -> dict[str, str]:
        seconds = self.range_seconds
        interval_ms = int(duration_seconds(self.interval) * 1000)
        return {
            "__rate_interval": self.rate_interval,
            "__interval_ms": str(interval_ms),
            "__interval": self.interval,
            "__range_ms": str(seconds * 1000),
            "__range_s": str(seconds),
            "__range": f"{seconds}s" if seconds % 3600 else f"{seconds // 3600}h",
        }


def _replace_variables(text: str, values: Mapping[str, str]) -> str:
    # longest names first, so $__range_s is not read as $__range followed by "_s"
    for name in sorted(values, key=len, reverse=True):
        text = text.replace("${" + name + "}", values[name])
        text = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", lambda _m, v=values[name]: v, text)
    return text


def expand_promql(expr: str, ctx: QueryContext) -> str:
    """What Grafana's Prometheus datasource sends: single-value variables escaped like
    ``prometheusRegularEscape`` (backslashes and single quotes)."""
    escaped = {k: v.replace("\\", "\\\\").replace("'", "\\'") for k, v in ctx.variables.items()}
    text = _replace_variables(expr, {**ctx.globals(), **escaped})
    if "$" in text:
        raise ValueError(f"unexpanded variable left in {text!r}")
    return text


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _macro_args(text: str, start: int) -> tuple[list[str], int]:
    """Arguments of the macro call whose ``(`` is at ``start``; returns them and the end index."""
    depth, i, args, current = 0, start, [], ""
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
            if depth > 1:
                current += ch
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return [a for a in args if a], i + 1
            current += ch
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    raise ValueError(f"unclosed macro call in {text!r}")


def _postgres_macro(name: str, args: list[str], ctx: QueryContext) -> str:
    start, end = _rfc3339(ctx.start), _rfc3339(ctx.end)
    epoch_from, epoch_to = int(ctx.start.timestamp()), int(ctx.end.timestamp())

    def need(count: int) -> None:
        if len(args) < count:
            raise ValueError(f"macro $__{name} needs {count} argument(s), got {args}")

    if name == "time":
        need(1)
        return f'{args[0]} AS "time"'
    if name == "timeEpoch":
        need(1)
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "timeFilter":
        need(1)
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "timeFrom":
        return f"'{start}'"
    if name == "timeTo":
        return f"'{end}'"
    if name in ("timeGroup", "timeGroupAlias"):
        need(2)
        seconds = duration_seconds(args[1])
        group = f"floor(extract(epoch from {args[0]})/{seconds:g})*{seconds:g}"
        return group + (' AS "time"' if name == "timeGroupAlias" else "")
    if name == "unixEpochFilter":
        need(1)
        return f"{args[0]} >= {epoch_from} AND {args[0]} <= {epoch_to}"
    if name == "unixEpochFrom":
        return str(epoch_from)
    if name == "unixEpochTo":
        return str(epoch_to)
    if name in ("unixEpochGroup", "unixEpochGroupAlias"):
        need(2)
        seconds = duration_seconds(args[1])
        group = f"floor({args[0]}/{seconds:g})*{seconds:g}"
        return group + (' AS "time"' if name == "unixEpochGroupAlias" else "")
    raise ValueError(f"unknown Grafana SQL macro $__{name}")


_MACRO = re.compile(r"\$__(\w+)\(")


def expand_sql(raw: str, ctx: QueryContext) -> str:
    """What Grafana's PostgreSQL datasource runs: variables first (single values with ``'``
    doubled, as Grafana's SQL datasources do), then the macros."""
    escaped = {k: v.replace("'", "''") for k, v in ctx.variables.items()}
    text = _replace_variables(
        raw, {"__interval": ctx.interval, "__interval_ms": ctx.globals()["__interval_ms"], **escaped}
    )
    while (match := _MACRO.search(text)) is not None:
        args, end = _macro_args(text, match.end() - 1)
        text = text[: match.start()] + _postgres_macro(match[1], args, ctx) + text[end:]
    if "$" in text:
        raise ValueError(f"unexpanded variable or macro left in {text!r}")
    return text
