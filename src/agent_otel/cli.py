"""``agent-otel``: serve, db, demo (and the analytics and security commands added by later issues).

Flags win over environment variables, which win over the config file (see ``settings.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_otel import __version__
from agent_otel.settings import Settings, SettingsError, load_settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or TOML config file (also AGENT_OTEL_CONFIG)")
    parser.add_argument("--db", dest="db_url", help="database URL (default sqlite:///./agent-otel.db)")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {"db_url": getattr(args, "db_url", None), **extra}
    return load_settings(overrides, config_file=getattr(args, "config", None))


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- serve -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        otlp_grpc=args.otlp_grpc,
        otlp_http=args.otlp_http,
        http=args.http,
        migrate=False if args.no_migrate else None,
        workers=args.workers,
        single_process=True if args.single_process else None,
        log_level=args.log_level,
    )
    _setup_logging(settings.log_level)
    from agent_otel.collector.service import Collector, tune_allocator, tune_gc

    tune_allocator()  # before any thread or worker: the workers forked from here inherit it

    def on_ready(c: Collector) -> None:
        print(f"database: {settings.db_url}", flush=True)
        print(f"metrics: http://{settings.http.host}:{c.ports['http']}/metrics", flush=True)
        if args.demo:
            endpoint = f"http://{settings.otlp_http.host}:{c.ports['otlp-http']}"
            threading.Thread(target=_demo_then_report, args=(endpoint, args.demo, c, settings), daemon=True).start()

    if not settings.single_process:  # the default: a supervising process and `workers` ingest processes
        from agent_otel.collector.workers import serve_workers

        return serve_workers(settings, on_ready)
    collector = Collector(settings)
    tune_gc()
    asyncio.run(collector.run(on_ready))
    return 0


def _demo_then_report(endpoint: str, executions: int, collector: Any, settings: Settings) -> None:
    from sqlalchemy import text

    from agent_otel.collector.storage.database import is_sqlite_file, rollups_path
    from agent_otel.demo import run_demo

    run_demo(endpoint, executions)
    with collector.read_engine.connect() as conn:
        counts = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("agent_executions", "agent_steps", "agent_logs", "agent_feedback")
        }
        by_status = conn.execute(
            text("SELECT status, count(*) FROM agent_executions GROUP BY status ORDER BY 2 DESC")
        ).fetchall()
    http = f"http://{settings.http.host}:{collector.ports['http']}"
    db = settings.db_url.removeprefix("sqlite:///")
    rollups_hint: list[str] = []  # on a SQLite file the rollup tables live in a file of their own
    if is_sqlite_file(settings.db_url):
        rollups_hint.append(
            f"  the rollups         sqlite3 {db} \"ATTACH '{rollups_path(db)}' AS rollups\" "
            "'SELECT agent_id, period, period_start, total_executions, p95_duration FROM agent_metrics LIMIT 10'"
        )
    print(
        "\n".join(
            [
                "",
                f"demo: {executions} agent executions sent through the plugin and the OTLP exporter",
                "rows stored: " + ", ".join(f"{t}={n}" for t, n in counts.items()),
                "executions by status: " + ", ".join(f"{s}={n}" for s, n in by_status),
                "",
                "where to look:",
                f"  Prometheus metrics  curl -s {http}/metrics | grep '^agent_'",
                f"  health              curl -s {http}/readyz",
                f"  the rows            sqlite3 {db} "
                "'SELECT agent_id, status, duration, model, input_tokens, cost_usd FROM agent_executions LIMIT 10'",
                *rollups_hint,
                f'  admin API           curl -s -H "Authorization: Bearer $AGENT_OTEL_ADMIN_TOKEN" '
                f"'{http}/api/admin/metrics?hours=24'",
                "  (the collector keeps running: send your own OTLP traffic, Ctrl-C to stop)",
            ]
        ),
        flush=True,
    )


# -- db --------------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace) -> int:
    from agent_otel.collector.storage import migrate
    from agent_otel.collector.storage.database import create_db_engine

    settings = _settings(args)
    engine = create_db_engine(settings)
    try:
        if args.db_command == "upgrade":
            migrate.upgrade(engine, args.revision)
            print(f"database at revision {migrate.current(engine)}")
        elif args.db_command == "downgrade":
            migrate.downgrade(engine, args.revision)
            print(f"database at revision {migrate.current(engine) or '(empty)'}")
        elif args.db_command == "current":
            print(migrate.current(engine) or "(empty: run `agent-otel db upgrade`)")
        elif args.db_command == "check":
            problems = migrate.check(engine)
            if problems:
                print("drift between the models and the database:")
                for line in problems:
                    print(f"  {line}")
                return 1
            print(f"no drift: database at head {migrate.head()} matches the models")
    finally:
        engine.dispose()
    return 0


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from agent_otel.demo import run_demo

    sent = run_demo(args.endpoint, args.executions, hours=args.hours, seed=args.seed, protocol=args.protocol)
    print(f"demo: sent {sent} agent executions to {args.endpoint} ({args.protocol})")
    return 0


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-otel", description="OpenTelemetry collector and plugin for AI agents")
    parser.add_argument("--version", action="version", version=f"agent-otel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the collector")
    _common(serve)
    serve.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address (default 127.0.0.1:4317)")
    serve.add_argument("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP listen address (default 127.0.0.1:4318)")
    serve.add_argument("--http", metavar="HOST:PORT", help="metrics, health and admin API (default 127.0.0.1:9464)")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate the database on start")
    serve.add_argument(
        "--workers",
        type=int,
        help="ingest processes sharing the OTLP listeners (default on PostgreSQL: one per CPU but one, at least 1,"
        " at most 4; on SQLite: one)",
    )
    serve.add_argument(
        "--single-process",
        action="store_true",
        help="ingest, API and background jobs in one process (less memory, slower under load)",
    )
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--demo",
        type=int,
        nargs="?",
        const=300,
        default=0,
        metavar="N",
        help="once listening, send N demo executions to itself (default 300)",
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, help_text in (
        ("upgrade", "migrate to REV (default head)"),
        ("downgrade", "migrate down to REV (base removes everything)"),
        ("current", "print the current revision"),
        ("check", "report drift between the models and the migrated database"),
    ):
        command = db_sub.add_parser(name, help=help_text)
        _common(command)
        if name == "upgrade":
            command.add_argument("revision", nargs="?", default="head")
        elif name == "downgrade":
            command.add_argument("revision")
        command.set_defaults(func=cmd_db)

    demo = sub.add_parser("demo", help="send realistic agent traffic through the plugin")
    demo.add_argument("--endpoint", default="http://127.0.0.1:4318", help="OTLP endpoint (default %(default)s)")
    demo.add_argument("--protocol", choices=["http/protobuf", "grpc"], default="http/protobuf")
    demo.add_argument("--executions", type=int, default=200)
    demo.add_argument("--hours", type=float, default=6.0, help="spread executions over the last N hours")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    from agent_otel.collector.security.commands import register as register_security

    register_security(sub, _common, _settings)

    from agent_otel.collector.analytics.commands import register as register_analytics

    register_analytics(sub, _common, _settings)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"agent-otel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
