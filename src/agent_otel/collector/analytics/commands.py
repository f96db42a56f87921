"""CLI: ``agent-otel rollups rebuild [--since T] [--until T] [--force]`` and ``agent-otel retention run``.

Both open the database with the settings (flags > environment > config file) and need it at
the migrations head (``agent-otel db upgrade``). The rebuild shows a progress bar on stderr
(one line per tenth when stderr is not a terminal).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TextIO

from agent_otel.settings import Settings

SettingsLoader = Callable[..., Settings]


def parse_time(value: str) -> datetime:
    """ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value.strip()), datetime.min.time())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date or date-time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ProgressBar:
    """``rebuilding rollups [########------------] 12/30 days`` on a terminal; lines otherwise."""

    def __init__(self, stream: TextIO, label: str, unit: str, width: int = 30) -> None:
        self.stream, self.label, self.unit, self.width = stream, label, unit, width
        self.tty = stream.isatty()
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        filled = self.width * done // total
        text = f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {self.unit}"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
        else:
            tenth = 10 * done // total
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(text + "\n")
        self.stream.flush()


def _engine(settings: Settings) -> Any:
    from agent_otel.collector.service import writer_engine
    from agent_otel.collector.storage import migrate

    engine = writer_engine(settings)
    current, head = migrate.current(engine), migrate.head()
    if current != head:
        engine.dispose()
        raise SystemExit(f"agent-otel: the database is at revision {current or '(none)'}; run `agent-otel db upgrade`")
    return engine


def cmd_rollups(args: argparse.Namespace, load: SettingsLoader) -> int:
    from agent_otel.collector.analytics.rebuild import RebuildRefused, rebuild

    settings = load(args)
    engine = _engine(settings)
    try:
        report = rebuild(
            engine,
            args.since,
            args.until,
            force=args.force,
            progress=ProgressBar(sys.stderr, "rebuilding rollups", "days"),
            retention=settings.retention,
        )
    except RebuildRefused as exc:
        print(f"agent-otel: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"agent-otel: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(report.summary())
    return 0


def cmd_retention(args: argparse.Namespace, load: SettingsLoader) -> int:
    from agent_otel.collector.storage.retention import apply_retention

    settings = load(args)
    engine = _engine(settings)
    try:
        report = apply_retention(engine, settings.retention)
    finally:
        engine.dispose()
    for table, first_kept in sorted(report.cutoffs.items()):
        print(f"  {table}: keeping rows from {first_kept}")
    print(report.summary())
    return 0


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None], load: SettingsLoader) -> None:
    """Add the ``rollups`` and ``retention`` command groups to the CLI's subparsers."""
    rollups = sub.add_parser("rollups", help="rollup maintenance")
    rollups_sub = rollups.add_subparsers(dest="rollups_command", required=True)
    rebuild = rollups_sub.add_parser(
        "rebuild",
        help="recompute rollups from raw rows (everything, or the periods inside [--since, --until))",
    )
    common(rebuild)
    rebuild.add_argument("--since", type=parse_time, help="ISO 8601 date or date-time (UTC when no zone)")
    rebuild.add_argument("--until", type=parse_time, help="ISO 8601 date or date-time (UTC when no zone)")
    rebuild.add_argument(
        "--force", action="store_true", help="rebuild even periods whose raw rows were removed by retention"
    )
    rebuild.set_defaults(func=lambda args: cmd_rollups(args, load))

    retention = sub.add_parser("retention", help="delete rows older than the retention settings")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_sub.add_parser("run", help="apply retention now (serve also runs it on a schedule)")
    common(run)
    run.set_defaults(func=lambda args: cmd_retention(args, load))
