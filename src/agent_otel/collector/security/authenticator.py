"""Credential lookup without a database round trip: the ``Authenticator`` of the receiver core.

``KeyTable`` holds the SHA-256 of every active credential in memory and is reloaded every
``security.key_refresh_seconds`` by a background job (and once at start-up), so an OTLP request
costs one SHA-256 and one dict lookup. A key created with the CLI works, and a revoked one stops
working, within one refresh interval. If a reload fails (database down) the previous table stays.

Lookups by hash are not timing-sensitive: the attacker controls the credential, not its digest,
so the time a dict lookup takes says nothing useful about stored hashes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from agent_otel.collector.receiver.errors import PermissionDenied, Unauthenticated
from agent_otel.collector.security.credentials import CredentialError, digest, validate_tenant
from agent_otel.collector.security.registry import ActiveKey, active_keys
from agent_otel.settings import SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    tenant_id: str
    kind: str


class KeyTable:
    """Active credentials by hash, swapped atomically on refresh (readers never lock)."""

    def __init__(self, keys: list[ActiveKey] | None = None) -> None:
        self._by_hash: dict[str, _Entry] = {}
        self._admin_tokens = 0
        self._lock = threading.Lock()
        self.loaded = False
        if keys is not None:
            self.replace(keys)

    def replace(self, keys: list[ActiveKey]) -> None:
        table = {key.key_hash: _Entry(key.tenant_id, key.kind) for key in keys}
        self._by_hash = table  # one reference swap: concurrent lookups see the old or the new table
        self._admin_tokens = sum(1 for entry in table.values() if entry.kind == "admin")
        self.loaded = True

    def refresh(self, engine: Engine) -> bool:
        """Reload from the database; keep the current table when that fails."""
        with self._lock:
            try:
                keys = active_keys(engine)
            except Exception as exc:
                log.warning("could not reload ingest keys and admin tokens: %s", type(exc).__name__)
                return False
            self.replace(keys)
            return True

    def tenant_of(self, credential: str, kind: str) -> str | None:
        entry = self._by_hash.get(digest(credential))
        return entry.tenant_id if entry is not None and entry.kind == kind else None

    @property
    def has_admin_tokens(self) -> bool:
        return self._admin_tokens > 0

    def __len__(self) -> int:
        return len(self._by_hash)


def credential_from(headers: Mapping[str, str], header: str) -> str | None:
    """The ingest key of a request: ``<header>: KEY`` first, then ``Authorization: Bearer KEY``."""
    value = headers.get(header)
    if value:
        return value.strip()
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    return None


class IngestAuthenticator:
    """OTLP requests -> tenant. No key: the default tenant, or 401 when keys are required.
    A key that is unknown or revoked: 403 (never silently the default tenant)."""

    def __init__(self, table: KeyTable, default_tenant: str, require_key: bool, header: str) -> None:
        self.table = table
        try:
            self.default_tenant = validate_tenant(default_tenant)
        except CredentialError as exc:
            raise SettingsError(f"invalid configuration: default_tenant: {exc}") from None
        self.require_key = require_key
        self.header = header.lower()

    def tenant_for(self, headers: Mapping[str, str]) -> str:
        credential = credential_from(headers, self.header)
        if credential is None:
            if self.require_key:
                raise Unauthenticated(f"an ingest key is required: send it in the {self.header} header")
            return self.default_tenant
        tenant = self.table.tenant_of(credential, "ingest") if len(credential) <= 256 else None
        if tenant is None:
            raise PermissionDenied("invalid or revoked ingest key")
        return tenant
