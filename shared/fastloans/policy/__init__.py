"""The credit policy as versioned data: scorecard, decision rules, reasons, hot reload."""

from .counteroffer import Change, Counteroffer, alternatives, counteroffer, what_would_change
from .engine import Assessment, Contribution, Decision, Score, decide, evaluate, principal_reasons, score
from .facts import EMPLOYMENT_STATUSES, FACTORS, LOAN_PURPOSES, ApplicationFacts
from .loader import (
    PolicyError,
    PolicyValidationError,
    check_policy_text,
    load_default_policy,
    load_policy,
    parse_policy,
    seed_policy_text,
)
from .model import OUTCOMES, Outcome, Policy
from .reasons import reason_catalogue, reason_text
from .store import PolicyStore

__all__ = [
    "EMPLOYMENT_STATUSES",
    "FACTORS",
    "LOAN_PURPOSES",
    "OUTCOMES",
    "ApplicationFacts",
    "Assessment",
    "Change",
    "Contribution",
    "Counteroffer",
    "Decision",
    "Outcome",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "PolicyValidationError",
    "Score",
    "alternatives",
    "check_policy_text",
    "counteroffer",
    "decide",
    "evaluate",
    "load_default_policy",
    "load_policy",
    "parse_policy",
    "principal_reasons",
    "reason_catalogue",
    "reason_text",
    "score",
    "seed_policy_text",
    "what_would_change",
]
