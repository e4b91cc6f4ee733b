"""API-key authentication, scopes, throttling of failed attempts and per-tenant rate limits."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fastloans.db import Database
from fastloans.tenants import hash_key
from fastloans_gateway.metrics import AUTH_LOOKUPS, declare_reviewer
from fastloans_gateway.problems import Problem
from fastloans_gateway.ratelimit import Limit, TenantLimiter
from fastloans_gateway.settings import GatewaySettings

# Failed attempts from IPv6 clients are counted per /64: one host usually holds a whole one.
IPV6_CLIENT_PREFIX = 64

# The longest a request waits for its address's lookups in flight to hand back an attempt.
LOOKUP_WAIT_SECONDS = 5.0

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Caller:
    """The tenant behind a request's API key and what the key may do."""

    tenant_id: uuid.UUID
    scopes: frozenset[str]
    key_hash: bytes = field(repr=False)
    limit: Limit | None = None
    # The person behind the key (`fastloans keys create --actor`), recorded with every review action.
    actor: str | None = None

    def require(self, scope: str) -> None:
        """Refuse with 403 unless the key has `scope` (admin keys have every scope)."""
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Problem(403, f"this API key lacks the '{scope}' scope")


class LRU(Generic[K, V]):
    """A dictionary of at most `size` entries that forgets the least recently used one first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for `key` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value`, evicting the least recently used entry when full."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget `key`."""
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """A token bucket per client address for failed authentications (unknown or revoked keys)."""

    def __init__(self, *, rate: float, burst: int, size: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: LRU[str, _Bucket] = LRU(size)

    def take(self, client: str, now: float) -> int | None:
        """Spend one attempt of `client`: None if it had one, else seconds until it has one again."""
        if self.rate <= 0:
            return None
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets.put(client, bucket)
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens < 1.0:
            return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
        bucket.tokens -= 1.0
        return None

    def give_back(self, client: str) -> None:
        """Return the attempt spent on a key that turned out to be valid."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)


def client_address(client: tuple[str, int] | list[object] | None) -> str:
    """The address failed attempts are counted by: the ASGI client host, IPv6 by its /64."""
    if not client:
        return "unknown"
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


class Authenticator:
    """Looks keys up by hash, caching answers briefly (revocation takes effect within the TTL).

    Valid and unknown keys are cached apart, each in a bounded LRU, so a flood of unknown
    keys evicts only unknown keys. A key never seen valid costs a database query only while
    its client address has attempts left; a key seen valid before is always looked up again.
    """

    def __init__(
        self,
        db: Database,
        *,
        ttl: float,
        cache_size: int,
        failures: FailureThrottle,
        limiter: TenantLimiter | None,
        rate: float,
        burst: int,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.failures = failures
        self.limiter = limiter
        self.rate = rate
        self.burst = burst
        self.default_limit = Limit.of(rate, burst) if rate > 0 else None
        self._known: LRU[bytes, tuple[float, Caller]] = LRU(cache_size)
        self._unknown: LRU[bytes, float] = LRU(cache_size)
        self._lookups: dict[bytes, asyncio.Future[Caller | None]] = {}
        # The attempts each address has spent on lookups still in flight (given back when the key is valid).
        self._held: dict[str, int] = {}
        self._released = asyncio.Condition()

    @classmethod
    def from_settings(cls, db: Database, settings: GatewaySettings) -> Authenticator:
        """An authenticator with the gateway's cache, failure and rate-limit settings (call it in the lifespan)."""
        limiter = TenantLimiter(db, interval=settings.rate_limit_sync_ms / 1000)
        if settings.rate_limit_per_second > 0:
            limiter.start()  # else only once a tenant with its own limit is seen
        return cls(
            db,
            ttl=settings.auth_cache_seconds,
            cache_size=settings.auth_cache_size,
            failures=FailureThrottle(
                rate=settings.auth_failure_rate_per_second,
                burst=settings.auth_failure_burst,
                size=settings.auth_cache_size,
            ),
            limiter=limiter,
            rate=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
        )

    async def authenticate(self, authorization: str | None, client: tuple[str, int] | None = None) -> Caller:
        """The caller for an `Authorization: Bearer <key>` header, or a 401 (429 when over a limit)."""
        if not authorization:
            raise _unauthorized("send an API key as 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _unauthorized("the Authorization header must be 'Bearer <key>'")
        digest = hash_key(key)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            caller = known[1]
        else:
            caller = await self._look_up(digest, known is not None, client_address(client), now)
        if self.limiter is not None and caller.limit is not None:
            wait = await self.limiter.admit(caller.tenant_id, caller.limit)
            if wait is not None:
                raise Problem(
                    429, "rate limit exceeded for this tenant; retry later", headers={"Retry-After": str(wait)}
                )
        return caller

    async def _look_up(self, digest: bytes, was_valid: bool, address: str, now: float) -> Caller:
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and unknown_until > now:
            self._refuse(address, now)
        # Attempts are spent before the query, so concurrent guesses cannot all slip through. A request that
        # joins a lookup already in flight for the same key spends nothing: a new valid key arriving on many
        # requests at once (the first traffic of a client, a slow database) is one attempt, not one per request.
        spent = not was_valid and digest not in self._lookups
        if spent:
            await self._spend_or_wait(address)
            self._held[address] = self._held.get(address, 0) + 1
            caller = None
            try:
                caller = await self._shared_lookup(digest)
            finally:
                await self._release(address, give_back=caller is not None)
        else:
            caller = await self._shared_lookup(digest)
        if caller is None:
            self._known.pop(digest)
            if self.ttl > 0:
                self._unknown.put(digest, now + self.ttl)
            if not spent:
                self._refuse(address, now)
            raise _unauthorized("unknown or revoked API key")
        self._unknown.pop(digest)
        # Kept after it expires too: a key once valid is looked up again whatever its address's failures.
        self._known.put(digest, (now + self.ttl, caller))
        return caller

    def _spend(self, address: str, now: float) -> None:
        wait = self.failures.take(address, now)
        if wait is not None:
            raise _throttled(wait)

    async def _spend_or_wait(self, address: str) -> None:
        """Spend an attempt before a lookup. While the address's attempts are all held by lookups still in
        flight (each given back if its key is valid), wait for one of them rather than refuse: many new valid
        keys from one address (a client behind one proxy, a pod's first seconds) are not guesses."""
        async with self._released:
            while True:
                wait = self.failures.take(address, time.monotonic())
                if wait is None:
                    return
                if not self._held.get(address):
                    raise _throttled(wait)
                try:
                    await asyncio.wait_for(self._released.wait(), LOOKUP_WAIT_SECONDS)
                except TimeoutError:
                    raise _throttled(wait) from None

    async def _release(self, address: str, *, give_back: bool) -> None:
        """A lookup that spent an attempt ended: give the attempt back if the key was valid, wake the waiting."""
        async with self._released:
            held = self._held.get(address, 0) - 1
            if held > 0:
                self._held[address] = held
            else:
                self._held.pop(address, None)
            if give_back:
                self.failures.give_back(address)
            self._released.notify_all()

    def _refuse(self, address: str, now: float) -> None:
        self._spend(address, now)
        raise _unauthorized("unknown or revoked API key")

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
                "SELECT k.tenant_id, k.scopes, k.actor, t.rate_limit_per_second, t.rate_limit_burst "
                "FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                "WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                digest,
            )
        if row is None:
            AUTH_LOOKUPS.labels("unknown").inc()
            return None
        AUTH_LOOKUPS.labels("valid").inc()
        if row["actor"] and "review" in row["scopes"]:
            declare_reviewer(row["actor"])
        return Caller(
            tenant_id=row["tenant_id"],
            scopes=frozenset(row["scopes"]),
            key_hash=digest,
            limit=self._limit(row["rate_limit_per_second"], row["rate_limit_burst"]),
            actor=row["actor"],
        )

    def _limit(self, rate: float | None, burst: int | None) -> Limit | None:
        # A tenant's own values replace the defaults one by one; a rate of 0 means unlimited.
        if rate is None and burst is None:
            return self.default_limit
        rate = self.rate if rate is None else rate
        burst = self.burst if burst is None else burst
        return Limit.of(rate, burst) if rate > 0 else None

    async def stop(self) -> None:
        """Stop the rate limiter's synchronisation."""
        if self.limiter is not None:
            await self.limiter.stop()


def _throttled(wait: int) -> Problem:
    return Problem(
        429, "too many failed authentications from this address; retry later", headers={"Retry-After": str(wait)}
    )


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="fastloans"'})
