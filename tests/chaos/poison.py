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
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson

from bench.workload import application
from fastloans.events import ApplicationDecided, ApplicationScored, ApplicationSubmitted, Facts, PolicyRef, Topic
from fastloans.kafka import make_producer, message_size, send_all
from fastloans.settings import Settings
from tests.chaos.load import URL, LoadStats, Tracked

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FACTS = {
    "credit_score": 750,
    "loan_amount": "2000.00",
    "monthly_income": "5000.00",
    "monthly_debt": "1000.00",
    "employment_status": "employed",
    "loan_purpose": "home_improvement",
}
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
        ids = {
            "application_id": uuid.UUID(key.decode()),
            "tenant_id": uuid.uuid4(),
            "revision": 1,
            "submitted_at": datetime.now(UTC),
        }
        if kind == "submitted-undecodable":
            await self._send(
                producer,
                topic(Topic.SUBMITTED.value),
                key,
                b"{not json",
                [("tracestate", b"t" * self.rng.randrange(1, 600_000))],
            )
        elif kind == "submitted-score-too-large":

            def build(zeros: int) -> bytes:
                facts = Facts(**{**FACTS, "monthly_debt": "1000." + "0" * zeros})
                return ApplicationSubmitted(**ids, facts=facts).encode()

            value = build(limit - 100 - message_size(key, build(0), []))
            await self._send(producer, topic(Topic.SUBMITTED.value), key, value, [])
        elif kind == "scored-decision-too-large":
            policy = await self.pool.fetchrow(
                "SELECT policy_name AS name, policy_version AS version, policy_hash AS hash "
                "FROM loan_decisions ORDER BY decided_at DESC LIMIT 1"
            )
            if policy is None:
                return await self._direct(producer, "submitted-undecodable")
            reason = {
                "rule_id": "credit_score",
                "factor": "credit_score",
                "points": 30,
                "reason_code": "CREDIT_SCORE_LOW",
                "value": "v" * 600_000,
            }
            scored = ApplicationScored(
                **ids,
                facts=Facts(**FACTS),
                risk_score=100,
                contributions=[reason],
                policy=PolicyRef(**dict(policy)),
                scored_at=datetime.now(UTC),
            )
            await self._send(producer, topic(Topic.SCORED.value), key, scored.encode(), scored.headers())
        elif kind == "decided-unknown-huge":
            junk = [("x-junk", b"j" * 500_000)]

            def decision(padding: int) -> bytes:
                return ApplicationDecided(
                    **ids,
                    outcome="approved",
                    risk_score=0,
                    contributions=[],
                    principal_reasons=[],
                    policy=PolicyRef(name="p", version="1", hash="h"),
                    decided_at=datetime.now(UTC),
                    challenger={"padding": "x" * padding},
                ).encode()

            value = decision(limit - 100 - message_size(key, decision(0), junk))
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
