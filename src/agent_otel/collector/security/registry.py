"""Ingest keys and admin tokens in the database (``access_keys``): create, list, revoke, load.

Used by the CLI (``agent-otel keys|tokens``) and by ``KeyTable.refresh``; never on the ingest
hot path. A created credential is returned once and never stored in clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from agent_otel.collector.security.credentials import Kind, digest, generate, preview, validate_tenant
from agent_otel.collector.storage.database import reading
from agent_otel.collector.storage.schema import access_keys


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a listing shows about a credential: never the credential itself, nor its hash."""

    key_id: str
    kind: str
    tenant_id: str
    name: str | None
    preview: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """One row of the in-memory table the authenticators look credentials up in."""

    key_hash: str
    kind: str
    tenant_id: str
    key_id: str


class KeyNotFound(LookupError):
    pass


def create_key(engine: Engine, kind: Kind, tenant: str, name: str | None = None) -> tuple[str, KeyInfo]:
    """A new credential for ``tenant``; returns (the credential, shown once, and its listing)."""
    validate_tenant(tenant)
    credential = generate(kind)
    key_id = ("ik_" if kind == "ingest" else "at_") + secrets.token_hex(6)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            access_keys.insert().values(
                key_id=key_id,
                kind=kind,
                tenant_id=tenant,
                name=name[:200] if name else None,
                key_hash=digest(credential),
                preview=preview(credential),
                created_at=now,
            )
        )
    return credential, KeyInfo(key_id, kind, tenant, name, preview(credential), now, None)


def list_keys(engine: Engine, kind: Kind, tenant: str | None = None, include_revoked: bool = False) -> list[KeyInfo]:
    query = select(
        access_keys.c.key_id,
        access_keys.c.kind,
        access_keys.c.tenant_id,
        access_keys.c.name,
        access_keys.c.preview,
        access_keys.c.created_at,
        access_keys.c.revoked_at,
    ).where(access_keys.c.kind == kind)
    if tenant is not None:
        query = query.where(access_keys.c.tenant_id == tenant)
    if not include_revoked:
        query = query.where(access_keys.c.revoked_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(access_keys.c.tenant_id, access_keys.c.created_at)).fetchall()
    return [KeyInfo(*row) for row in rows]


def revoke_key(engine: Engine, kind: Kind, key_id: str) -> KeyInfo:
    """Revoke by key id (``ik_...``/``at_...``) or by the preview shown in listings."""
    key_id = key_id.strip().rstrip(".")
    column = access_keys.c.preview if key_id.startswith(("aoi_", "aoa_")) else access_keys.c.key_id
    with engine.begin() as conn:
        matches = conn.execute(
            select(access_keys.c.key_id).where(
                column == key_id, access_keys.c.kind == kind, access_keys.c.revoked_at.is_(None)
            )
        ).fetchall()
        if not matches:
            raise KeyNotFound(f"no active {kind} credential {key_id!r}")
        if len(matches) > 1:
            raise KeyNotFound(f"{key_id!r} matches {len(matches)} credentials; revoke by key id")
        conn.execute(
            update(access_keys).where(access_keys.c.key_id == matches[0][0]).values(revoked_at=datetime.now(UTC))
        )
    revoked = [k for k in list_keys(engine, kind, include_revoked=True) if k.key_id == matches[0][0]]
    return revoked[0]


def active_keys(engine: Engine) -> list[ActiveKey]:
    """Every credential not revoked, of both kinds (a few hundred rows at most)."""
    query = select(access_keys.c.key_hash, access_keys.c.kind, access_keys.c.tenant_id, access_keys.c.key_id).where(
        access_keys.c.revoked_at.is_(None)
    )
    with reading(engine) as conn:
        return [ActiveKey(*row) for row in conn.execute(query)]
