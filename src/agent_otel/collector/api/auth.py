"""Admin authentication: ``Authorization: Bearer <token>``, compared in constant time.

Two kinds of token:
- the global admin token (``AGENT_OTEL_ADMIN_TOKEN``): every tenant (``AdminPrincipal.tenant_id``
  is None);
- per-tenant admin tokens (``agent-otel tokens create --tenant T``): that tenant only. They are
  looked up by SHA-256 in the in-memory ``KeyTable`` (no database round trip).

401 without a token, 403 with a wrong one, 400 when a token is passed in the query string
(tokens in URLs end up in access logs), 503 when no admin token of either kind is configured.

Routes declare ``principal: Admin`` (``Annotated[AdminPrincipal, Depends(require_admin)]``). The dependency also
records the caller's scope for the request (``security.rls.set_scope``), so
on PostgreSQL every read of the request runs as the ``agent_otel_reader`` role under the
tenant-isolation policies. It is ``async`` on purpose: a context variable set in an async
dependency is seen by the route that follows; one set in a threadpool dependency is not.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from agent_otel.collector.security.authenticator import KeyTable
from agent_otel.collector.security.credentials import ALL_TENANTS
from agent_otel.collector.security.rls import set_scope

QUERY_TOKEN_NAMES = frozenset({"token", "admin_token", "access_token", "api_key", "key"})
_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class AdminPrincipal:
    """Who is calling: the tenant whose rows they may read (None: every tenant)."""

    tenant_id: str | None

    @property
    def scope(self) -> str:
        return self.tenant_id if self.tenant_id is not None else ALL_TENANTS


class AdminAuth:
    def __init__(self, token: str | None, tenant_tokens: KeyTable | None = None) -> None:
        self._token = token.encode() if token else None
        self._tenant_tokens = tenant_tokens

    def authenticate(self, headers_authorization: str | None, query_names: set[str]) -> AdminPrincipal:
        """The principal for an Authorization header value, or an ``HTTPException``."""
        if query_names & QUERY_TOKEN_NAMES:
            raise HTTPException(
                400, "tokens in the query string are refused (they end up in logs); send Authorization: Bearer"
            )
        tenant_tokens = self._tenant_tokens
        if self._token is None and (tenant_tokens is None or not tenant_tokens.has_admin_tokens):
            raise HTTPException(
                503,
                "the admin API is disabled: set AGENT_OTEL_ADMIN_TOKEN (or admin_token in the config file) "
                "to a secret of at least 16 characters, or create a tenant token with `agent-otel tokens create`",
            )
        scheme, _, credential = (headers_authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if len(credential) > _MAX_TOKEN_LENGTH:
            raise HTTPException(403, "invalid admin token")
        presented = credential.encode("utf-8", "surrogatepass")
        # Always run the constant-time comparison, so timing does not tell which kind matched.
        is_global = self._token is not None and hmac.compare_digest(presented, self._token)
        if is_global:
            return AdminPrincipal(tenant_id=None)
        tenant = tenant_tokens.tenant_of(credential, "admin") if tenant_tokens is not None else None
        if tenant is None:
            raise HTTPException(403, "invalid admin token")
        return AdminPrincipal(tenant_id=tenant)

    async def __call__(self, request: Request) -> AdminPrincipal:
        principal = self.authenticate(request.headers.get("authorization"), set(request.query_params))
        set_scope(principal.scope)
        return principal


async def require_admin(request: Request) -> AdminPrincipal:
    """The FastAPI dependency of every admin route (uses the app's ``ApiContext.auth``)."""
    auth: AdminAuth = request.app.state.ctx.auth
    return await auth(request)


Admin = Annotated[AdminPrincipal, Depends(require_admin)]
