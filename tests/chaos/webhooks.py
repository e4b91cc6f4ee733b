"""Webhooks under chaos: a receiver subscribed for the chaos tenant must get every decision, signed.

Every delivery is verified with `standardwebhooks` (the specification's own library) as it arrives. After the
pipeline has drained, each decision of an acknowledged application (every (application, revision, decider) on
the decided topic) must have reached the receiver; a repeat is allowed only under the same `webhook-id`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import httpx

from bench import checks
from fastloans import webhooks
from fastloans.contracts import WEBHOOK_ENDPOINTS_PATH
from fastloans.events import ApplicationDecided, Topic
from fastloans.settings import Settings
from fastloans.tenants import hash_key, issue_key
from tests.chaos.invariants import read_topic
from tests.chaos.load import LoadStats
from tests.webhook_receiver import Receiver, verifying

EVENT = "application.decided"


@dataclass
class WebhookVerdict:
    """Decisions expected at the receiver, those that arrived, and what arrived more than once or wrongly."""

    expected: int = 0
    delivered: int = 0
    missing: int = 0
    duplicated_by_id: int = 0
    # Deliveries of one decision under a `webhook-id` other than its own, and requests that failed verification.
    foreign: int = 0
    unverified: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every expected decision arrived, verified, each under its one `webhook-id`."""
        return self.expected > 0 and not (self.missing or self.foreign or self.unverified)

    def summary(self) -> str:
        """The counts, as `key=value` pairs."""
        return (
            f"webhooks[expected={self.expected} delivered={self.delivered} missing={self.missing} "
            f"duplicated_by_id={self.duplicated_by_id} foreign={self.foreign} unverified={self.unverified}]"
        )


class WebhookCheck:
    """A verifying receiver on loopback and the endpoint that points the chaos tenant's decisions at it."""

    def __init__(self, receiver: Receiver, endpoint: dict[str, str]) -> None:
        self.receiver = receiver
        self.endpoint = endpoint

    @classmethod
    async def subscribe(cls, primary_url: str, api_url: str, api_key: str) -> WebhookCheck:
        """Start the receiver and subscribe it for the tenant of `api_key` (with an admin key of that tenant)."""
        receiver = Receiver().start()
        try:
            admin = await admin_key(primary_url, api_key)
            async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {admin}"}) as http:
                response = await http.post(
                    WEBHOOK_ENDPOINTS_PATH,
                    json={"url": receiver.url, "event_types": [EVENT], "description": "chaos receiver"},
                    timeout=30,
                )
            response.raise_for_status()
        except BaseException:
            receiver.stop()
            raise
        endpoint = response.json()
        receiver.answer = verifying(endpoint["secret"])
        return cls(receiver, endpoint)

    def stop(self) -> None:
        """Stop the receiver."""
        self.receiver.stop()

    def tally(self, expected: dict[str, tuple[str, int, str]]) -> WebhookVerdict:
        """Compare what arrived with the expected `webhook-id` → (application, revision, decider)."""
        requests = self.receiver.all()
        verdict = WebhookVerdict(expected=len(expected))
        verdict.unverified = sum(1 for r in requests if r.status == 400)
        arrived = Counter(r.headers.get("webhook-id", "") for r in requests if 200 <= r.status < 300)
        verdict.delivered = len(set(expected) & set(arrived))
        verdict.missing = verdict.expected - verdict.delivered
        verdict.duplicated_by_id = sum(n - 1 for n in arrived.values())
        own = {decision: ident for ident, decision in expected.items()}
        for request in requests:
            data = request.event.get("data", {})
            decision = (str(data.get("application_id")), int(data.get("revision", 0)), str(data.get("decided_by")))
            if 200 <= request.status < 300 and decision in own and own[decision] != request.headers["webhook-id"]:
                verdict.foreign += 1
                _note(verdict, f"{decision[0]} revision {decision[1]} arrived as {request.headers['webhook-id']}")
        for ident, (application, revision, decider) in expected.items():
            if ident not in arrived:
                _note(verdict, f"webhook for {application} revision {revision} ({decider}) never arrived ({ident})")
        return verdict

    async def verify(
        self,
        settings: Settings,
        stats: LoadStats,
        *,
        within: float,
        progress: Callable[[str], None] = lambda _: None,
    ) -> WebhookVerdict:
        """Once the pipeline has drained: wait (bounded) for every decision to arrive, then count."""
        expected = await expected_deliveries(settings, {t.id for t in stats.accepted.values()})

        async def missing() -> dict[str, int]:
            return {"webhooks_missing": self.tally(expected).missing}

        await checks.wait_drained(missing, within=within, interval=2, progress=progress)
        return self.tally(expected)


async def expected_deliveries(settings: Settings, accepted: set[str]) -> dict[str, tuple[str, int, str]]:
    """The `webhook-id` of every decision of the accepted applications on the decided topic (a reviewer's
    decision is one of its own: its key and `webhook-id` differ from those of the policy's)."""
    expected: dict[str, tuple[str, int, str]] = {}
    for key, value in await read_topic(settings, Topic.DECIDED.value):
        if key.decode(errors="replace") in accepted:
            event = ApplicationDecided.decode(value)
            expected[webhooks.message_id(webhooks.decided_key(event))] = (
                str(event.application_id),
                event.revision,
                event.decided_by,
            )
    return expected


async def admin_key(primary_url: str, api_key: str) -> str:
    """A new admin key of the tenant `api_key` belongs to."""
    conn = await asyncpg.connect(primary_url)
    try:
        tenant = await conn.fetchval(
            "SELECT t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1",
            hash_key(api_key),
        )
        if tenant is None:
            raise LookupError("the load's API key is not registered")
        return (await issue_key(conn, tenant, scopes=("admin",))).key
    finally:
        await conn.close()


def _note(verdict: WebhookVerdict, problem: str) -> None:
    if len(verdict.examples) < 10:
        verdict.examples.append(problem)
