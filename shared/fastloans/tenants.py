"""Tenants and their API keys: keys are shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

SCOPES = ("submit", "read", "admin")
KEY_PREFIX = "fl_"


def hash_key(key: str) -> bytes:
    """The stored form of an API key (keys are 256-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    """The part of a key safe to show in listings and to revoke it by."""
    return key[:11]


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only time its full text is known."""

    key: str
    prefix: str
    tenant_id: uuid.UUID
    scopes: tuple[str, ...]


async def ensure_tenant(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """The id of tenant `name`, creating it if needed."""
    row = await conn.fetchrow(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
        "RETURNING id",
        uuid.uuid4(), name,
    )
    return row["id"]


async def issue_key(
    conn: asyncpg.Connection, tenant: str, *, scopes: tuple[str, ...] = ("submit", "read"),
    key: str | None = None, label: str | None = None,
) -> IssuedKey:
    """Create (or re-register) an API key for `tenant` with `scopes`."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCOPES)}")
    if key is not None and len(key) < 16:
        raise ValueError("an API key must be at least 16 characters long")
    key = key or new_key()
    tenant_id = await ensure_tenant(conn, tenant)
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, scopes, label) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, scopes = EXCLUDED.scopes, "
        "tenant_id = EXCLUDED.tenant_id",
        uuid.uuid4(), tenant_id, display_prefix(key), hash_key(key), list(scopes), label,
    )
    return IssuedKey(key=key, prefix=display_prefix(key), tenant_id=tenant_id, scopes=tuple(scopes))


async def revoke_key(conn: asyncpg.Connection, prefix: str) -> int:
    """Revoke every live key starting with `prefix`; returns how many."""
    result = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL", prefix
    )
    return int(result.split()[-1])


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key's prefix, tenant, scopes and state (never the key)."""
    return await conn.fetch(
        "SELECT k.prefix, t.name AS tenant, k.scopes, k.label, k.created_at, k.revoked_at "
        "FROM api_keys k JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_at"
    )
