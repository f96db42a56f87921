"""Access control and tenant isolation.

- ``credentials``: pure generation, hashing and preview of ingest keys (``aoi_``) and per-tenant
  admin tokens (``aoa_``); tenant id validation.
- ``registry``: the ``access_keys`` table (create, list, revoke), used by the CLI.
- ``authenticator``: ``KeyTable`` (active credentials by hash, in memory, refreshed in the
  background) and ``IngestAuthenticator`` (the receiver core's ``Authenticator``).
- ``rls``: PostgreSQL row-level security for the admin API's reads (reader role + tenant setting).
"""

from agent_otel.collector.security.authenticator import IngestAuthenticator, KeyTable, credential_from
from agent_otel.collector.security.credentials import ALL_TENANTS, CredentialError, validate_tenant
from agent_otel.collector.security.rls import READER_ROLE, install_tenant_scope, tenant_scope

__all__ = [
    "ALL_TENANTS",
    "READER_ROLE",
    "CredentialError",
    "IngestAuthenticator",
    "KeyTable",
    "credential_from",
    "install_tenant_scope",
    "tenant_scope",
    "validate_tenant",
]
