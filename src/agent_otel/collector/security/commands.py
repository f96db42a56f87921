"""``agent-otel keys ...`` (ingest keys) and ``agent-otel tokens ...`` (per-tenant admin tokens).

    agent-otel keys create --tenant acme [--name "prod agents"]   prints the key once
    agent-otel keys list [--tenant acme] [--all]
    agent-otel keys revoke KEY_ID_OR_PREVIEW
    agent-otel tokens create|list|revoke ...                        same, for admin tokens

A running collector picks up changes within ``security.key_refresh_seconds``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from agent_otel.collector.security.credentials import CredentialError, Kind
from agent_otel.collector.security.registry import KeyInfo, KeyNotFound, create_key, list_keys, revoke_key
from agent_otel.settings import Settings, SettingsError

SettingsLoader = Callable[[argparse.Namespace], Settings]


def _engine(settings: Settings) -> Any:
    from agent_otel.collector.storage import migrate
    from agent_otel.collector.storage.database import create_db_engine

    engine = create_db_engine(settings)
    if settings.migrate:
        migrate.upgrade(engine)  # the table may not exist yet on a fresh database
    return engine


def _row(info: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "tenant": info.tenant_id,
        "name": info.name,
        "preview": info.preview + "...",
        "created_at": info.created_at.isoformat(timespec="seconds") if info.created_at else None,
        "revoked_at": info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else None,
    }


def run(args: argparse.Namespace, load: SettingsLoader) -> int:
    kind: Kind = "ingest" if args.command == "keys" else "admin"
    label = "ingest key" if kind == "ingest" else "admin token"
    settings = load(args)
    engine = _engine(settings)
    try:
        if args.key_command == "create":
            try:
                credential, info = create_key(engine, kind, args.tenant, args.name)
            except CredentialError as exc:
                raise SettingsError(str(exc)) from None
            print(f"created {label} {info.key_id} for tenant {info.tenant_id!r} (preview {info.preview}...)")
            print("store it now, it is not shown again:")
            print(credential)
            if kind == "ingest":
                print(f"send it with every OTLP request: {settings.security.key_header}: <key>")
            else:
                print("send it to the admin API: Authorization: Bearer <token>")
        elif args.key_command == "list":
            keys = list_keys(engine, kind, args.tenant, include_revoked=args.all)
            if args.json:
                print(json.dumps([_row(k) for k in keys], indent=2))
            elif not keys:
                print(f"no {label}s")
            else:
                for key in keys:
                    row = _row(key)
                    state = f"revoked {row['revoked_at']}" if key.revoked_at else "active"
                    name = f" {key.name!r}" if key.name else ""
                    print(
                        f"{key.key_id}  {row['preview']:<12} tenant={key.tenant_id}{name}  {row['created_at']}  {state}"
                    )
        else:
            try:
                info = revoke_key(engine, kind, args.key_id)
            except KeyNotFound as exc:
                print(f"agent-otel: {exc}")
                return 1
            print(f"revoked {label} {info.key_id} ({info.preview}...) of tenant {info.tenant_id!r}")
    finally:
        engine.dispose()
    return 0


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None], load: SettingsLoader) -> None:
    """Add the ``keys`` and ``tokens`` command groups to the CLI's subparsers."""
    for command, label in (("keys", "ingest keys of OTLP requests"), ("tokens", "per-tenant admin API tokens")):
        group = sub.add_parser(command, help=f"create, list and revoke {label}")
        group_sub = group.add_subparsers(dest="key_command", required=True)
        create = group_sub.add_parser("create", help="create one and print it (shown once)")
        create.add_argument("--tenant", required=True, help="tenant id: lowercase letters, digits, . _ -")
        create.add_argument("--name", help="a label to recognise it by")
        listing = group_sub.add_parser("list", help="list them (never the secret)")
        listing.add_argument("--tenant", help="only this tenant")
        listing.add_argument("--all", action="store_true", help="include revoked ones")
        listing.add_argument("--json", action="store_true", help="machine-readable output")
        revoke = group_sub.add_parser("revoke", help="revoke one by key id or preview")
        revoke.add_argument("key_id", help="key id (ik_..., at_...) or preview (aoi_..., aoa_...)")
        for parser in (create, listing, revoke):
            common(parser)
            parser.set_defaults(func=lambda args: run(args, load))
