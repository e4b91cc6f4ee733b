"""The approval service: scored → decided, by the policy's decision rules."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from fastloans import services
from fastloans.events import ApplicationDecided, ApplicationScored, EventDecodeError, Referral, Topic
from fastloans.kafka import send_all, trace_headers
from fastloans.policy import ApplicationFacts, Contribution, Policy, Score, alternatives, decide, score
from fastloans.policy_runtime import PolicyWorker, facts_of, policy_ref
from fastloans.reviews import recommendation, refer_packet
from fastloans.runtime import run_worker
from fastloans.settings import Settings, load_settings


class ApprovalSettings(Settings):
    """Approval service settings (name, port and dependencies from the registry)."""

    service = services.APPROVAL


def contributions_of(event: ApplicationScored) -> tuple[Contribution, ...]:
    """The scorecard contributions carried by a scored event."""
    try:
        return tuple(
            Contribution(c["rule_id"], c["factor"], int(c["points"]), c["reason_code"], str(c["value"]))
            for c in event.contributions
        )
    except (KeyError, TypeError, ValueError) as error:
        raise EventDecodeError(f"invalid contributions: {error}") from None


def referral(policy: Policy, facts: ApplicationFacts, scored: Score) -> Referral:
    """What the review queue opens a referred application's case with: recommendation, deadlines, packet."""
    settings = policy.review_settings
    suggested = recommendation(policy, scored.risk_score, facts.loan_purpose, facts.employment_status)
    return Referral(
        recommendation=suggested if suggested in ("approve", "reject") else None,  # type: ignore[arg-type]
        deadline_days=settings.deadline_days,
        escalation_days=settings.escalation_days,
        second_person_for=list(settings.second_person_for),  # type: ignore[arg-type]
        packet=refer_packet(policy, facts, scored),
    )


def decided_event(policy: Policy, event: ApplicationScored, now: datetime) -> ApplicationDecided:
    """The decision on one scored application, with its counteroffer and what would change."""
    facts = facts_of(event.facts)
    risk_score, contributions = event.risk_score, contributions_of(event)
    if event.policy.hash != policy.content_hash:
        # Scored under another policy version (a rollout in progress): score again so that
        # one version makes the whole decision.
        rescored = score(policy, facts)
        risk_score, contributions = rescored.risk_score, rescored.contributions
    decision = decide(policy, facts, risk_score, contributions=contributions)
    # Computed here, with the policy version that made the decision: a few evaluations, adverse only.
    scored = Score(risk_score, contributions)
    offer, changes = alternatives(policy, facts, decision, scored)
    return ApplicationDecided(
        application_id=event.application_id,
        tenant_id=event.tenant_id,
        revision=event.revision,
        submitted_at=event.submitted_at,
        outcome=decision.outcome,
        risk_score=risk_score,
        contributions=[c.to_dict() for c in contributions],
        principal_reasons=[c.to_dict() for c in decision.principal_reasons],
        policy=policy_ref(policy),
        decided_at=now,
        challenger=event.challenger,
        counteroffer=offer,
        what_would_change=changes,
        referral=referral(policy, facts, scored) if decision.outcome == "referred" else None,
    )


class ApprovalWorker(PolicyWorker):
    """Decides every scored application."""

    input_topic = Topic.SCORED
    output_topic = Topic.DECIDED

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Decide a batch and produce every decision before returning."""
        scored = [ApplicationScored.decode(record.value) for record in records]
        policy = self.policies.champion.current
        now = datetime.now(UTC)
        messages = []
        for event, record in zip(scored, records, strict=True):
            decided = decided_event(policy, event, now)
            messages.append((self.output, record.key, decided.encode(), trace_headers(record) + decided.headers()))
        await send_all(self.producer, messages)


def main() -> None:
    """Console entry point: `fastloans-approval`."""
    run_worker(load_settings(ApprovalSettings), ApprovalWorker)
