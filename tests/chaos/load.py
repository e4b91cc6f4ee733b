"""An honest API client under faults: a steady rate of submissions, some changed or withdrawn afterwards.

Every request that fails with a 5xx, a 408, a 429 or a connection error is retried
(the same Idempotency-Key for submissions) with backoff, for a bounded time.
Only applications acknowledged with a 2xx count as accepted.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.workload import application
from fastloans.contracts import APPLICATIONS_PATH

URL = APPLICATIONS_PATH


@dataclass
class Tracked:
    """What the client knows about one accepted application."""

    id: str
    withdrawn: bool = False
    delete_sent: bool = False
    patches: int = 0


@dataclass
class LoadStats:
    """What happened on the client side."""

    accepted: dict[str, Tracked] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0
    rejected: int = 0
    unexpected_404: int = 0
    replayed: int = 0
    skipped: int = 0
    # Every attempt: (sent at, seconds to the answer, method, status; 0 when no answer came).
    answers: list[tuple[float, float, str, int]] = field(default_factory=list)
    unavailable_without_retry_after: int = 0

    @property
    def server_errors(self) -> int:
        """5xx answers other than 503 + Retry-After: an outage must answer 503, never 500."""
        statuses = ((key.split(" ", 1)[1], n) for key, n in self.attempts.items())
        other = sum(n for status, n in statuses if status.isdigit() and status[0] == "5" and status != "503")
        return other + self.unavailable_without_retry_after


class LoadGenerator:
    """Submits at `rate` per second to the gateways, round robin; changes or withdraws some applications."""

    def __init__(
        self,
        api_urls: list[str],
        api_key: str,
        *,
        rate: float,
        seed: int = 0,
        patch_share: float = 0.1,
        delete_share: float = 0.06,
        give_up_after: float = 180.0,
        max_in_flight: int = 400,
    ) -> None:
        self.api_urls = api_urls
        self.api_key = api_key
        self.rate = rate
        self.rng = random.Random(seed)  # noqa: S311 - reproducible load, not secrets
        self.patch_share = patch_share
        self.delete_share = delete_share
        self.give_up_after = give_up_after
        self.max_in_flight = max_in_flight
        self.stats = LoadStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = 0
        self._stop = asyncio.Event()
        self._http: httpx.AsyncClient | None = None

    async def run(self, duration: float) -> None:
        """Submit for `duration` seconds (open loop), then wait for every request in flight to settle."""
        # A connection for every request in flight: a queue in httpx's pool costs CPU per queued request on every
        # change, and a client starved that way stops sending (ConnectTimeout, PoolTimeout) while the gateway idles.
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self.api_key}"}, timeout=15, limits=limits
        ) as http:
            self._http = http
            started = time.monotonic()
            n = 0
            while not self._stop.is_set() and (elapsed := time.monotonic() - started) < duration:
                due = int(elapsed * self.rate) + 1
                while n < due:
                    n += 1
                    if len(self._tasks) >= self.max_in_flight:
                        self.stats.skipped += 1
                        continue
                    self._spawn(self._submit())
                await asyncio.sleep(min(0.05, 1 / self.rate))
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._http = None

    def stop(self) -> None:
        """Stop submitting new applications."""
        self._stop.set()

    @property
    def in_flight(self) -> int:
        """Requests (with their retries) not settled yet."""
        return len(self._tasks)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_url(self) -> str:
        self._turn += 1
        return self.api_urls[self._turn % len(self.api_urls)]

    async def _request(self, method: str, path: str, **kwargs: object) -> tuple[httpx.Response | None, int]:
        """One logical request, retried while its answer is a 5xx, a 408 or a 429; (answer or None, attempts)."""
        assert self._http is not None
        deadline = time.monotonic() + self.give_up_after
        backoff = 0.2
        attempts = 0
        while True:
            attempts += 1
            self.stats.retries += attempts > 1
            sent = time.monotonic()
            try:
                response = await self._http.request(method, self._next_url() + path, **kwargs)  # type: ignore[arg-type]
                self.stats.answers.append((sent, time.monotonic() - sent, method, response.status_code))
                self.stats.attempts[f"{method} {response.status_code}"] += 1
                # 408: the gateway's deadline for the request's head or body passed (a starved client); retry it.
                if response.status_code < 500 and response.status_code not in (408, 429):
                    return response, attempts
                if response.status_code == 503 and "retry-after" not in response.headers:
                    self.stats.unavailable_without_retry_after += 1
                wait = float(response.headers.get("retry-after", backoff))
            except httpx.TransportError as error:
                self.stats.answers.append((sent, time.monotonic() - sent, method, 0))
                self.stats.attempts[f"{method} {type(error).__name__}"] += 1
                wait = backoff
            if time.monotonic() + wait > deadline:
                return None, attempts
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 2.0)

    async def _submit(self) -> None:
        body = application(self.rng)
        key = str(uuid.uuid4())
        response, _ = await self._request("POST", URL, json=body, headers={"Idempotency-Key": key})
        if response is None:
            self.stats.abandoned += 1
            return
        if response.status_code != 202:
            self.stats.rejected += 1
            return
        if response.headers.get("idempotent-replayed") == "true":
            self.stats.replayed += 1
        tracked = Tracked(response.json()["id"])
        self.stats.accepted[tracked.id] = tracked
        roll = self.rng.random()
        if roll < self.patch_share + self.delete_share:
            self._spawn(
                self._change(
                    tracked, patch=roll < self.patch_share, delete=roll >= self.patch_share or self.rng.random() < 0.3
                )
            )

    async def _change(self, tracked: Tracked, *, patch: bool, delete: bool) -> None:
        await asyncio.sleep(self.rng.uniform(0, 3))
        if patch:
            response, _ = await self._request(
                "PATCH", f"{URL}/{tracked.id}", json={"credit_score": self.rng.randint(520, 840)}
            )
            if response is not None and response.status_code == 202:
                tracked.patches += 1
            elif response is not None:
                self.stats.unexpected_404 += response.status_code == 404
                self.stats.rejected += response.status_code != 404
        if delete:
            await asyncio.sleep(self.rng.uniform(0, 2))
            await self._withdraw(tracked)

    async def _withdraw(self, tracked: Tracked) -> None:
        tracked.delete_sent = True
        response, attempts = await self._request("DELETE", f"{URL}/{tracked.id}")
        if response is None:
            return
        if response.status_code == 204:
            tracked.withdrawn = True
        elif response.status_code == 404 and attempts > 1:
            # An earlier attempt's answer was lost; a 404 on the retry means it did withdraw.
            tracked.withdrawn = True
        else:
            self.stats.unexpected_404 += response.status_code == 404
            self.stats.rejected += response.status_code != 404
