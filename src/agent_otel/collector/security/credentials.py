"""Pure functions for ingest keys and admin tokens: generate, hash, preview, validate tenants.

A credential is ``<prefix>_<43 base62 characters>`` (256 random bits): ``aoi_`` for ingest keys,
``aoa_`` for per-tenant admin tokens. The prefix lets the scrubber recognise a leaked one.
Only the SHA-256 of a credential is stored, with a short preview (``aoi_Xy3k``) to tell keys
apart in listings. A slow password hash is not needed: a 256-bit random secret cannot be guessed
from its SHA-256, and a fast hash keeps the check off the ingest hot path's budget.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final, Literal

Kind = Literal["ingest", "admin"]

PREFIXES: Final[dict[str, str]] = {"ingest": "aoi_", "admin": "aoa_"}
_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LENGTH: Final = 43  # 62**43 > 2**256
PREVIEW_LENGTH: Final = 8
_TENANT: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_CREDENTIAL: Final = re.compile(r"^ao[ia]_[0-9A-Za-z]{43}$")
ALL_TENANTS: Final = "*"  # what the global admin token is scoped to; never a valid tenant id


class CredentialError(ValueError):
    """A tenant id or credential is malformed; the message says why (never echoes a secret)."""


def generate(kind: Kind) -> str:
    """A new random credential of ``kind``."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return PREFIXES[kind] + body


def digest(credential: str) -> str:
    """The stored form: lowercase hex SHA-256."""
    return hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()


def preview(credential: str) -> str:
    """The first characters, enough to tell keys apart in a listing, far too few to guess the rest."""
    return credential[:PREVIEW_LENGTH]


def well_formed(credential: str) -> bool:
    return _CREDENTIAL.match(credential) is not None


def validate_tenant(tenant: str) -> str:
    """Tenant ids are short lowercase names: they end up in SQL settings, logs and CLI output."""
    if not _TENANT.match(tenant):
        raise CredentialError(
            "a tenant id is 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant
