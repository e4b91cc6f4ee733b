"""Champion versus challenger counts, from the rows of the agreement query."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fastloans.policy.agreement import agreement_from_rows

pytestmark = pytest.mark.unit

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, tzinfo=UTC)


def row(champion: str, challenger: str, champion_version: str, decisions: int, challenger_version: str = "c-1"):
    return {
        "champion": champion,
        "challenger": challenger,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "decisions": decisions,
    }


def test_counts_agreement_confusion_and_version_pairs() -> None:
    report = agreement_from_rows(
        [
            row("approved", "approved", "v1", 5),
            row("approved", "referred", "v1", 2),
            row("rejected", "rejected", "v2", 3),
            row("approved", "approved", "v2", 1),
            row("rejected", "approved", "v2", 1, "c-2"),
        ],
        SINCE,
        UNTIL,
    )
    data = report.to_dict()
    assert (data["decisions"], data["agreed"], data["agreement_rate"]) == (12, 9, "0.7500")
    assert data["confusion"] == {
        "approved": {"approved": 6, "rejected": 0, "referred": 2},
        "rejected": {"approved": 1, "rejected": 3, "referred": 0},
        "referred": {"approved": 0, "rejected": 0, "referred": 0},
    }
    assert data["policies"] == [
        {"champion_version": "v1", "challenger_version": "c-1", "decisions": 7, "agreed": 5},
        {"champion_version": "v2", "challenger_version": "c-1", "decisions": 4, "agreed": 4},
        {"champion_version": "v2", "challenger_version": "c-2", "decisions": 1, "agreed": 0},
    ]
    assert (data["since"], data["until"]) == (SINCE.isoformat(), UNTIL.isoformat())


def test_no_decisions_has_no_rate() -> None:
    data = agreement_from_rows([]).to_dict()
    assert (data["decisions"], data["agreed"], data["agreement_rate"], data["policies"]) == (0, 0, None, [])
    assert data["since"] is None and data["until"] is None
