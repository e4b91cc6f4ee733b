"""The recorder's own Prometheus metrics (conventions in `fastloans.metrics`)."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Histogram

from fastloans.events import ApplicationDecided
from fastloans.policy import reason_catalogue

DECISION_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

DECISIONS = Counter(
    "fastloans_decisions_total", "Decisions recorded, by outcome and policy version.", ["outcome", "policy_version"]
)
DECISION_REASONS = Counter(
    "fastloans_decision_reasons_total",
    "Principal reasons given with recorded decisions, by reason code.",
    ["code"],
)
SUBMISSION_TO_DECISION = Histogram(
    "fastloans_submission_to_decision_seconds",
    "Time from an application's submission to its recorded decision (from its own timestamps).",
    buckets=DECISION_BUCKETS,
)

REVIEW_CASES_OPENED = Counter(
    "fastloans_review_cases_opened",
    "Review cases opened for referred decisions (once per application revision).",
)
REVIEW_DECISIONS_APPLIED = Counter(
    "fastloans_review_decisions_applied",
    "Reviewers' decisions applied to referred applications, by outcome.",
    ["outcome"],
)

# Every outcome a decision event can carry.
OUTCOMES: tuple[str, ...] = get_args(ApplicationDecided.model_fields["outcome"].annotation)


def declare_decisions(policy_version: str) -> None:
    """Create the decision counters at zero: each outcome under `policy_version`, each catalogued reason code."""
    for outcome in OUTCOMES:
        DECISIONS.labels(outcome, policy_version)
    for code in reason_catalogue():
        DECISION_REASONS.labels(code)
    for outcome in ("approved", "rejected"):
        REVIEW_DECISIONS_APPLIED.labels(outcome)
