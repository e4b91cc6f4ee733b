"""The reason-code catalogue: code -> plain-language adverse-action text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Final

import yaml


@cache
def reason_catalogue() -> Mapping[str, str]:
    """Return the catalogue shipped with the package (read once)."""
    text = resources.files(__package__).joinpath("reasons.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(
        isinstance(code, str) and isinstance(reason, str) for code, reason in data.items()
    ):
        raise ValueError("reasons.yaml must map reason codes to texts")
    return MappingProxyType(dict(data))


def reason_text(code: str) -> str:
    """Return the applicant-facing text of ``code``; unknown codes raise ``KeyError``."""
    return reason_catalogue()[code]


#: What a notice reason must name, per factor it explains: every group, by one of its terms (case-insensitive,
#: whole words). A ratio names both of its facts.
FACTOR_TERMS: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    "credit_score": (("credit score",),),
    "debt_to_income": (("debt", "debts", "obligations"), ("income",)),
    "loan_to_income": (("amount of credit", "amount requested", "loan amount", "amount borrowed"), ("income",)),
    "employment_status": (
        ("employment", "employed", "self-employed", "self-employment", "unemployed", "retirement", "education"),
    ),
    "loan_purpose": (("purpose",),),
}
#: Phrases that point at the lender's own standards or scoring instead of the applicant's facts: Regulation B
#: (12 CFR 1002.9(b)(2), official interpretation 2) holds such statements insufficient as principal reasons.
NON_SPECIFIC: Final = (
    "internal policy",
    "internal policies",
    "internal standards",
    "internal criteria",
    "credit policy",
    "lending policy",
    "policy reasons",
    "scoring system",
    "risk score",
    "qualifying score",
    "score too low",
    "insufficient score",
    "did not qualify",
    "does not qualify",
    "not meet our criteria",
    "other reasons",
    "various reasons",
)


def _says(text: str, term: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text, re.IGNORECASE) is not None


def vagueness(factor: str, text: str) -> str | None:
    """Why ``text`` is too vague to explain ``factor`` in an adverse-action notice, or None if it is specific.

    Vague means: it uses a non-specific phrase (``NON_SPECIFIC``), or it does not name the factor, that is some
    group of ``FACTOR_TERMS[factor]`` has none of its terms in it (so "Score too low" explains no factor).
    """
    for phrase in NON_SPECIFIC:
        if _says(text, phrase):
            return f"it says {phrase!r}, which names none of the applicant's facts"
    for group in FACTOR_TERMS[factor]:
        if not any(_says(text, term) for term in group):
            return f"it does not name the factor {factor} (it needs one of: {', '.join(repr(t) for t in group)})"
    return None
