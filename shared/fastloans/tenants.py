"""Tenants and their API keys: keys are shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

# review: list, claim and decide review cases, request information; supervise: approve or return a reviewer's
# override (never one's own). Both need a key with an actor, the person every review action is recorded under.
SCOPES = ("submit", "read", "admin", "review", "supervise")
REVIEW_SCOPES = ("review", "supervise")
ACTOR_MAX = 64
ACTOR_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
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
    actor: str | None = None


def check_actor(actor: str | None, scopes: tuple[str, ...]) -> None:
    """Refuse an actor name that is not a short identifier, and a review or supervise key without one."""
    if actor is None:
        if set(scopes) & set(REVIEW_SCOPES):
            raise ValueError("a key with the review or supervise scope needs an actor (the person using it)")
        return
    if len(actor) > ACTOR_MAX or not ACTOR_TEXT.match(actor):
        raise ValueError(
            f"an actor is an identifier such as reviewer-1 or j.doe@example.com: letters, digits and . _ @ -, "
            f"at most {ACTOR_MAX} characters"
        )


async def ensure_tenant(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """The id of tenant `name`, creating it if needed."""
    row = await conn.fetchrow(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
        "RETURNING id",
        uuid.uuid4(),
        name,
    )
    tenant_id: uuid.UUID = row["id"]
    return tenant_id


class KeyConflictError(ValueError):
    """A key given to `issue_key` is already registered as something it may not become."""


async def issue_key(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    scopes: tuple[str, ...] = ("submit", "read"),
    key: str | None = None,
    label: str | None = None,
    actor: str | None = None,
) -> IssuedKey:
    """Create an API key for `tenant` with `scopes` (and `actor`), or re-register a live key of that tenant with them.

    A revoked key stays revoked and a key never moves to another tenant: both raise KeyConflictError.
    """
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCOPES)}")
    check_actor(actor, scopes)
    if key is not None and len(key) < 16:
        raise ValueError("an API key must be at least 16 characters long")
    key = key or new_key()
    async with conn.transaction():
        tenant_id = await ensure_tenant(conn, tenant)
        # FOR UPDATE: a concurrent revocation waits for this statement instead of being undone by it.
        existing = await conn.fetchrow(
            "SELECT tenant_id, revoked_at FROM api_keys WHERE key_hash = $1 FOR UPDATE", hash_key(key)
        )
        if existing is None:
            inserted = await conn.fetchval(
                "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, scopes, label, actor) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_hash) DO NOTHING RETURNING id",
                uuid.uuid4(),
                tenant_id,
                display_prefix(key),
                hash_key(key),
                list(scopes),
                label,
                actor,
            )
            if inserted is None:
                raise KeyConflictError("this API key was registered at the same moment by someone else")
        elif existing["revoked_at"] is not None:
            raise KeyConflictError(
                f"the API key {display_prefix(key)}… was revoked; a revoked key is never reinstated: create a new one"
            )
        elif existing["tenant_id"] != tenant_id:
            raise KeyConflictError(
                f"the API key {display_prefix(key)}… belongs to another tenant; keys never move between tenants"
            )
        else:
            await conn.execute(
                "UPDATE api_keys SET scopes = $2, actor = $3 WHERE key_hash = $1", hash_key(key), list(scopes), actor
            )
    return IssuedKey(key=key, prefix=display_prefix(key), tenant_id=tenant_id, scopes=tuple(scopes), actor=actor)


async def revoke_key(conn: asyncpg.Connection, prefix: str) -> int:
    """Revoke every live key starting with `prefix`; returns how many."""
    result = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL", prefix
    )
    return int(result.split()[-1])


async def set_rate_limit(conn: asyncpg.Connection, tenant: str, *, per_second: float | None, burst: int | None) -> bool:
    """Give `tenant` its own rate limit (None: back to the gateway's default); False if there is no such tenant."""
    if (per_second is not None and per_second < 0) or (burst is not None and burst < 1):
        raise ValueError("the rate must be at least 0 (0: unlimited) and the burst at least 1")
    result: str = await conn.execute(
        "UPDATE tenants SET rate_limit_per_second = $2, rate_limit_burst = $3 WHERE name = $1",
        tenant,
        per_second,
        burst,
    )
    return result.split()[-1] != "0"


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key's prefix, tenant, scopes and state (never the key)."""
    keys: list[asyncpg.Record] = await conn.fetch(
        "SELECT k.prefix, t.name AS tenant, k.scopes, k.label, k.actor, k.created_at, k.revoked_at "
        "FROM api_keys k JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_at"
    )
    return keys


#: A tenant's adverse-action notice settings (the columns of tenant_notice_settings) and the options of
#: `fastloans tenants notice-settings` that set them; every one but score_source is required.
NOTICE_SETTING_OPTIONS = {
    "creditor_name": "--creditor-name",
    "address": "--address",
    "supervising_agency": "--agency",
    "contact": "--contact",
    "score_source": "--score-source",
}
NOTICE_SETTINGS = tuple(NOTICE_SETTING_OPTIONS)
REQUIRED_NOTICE_SETTINGS = NOTICE_SETTINGS[:4]
NOTICE_SETTING_MAX = 1000


async def set_notice_settings(conn: asyncpg.Connection, tenant: str, **values: str | None) -> asyncpg.Record | None:
    """Set `tenant`'s notice settings (None: keep the stored value; "" clears score_source); None if no such tenant.

    Raises ValueError naming what is missing when the tenant would be left without a required setting.
    """
    unknown = set(values) - set(NOTICE_SETTINGS)
    if unknown:
        raise ValueError(f"unknown notice setting(s): {', '.join(sorted(unknown))}")
    for name, value in values.items():
        if value is not None and len(value) > NOTICE_SETTING_MAX:
            raise ValueError(f"{name} may be at most {NOTICE_SETTING_MAX} characters")
        if value is not None and any(ord(char) < 32 and char != "\n" for char in value):
            raise ValueError(f"{name} may hold line breaks but no other control characters")
    cleaned = {name: None if (value := values.get(name)) is None else value.strip() for name in NOTICE_SETTINGS}
    async with conn.transaction():
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
        if tenant_id is None:
            return None
        current = await conn.fetchrow("SELECT * FROM tenant_notice_settings WHERE tenant_id = $1 FOR UPDATE", tenant_id)
        merged = {
            name: cleaned[name] if cleaned[name] is not None else (current[name] if current else None)
            for name in NOTICE_SETTINGS
        }
        missing = [name for name in REQUIRED_NOTICE_SETTINGS if not merged[name]]
        if missing:
            raise ValueError(f"missing notice setting(s): {', '.join(missing)}")
        row: asyncpg.Record = await conn.fetchrow(
            "INSERT INTO tenant_notice_settings (tenant_id, creditor_name, address, supervising_agency, contact, "
            "score_source) VALUES ($1, $2, $3, $4, $5, NULLIF($6, '')) ON CONFLICT (tenant_id) DO UPDATE SET "
            "creditor_name = EXCLUDED.creditor_name, address = EXCLUDED.address, "
            "supervising_agency = EXCLUDED.supervising_agency, contact = EXCLUDED.contact, "
            "score_source = EXCLUDED.score_source, updated_at = now() RETURNING *",
            tenant_id,
            *(merged[name] for name in NOTICE_SETTINGS),
        )
    return row


async def notice_settings(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    """`tenant`'s notice settings, or None when it has none (or there is no such tenant)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT s.* FROM tenant_notice_settings s JOIN tenants t ON t.id = s.tenant_id WHERE t.name = $1", tenant
    )
    return row
