"""The risk service: submitted → scored, with the champion policy (and the challenger in shadow)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from fastloans import services
from fastloans.events import ApplicationScored, ApplicationSubmitted, Topic
from fastloans.kafka import send_all, trace_headers
from fastloans.policy import evaluate, score
from fastloans.policy_runtime import PolicyWorker, facts_of, policy_ref
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings


class RiskSettings(Settings):
    """Risk service settings (name, port and dependencies from the registry)."""

    service = services.RISK


class RiskWorker(PolicyWorker):
    """Scores every submitted application."""

    input_topic = Topic.SUBMITTED
    output_topic = Topic.SCORED

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Score a batch and produce every score before returning."""
        submitted = [ApplicationSubmitted.decode(record.value) for record in records]
        policy = self.policies.champion.current
        challenger = self.policies.challenger.current if self.policies.challenger else None
        now = datetime.now(UTC)
        messages = []
        for event, record in zip(submitted, records, strict=True):
            facts = facts_of(event.facts)
            result = score(policy, facts)
            scored = ApplicationScored(
                application_id=event.application_id,
                tenant_id=event.tenant_id,
                revision=event.revision,
                submitted_at=event.submitted_at,
                facts=event.facts,
                risk_score=result.risk_score,
                contributions=[c.to_dict() for c in result.contributions],
                policy=policy_ref(policy),
                scored_at=now,
                challenger=evaluate(challenger, facts).to_dict() if challenger else None,
            )
            messages.append((self.output, record.key, scored.encode(), trace_headers(record) + scored.headers()))
        await send_all(self.producer, messages)


def main() -> None:
    """Console entry point: `fastloans-risk`."""
    run_worker(load_settings(RiskSettings), RiskWorker)
