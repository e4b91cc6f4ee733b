"""A hostile source mixed into the chaos load: oversized and malformed headers and bodies.

Some go through the API and must be refused with a 4xx, or accepted (202) and
then decided like any application; the others are written straight to the
topics or the outbox, where the pipeline can only dead-letter them. Each of
those carries a key of its own, so that the run can check afterwards that
every one reached the dead-letter topic and that the pipeline went on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
import orjson

from bench.workload import application
from fastloans.events import Topic
from fastloans.kafka import make_producer, send_all
from fastloans.settings import Settings
from tests.chaos.load import URL, LoadStats, Tracked
from tests.poison_messages import (
    LATEST_POLICY_SQL,
    PARENT,
    decision_near_limit,
    event_ids,
    scored_with_huge_reason,
    submission_near_limit,
)

# Through the API: (name, weight).
HTTP_KINDS = (
    ("tracestate-huge", 2),
    ("trace-malformed", 3),
    ("headers-many", 1),
    ("body-huge", 2),
    ("body-malformed", 3),
)
# Straight to Kafka or the outbox, each ending in the dead-letter topic: (name, weight). The ~1 MB ones are rarer.
DIRECT_KINDS = (
    ("submitted-undecodable", 3),
    ("submitted-score-too-large", 1),
    ("scored-decision-too-large", 1),
    ("decided-unknown-huge", 1),
    ("outbox-row-too-large", 1),
    ("outbox-trace-huge", 2),
)


@dataclass
class PoisonStats:
    """What the poison source sent and how the API answered."""

    sent: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    refused: int = 0
    server_errors: int = 0
    dead_letter_keys: set[bytes] = field(default_factory=set)
    dead_lettered: int = 0

    @property
    def missing(self) -> int:
        """Direct poison not found in the dead-letter topic."""
        return len(self.dead_letter_keys) - self.dead_lettered

    @property
    def ok(self) -> bool:
        """Every direct poison dead-lettered, no 5xx for any poison request."""
        return self.missing == 0 and self.server_errors == 0

    def summary(self) -> str:
        """One `poison[...]` field for the report line."""
        answers = ",".join(f"{code}:{n}" for code, n in sorted(self.answers.items()))
        return (
            f"poison[sent={sum(self.sent.values())} http_refused={self.refused} http_accepted={self.accepted} "
            f"http_5xx={self.server_errors} http_answers={answers or '-'} direct={len(self.dead_letter_keys)} "
            f"dead_lettered={self.dead_lettered} missing={self.missing}]"
        )


class PoisonSource:
    """Sends one poison message every `interval` seconds, of a kind drawn at random (seeded)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        api_urls: list[str],
        api_key: str,
        load: LoadStats,
        *,
        interval: float,
        seed: int,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.api_urls = api_urls
        self.api_key = api_key
        self.load = load
        self.interval = interval
        self.rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - reproducible load, not secrets
        self.stats = PoisonStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Send no more."""
        self._stop.set()

    async def run(self) -> None:
        """Send until stopped."""
        if self.interval <= 0:
            return
        producer = make_producer(self.settings)
        await self._retry(producer.start)
        kinds = [(kind, weight, True) for kind, weight in HTTP_KINDS] + [(k, w, False) for k, w in DIRECT_KINDS]
        try:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30) as http:
                while not self._stop.is_set():
                    kind, _, through_api = self.rng.choices(kinds, weights=[w for _, w, _ in kinds])[0]
                    if through_api:
                        await self._http(http, kind)
                    else:
                        await self._direct(producer, kind)
                    self.stats.sent[kind] += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.interval)
        finally:
            await producer.stop()

    # -- through the API ------------------------------------------------------

    async def _http(self, http: httpx.AsyncClient, kind: str) -> None:
        body = orjson.dumps(application(self.rng))
        headers: dict[str, str | bytes] = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        if kind == "tracestate-huge":
            headers |= {"traceparent": PARENT, "tracestate": "k=" + "v" * self.rng.randrange(600, 300_000)}
        elif kind == "trace-malformed":
            headers |= self.rng.choice(
                [
                    {"traceparent": PARENT.upper(), "tracestate": "a=1"},
                    {"traceparent": "ff" + PARENT[2:]},
                    {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},
                    {"traceparent": PARENT, "tracestate": ",".join(f"k{i}=v" for i in range(40))},
                    {"traceparent": PARENT, "tracestate": "Bad Key=\x7f"},
                    {"traceparent": PARENT.encode() + b"-\xe9x"},
                ]
            )
        elif kind == "headers-many":
            headers |= {f"x-junk-{i}": "j" * 200 for i in range(self.rng.randrange(50, 400))}
        elif kind == "body-huge":
            body = b'{"applicant_name": "' + b"a" * self.rng.randrange(20_000, 200_000) + b'"}'
        else:
            body = self.rng.choice(
                [
                    b"{not json",
                    b'{"applicant_name": "\\u0000"}',
                    b"\xff\xfe",
                    b"[" * 10_000,
                    b'{"credit_score": 1e999}',
                    orjson.dumps({**application(self.rng), "applicant_name": "nul\u0000name"}),
                ]
            )
        response = await self._post(http, body, headers)
        if response is None:
            return
        self.stats.answers[str(response.status_code)] += 1
        if response.status_code == 202:
            self.stats.accepted += 1
            tracked = Tracked(response.json()["id"])
            self.load.accepted[tracked.id] = tracked  # checked with the rest: decided, never dead-lettered
        elif 400 <= response.status_code < 500:
            self.stats.refused += 1
        else:
            self.stats.server_errors += 1

    async def _post(
        self, http: httpx.AsyncClient, body: bytes, headers: dict[str, str | bytes]
    ) -> httpx.Response | None:
        """POST, retried while a fault lasts (connection errors, 503, 429); other answers are final."""
        deadline = time.monotonic() + 120
        attempt = 0
        while time.monotonic() < deadline:
            url = self.api_urls[attempt % len(self.api_urls)] + URL
            attempt += 1
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code in {429, 503}:
                await asyncio.sleep(min(float(response.headers.get("retry-after", 1)), 5))
                continue
            return response
        return None

    # -- straight to Kafka or the outbox ------------------------------------------

    async def _direct(self, producer, kind: str) -> None:
        key = str(uuid.uuid4()).encode()
        limit = self.settings.kafka_max_message_bytes
        topic = self.settings.topic
        ids = event_ids(uuid.UUID(key.decode()))
        if kind == "submitted-undecodable":
            await self._send(
                producer,
                topic(Topic.SUBMITTED.value),
                key,
                b"{not json",
                [("tracestate", b"t" * self.rng.randrange(1, 600_000))],
            )
        elif kind == "submitted-score-too-large":
            value = submission_near_limit(ids, limit, [])
            await self._send(producer, topic(Topic.SUBMITTED.value), key, value, [])
        elif kind == "scored-decision-too-large":
            policy = await self.pool.fetchrow(LATEST_POLICY_SQL)
            if policy is None:
                return await self._direct(producer, "submitted-undecodable")
            scored = scored_with_huge_reason(ids, policy)
            await self._send(producer, topic(Topic.SCORED.value), key, scored.encode(), scored.headers())
        elif kind == "decided-unknown-huge":
            junk = [("x-junk", b"j" * 500_000)]
            value = decision_near_limit(ids, limit, junk)
            await self._send(producer, topic(Topic.DECIDED.value), key, value, junk)
        elif kind == "outbox-row-too-large":
            await self._outbox(topic(Topic.SUBMITTED.value), key, b"x" * (limit + 1000), {})
        else:  # outbox-trace-huge: the relay drops the trace headers, risk dead-letters the body
            await self._outbox(
                topic(Topic.SUBMITTED.value),
                key,
                b'{"type": "ApplicationSubmitted"}',
                {"traceparent": PARENT, "tracestate": "k=" + "v" * 1_200_000},
            )
        self.stats.dead_letter_keys.add(key)

    async def _send(self, producer, topic: str, key: bytes, value: bytes, headers: list) -> None:
        await self._retry(lambda: send_all(producer, [(topic, key, value, headers)]))

    async def _outbox(self, topic: str, key: bytes, payload: bytes, headers: dict[str, str]) -> None:
        await self._retry(
            lambda: self.pool.execute(
                "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb)",
                topic,
                key.decode(),
                payload,
                orjson.dumps(headers).decode(),
            )
        )

    @staticmethod
    async def _retry(action) -> None:
        """Run `action` until it succeeds: the broker or the database may be down for a fault."""
        for _ in range(120):
            try:
                await action()
                return
            except Exception:
                await asyncio.sleep(1)
        raise RuntimeError("poison could not be sent for two minutes")

    async def count_dead_letters(self, dead_letter_keys: set[bytes]) -> None:
        """Record how many of the direct poison keys reached the dead-letter topic."""
        self.stats.dead_lettered = len(self.stats.dead_letter_keys & dead_letter_keys)
