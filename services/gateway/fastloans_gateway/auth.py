"""API-key authentication, scopes and per-key rate limiting."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass, field

from fastloans.db import Database
from fastloans.tenants import hash_key
from fastloans_gateway.problems import Problem


@dataclass(frozen=True)
class Caller:
    """The tenant behind a request's API key and what the key may do."""

    tenant_id: uuid.UUID
    scopes: frozenset[str]
    key_hash: bytes = field(repr=False)

    def require(self, scope: str) -> None:
        """Refuse with 403 unless the key has `scope` (admin keys have every scope)."""
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Problem(403, f"this API key lacks the '{scope}' scope")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Authenticator:
    """Looks keys up by hash, caching answers briefly (revocation takes effect within the TTL)."""

    def __init__(self, db: Database, *, ttl: float, rate: float, burst: int) -> None:
        self.db = db
        self.ttl = ttl
        self.rate = rate
        self.burst = burst
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}
        self._buckets: dict[bytes, _Bucket] = {}
        self._lookups: dict[bytes, asyncio.Future[Caller | None]] = {}

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an `Authorization: Bearer <key>` header, or a 401."""
        if not authorization:
            raise _unauthorized("send an API key as 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _unauthorized("the Authorization header must be 'Bearer <key>'")
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            caller = cached[1]
        else:
            caller = await self._shared_lookup(digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, caller)
        if caller is None:
            raise _unauthorized("unknown or revoked API key")
        self._throttle(digest, now)
        return caller

    async def _shared_lookup(self, digest: bytes) -> Caller | None:
        # Requests that miss the cache at the same moment share one query instead of one each.
        pending = self._lookups.get(digest)
        if pending is None:
            pending = self._lookups[digest] = asyncio.ensure_future(self._lookup(digest))
            pending.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(pending)

    async def _lookup(self, digest: bytes) -> Caller | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT tenant_id, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", digest
            )
        if row is None:
            return None
        return Caller(tenant_id=row["tenant_id"], scopes=frozenset(row["scopes"]), key_hash=digest)

    def _throttle(self, digest: bytes, now: float) -> None:
        if self.rate <= 0:
            return
        bucket = self._buckets.get(digest)
        if bucket is None:
            bucket = self._buckets[digest] = _Bucket(tokens=float(self.burst), updated=now)
        # `now` was read before the key lookup awaited; a request that overtook it may have moved `updated` on.
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens < 1.0:
            retry = max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
            raise Problem(429, "rate limit exceeded for this API key; retry later",
                          headers={"Retry-After": str(retry)})
        bucket.tokens -= 1.0


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="fastloans"'})
