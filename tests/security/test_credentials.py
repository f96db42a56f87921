"""Pure credential functions: format, hashing, preview, tenant ids."""

from __future__ import annotations

import hashlib

import pytest

from agent_otel.collector.security.authenticator import KeyTable, credential_from
from agent_otel.collector.security.credentials import (
    CredentialError,
    digest,
    generate,
    preview,
    validate_tenant,
    well_formed,
)
from agent_otel.collector.security.registry import ActiveKey


@pytest.mark.parametrize(("kind", "prefix"), [("ingest", "aoi_"), ("admin", "aoa_")])
def test_generated_credentials_are_random_prefixed_and_well_formed(kind: str, prefix: str) -> None:
    keys = {generate(kind) for _ in range(200)}  # type: ignore[arg-type]
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(prefix) and len(key) == 47 and well_formed(key)


def test_digest_is_sha256_and_preview_is_short() -> None:
    key = generate("ingest")
    assert digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert preview(key) == key[:8] and key.startswith(preview(key))
    assert not well_formed(key + "x") and not well_formed("aoi_short")


@pytest.mark.parametrize("tenant", ["default", "acme", "team-7.eu_west", "a"])
def test_valid_tenants(tenant: str) -> None:
    assert validate_tenant(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", "*", "Acme", "-x", "a b", "x" * 64, "t'; DROP TABLE agents; --", "ünï"])
def test_invalid_tenants_are_refused(tenant: str) -> None:
    with pytest.raises(CredentialError):
        validate_tenant(tenant)


def test_key_table_maps_hash_to_tenant_per_kind() -> None:
    ingest, admin = generate("ingest"), generate("admin")
    table = KeyTable(
        [ActiveKey(digest(ingest), "ingest", "acme", "ik_1"), ActiveKey(digest(admin), "admin", "acme", "at_1")]
    )
    assert table.tenant_of(ingest, "ingest") == "acme"
    assert table.tenant_of(ingest, "admin") is None  # an ingest key is not an admin token
    assert table.tenant_of(admin, "admin") == "acme"
    assert table.tenant_of(generate("ingest"), "ingest") is None
    assert table.has_admin_tokens and len(table) == 2


def test_credential_header_then_bearer() -> None:
    assert credential_from({"x-agent-otel-key": " k1 "}, "x-agent-otel-key") == "k1"
    assert credential_from({"authorization": "Bearer k2"}, "x-agent-otel-key") == "k2"
    assert credential_from({"authorization": "Basic dXNlcjpwdw=="}, "x-agent-otel-key") is None
    assert credential_from({"x-agent-otel-key": "k1", "authorization": "Bearer k2"}, "x-agent-otel-key") == "k1"
    assert credential_from({}, "x-agent-otel-key") is None


def test_an_invalid_default_tenant_is_a_configuration_error() -> None:
    from agent_otel.collector.security.authenticator import IngestAuthenticator
    from agent_otel.settings import SettingsError

    with pytest.raises(SettingsError, match="default_tenant"):
        IngestAuthenticator(KeyTable([]), "Not Valid", False, "x-agent-otel-key")
