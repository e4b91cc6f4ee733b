"""A steady client load on the gateway from the host: applications at a fixed rate, every answer recorded.

Each application gets its own Idempotency-Key and is retried with that same key after a 503 (waiting its
Retry-After) or a request that got no answer (a connection error or a timeout), as a careful client does, until
the gateway acknowledges it (2xx). Every acknowledged id and every failed attempt (any answer other than 2xx, or
no answer) is kept with the phase it happened in, and the applications that needed a retry are counted, so that
a test can assert "no failure during the roll" and "every acknowledged application decided". The rate actually
reached is reported beside the one asked for: a starved client falls behind its schedule.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENCY_KEY_HEADER
from fastloans_gateway.schemas import EXAMPLE

GIVE_UP_SECONDS = 180.0  # one application's retries end after this long (it then counts as never acknowledged)
MAX_IN_FLIGHT = 400
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Failure:
    """One attempt that did not get a 2xx: its phase, what happened, and when (monotonic seconds)."""

    phase: str
    kind: str  # "503", "503 without Retry-After", "500", ..., or "connection: ConnectError"
    detail: str
    at: float


@dataclass
class Load:
    """Applications at `rate` per second to `base_url` with an API key; run with start() and stop()."""

    base_url: str
    api_key: str
    rate: float = 25.0
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (e.g. the Ingress's Host)
    phase: str = "warm-up"
    acknowledged: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (phase, monotonic time)
    failures: list[Failure] = field(default_factory=list)
    given_up: list[tuple[str, str]] = field(default_factory=list)  # (phase, last failure kind)
    sent: Counter = field(default_factory=Counter)  # first attempts per phase
    attempts: Counter = field(default_factory=Counter)  # every attempt per phase
    retried: Counter = field(default_factory=Counter)  # applications (by the phase they were sent in) retried
    not_sent: int = 0  # schedule slots skipped because MAX_IN_FLIGHT applications were under way
    started_at: float = 0.0
    stopped_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Load:
        """Start submitting in a background thread."""
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="k8s-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = GIVE_UP_SECONDS + 30) -> None:
        """Stop submitting new applications; wait until every application under way is acknowledged or given up."""
        self._stop.set()
        self.stopped_at = time.monotonic()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the load generator did not finish its applications under way"
        if self._error is not None:
            raise AssertionError(f"the load generator crashed: {self._error!r}") from self._error

    def failures_in(self, *phases: str) -> list[Failure]:
        """The failed attempts of these phases."""
        return [f for f in self.failures if f.phase in phases]

    def acknowledged_in(self, *phases: str) -> list[str]:
        """The ids acknowledged in these phases."""
        return [ident for ident, (phase, _) in self.acknowledged.items() if phase in phases]

    def acknowledged_after(self, moment: float) -> list[str]:
        """The ids acknowledged after a monotonic time."""
        return [ident for ident, (_, at) in self.acknowledged.items() if at > moment]

    def rate_reached(self) -> float:
        """Applications sent per second since start() (until stop())."""
        elapsed = (self.stopped_at or time.monotonic()) - self.started_at
        return sum(self.sent.values()) / elapsed if elapsed > 0 else 0.0

    def summary(self, *phases: str) -> str:
        """Sent, retried, attempts, acknowledged and failures by kind, for these phases (all when none is named)."""
        chosen = set(phases) or set(self.sent) | {f.phase for f in self.failures}
        kinds = Counter(f.kind for f in self.failures if f.phase in chosen)
        acked = sum(1 for phase, _ in self.acknowledged.values() if phase in chosen)
        sent = sum(self.sent[p] for p in chosen)
        retried = sum(self.retried[p] for p in chosen)
        attempts = sum(self.attempts[p] for p in chosen)
        text = f"{sent} applications ({retried} retried), {attempts} requests, {acked} acknowledged, "
        text += f"failures {dict(kinds) or 0}"
        if not phases:
            text += f"; {self.rate_reached():.1f} applications/s reached of {self.rate:g} asked"
            text += f", {self.not_sent} not sent (in-flight cap)" if self.not_sent else ""
        return text

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by stop()
            self._error = error

    async def _main(self) -> None:
        # A fresh connection per attempt (no keep-alive, no cap on connections, so no queue in the client and no
        # pooled connection outliving a timed-out request): a slow gateway shows as a timeout of a request it
        # received, never as the client's own queue. One client, so an attempt does not pay for a new one.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        tasks: set[asyncio.Task] = set()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=REQUEST_TIMEOUT, limits=limits
        ) as client:
            while not self._stop.is_set():
                if len(tasks) < MAX_IN_FLIGHT:
                    task = asyncio.create_task(self._submit(client, self.phase))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.not_sent += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)

    async def _submit(self, client: httpx.AsyncClient, phase: str) -> None:
        """One application, retried with its key until acknowledged; failures recorded in the current phase."""
        headers = {"Authorization": f"Bearer {self.api_key}", IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4())}
        self.sent[phase] += 1
        give_up = time.monotonic() + GIVE_UP_SECONDS
        kind = ""
        tries = 0
        while time.monotonic() < give_up:
            current = self.phase
            self.attempts[current] += 1
            tries += 1
            if tries == 2:  # an application is counted once, however many retries it needed
                self.retried[phase] += 1
            wait = 0.5
            try:
                response = await client.post(APPLICATIONS_PATH, json=EXAMPLE, headers=headers)
            except httpx.TransportError as error:
                kind = f"connection: {type(error).__name__}"
                self.failures.append(Failure(current, kind, str(error)[:200], time.monotonic()))
            else:
                if response.is_success:
                    self.acknowledged[response.json()["id"]] = (current, time.monotonic())
                    return
                kind = str(response.status_code)
                retry_after = response.headers.get("Retry-After")
                if response.status_code == 503 and retry_after is None:
                    kind = "503 without Retry-After"
                self.failures.append(Failure(current, kind, response.text[:200], time.monotonic()))
                if response.status_code < 500 and response.status_code != 429:
                    break  # the request itself is wrong: retrying cannot help
                wait = min(float(retry_after or 1), 5.0)
            await asyncio.sleep(wait)
        self.given_up.append((phase, kind))


def get_decided(
    base_url: str, api_key: str, ident: str, timeout: float = 60.0, headers: dict[str, str] | None = None
) -> dict:
    """GET an application until it is decided (long-polling ?wait=); its body."""
    end = time.monotonic() + timeout
    body: dict = {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=15.0) as client:
        while time.monotonic() < end:
            try:
                response = client.get(
                    f"{APPLICATIONS_PATH}/{ident}", params={"wait": 5}, headers={"Authorization": f"Bearer {api_key}"}
                )
            except httpx.TransportError:
                time.sleep(1)
                continue
            if response.status_code == 200:
                body = response.json()
                if body["status"] != "pending" and body["decided_at"] is not None:
                    return body
            else:
                time.sleep(1)
    raise AssertionError(f"application {ident} not decided within {timeout:.0f} s (last: {body})")
