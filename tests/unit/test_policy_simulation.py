"""The what-if report (without a database): tallies, confusion table, deterministic JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources

import pytest
from click.testing import CliRunner

from fastloans.policy import ApplicationFacts, load_default_policy, parse_policy, seed_policy_text
from fastloans_dev.policy.cli import _bound
from fastloans_dev.policy.cli import policy as policy_cli
from fastloans_dev.policy.replay import ReplayReport, asyncpg_dsn

pytestmark = pytest.mark.unit

#: A stricter candidate: approve only below 30, refer 30-59 unless debt consolidation.
STRICT = (
    seed_policy_text()
    .replace("version: seed-1", "version: strict-1")
    .replace(
        "  - id: approve-moderate-risk\n    outcome: approve\n",
        "  - id: refer-moderate-risk\n    outcome: refer\n",
    )
)

ROWS = [
    # credit, loan, income, debt, employment, purpose -> seed score/outcome, strict outcome
    (750, "2000", "5000", "1000", "employed", "home_improvement"),  # 20 approved / approved
    (650, "1000", "4000", "1200", "self-employed", "business"),  # 50 approved / referred
    (580, "2000", "3000", "1500", "unemployed", "debt_consolidation"),  # 115 rejected / rejected
    (650, "1000", "4000", "1000", "employed", "debt_consolidation"),  # 35 rejected / rejected
]


def report() -> ReplayReport:
    result = ReplayReport(active=load_default_policy(), candidate=parse_policy(STRICT, "strict.yaml"))
    for credit, loan, income, debt, employment, purpose in ROWS:
        result.add_row(
            {
                "credit_score": credit,
                "loan_amount": Decimal(loan),
                "monthly_income": Decimal(income),
                "monthly_debt": Decimal(debt),
                "employment_status": employment,
                "loan_purpose": purpose,
            }
        )
    result.add_row(
        {
            "credit_score": 700,
            "loan_amount": Decimal(1),
            "monthly_income": Decimal(0),
            "monthly_debt": Decimal(0),
            "employment_status": "employed",
            "loan_purpose": "auto",
        }
    )
    return result


def test_report_counts_outcomes_and_the_confusion_table() -> None:
    data = report().to_dict()
    assert data["count"] == 4
    assert data["skipped"] == 1
    assert data["changed"] == 1
    assert data["active"]["outcomes"] == {"approved": 2, "rejected": 2, "referred": 0}
    assert data["candidate"]["outcomes"] == {"approved": 1, "rejected": 2, "referred": 1}
    assert data["active"]["approval_rate"] == "0.5000"
    assert data["candidate"]["approval_rate"] == "0.2500"
    assert data["confusion"]["approved"] == {"approved": 1, "rejected": 0, "referred": 1}
    assert data["confusion"]["rejected"] == {"approved": 0, "rejected": 2, "referred": 0}
    assert data["active"]["score_histogram"] == [[20, 1], [35, 1], [50, 1], [115, 1]]
    assert data["active"]["principal_reason_mix"]["PURPOSE_DEBT_CONSOLIDATION"] == 1
    assert data["candidate"]["principal_reason_mix"]["PURPOSE_BUSINESS"] == 1
    assert data["inputs"]["candidate"]["version"] == "strict-1"


def test_report_json_is_deterministic() -> None:
    first = json.dumps(report().to_dict(), sort_keys=True, indent=2)
    second = json.dumps(report().to_dict(), sort_keys=True, indent=2)
    assert first == second
    assert "T" not in json.dumps(report().to_dict()["inputs"])  # no run timestamp inside


def test_empty_report_has_no_approval_rate() -> None:
    empty = ReplayReport(active=load_default_policy(), candidate=load_default_policy())
    assert empty.to_dict()["active"]["approval_rate"] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
        ("postgresql+asyncpg://u:p@h/db?ssl=require", "postgresql://u:p@h/db?ssl=require"),
        ("postgres://h/db", "postgresql://h/db"),
    ],
)
def test_database_urls_in_both_forms(url: str, expected: str) -> None:
    assert asyncpg_dsn(url) == expected


def test_other_database_urls_are_refused() -> None:
    with pytest.raises(ValueError):
        asyncpg_dsn("mysql://h/db")


def test_date_bounds() -> None:
    assert _bound("2024-03-01", end=False) == datetime(2024, 3, 1, tzinfo=UTC)
    assert _bound("2024-03-31", end=True) == datetime(2024, 4, 1, tzinfo=UTC)  # the whole last day
    assert _bound("2024-03-31T12:00:00", end=True) == datetime(2024, 3, 31, 12, tzinfo=UTC)
    assert _bound(None, end=True) is None


def test_simulate_needs_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with resources.as_file(resources.files("fastloans.policy") / "seed.yaml") as seed_path:
        result = CliRunner().invoke(policy_cli, ["simulate", str(seed_path)])
    assert result.exit_code == 2
    assert "DATABASE_READ_URL" in result.output


def test_show_prints_the_rules_as_tables() -> None:
    result = CliRunner().invoke(policy_cli, ["show"], env={"POLICY_FILE": ""})
    assert result.exit_code == 0, result.output
    assert "policy seed  version seed-1" in result.output
    assert "(0.43, +inf)" in result.output and "DEBT_TO_INCOME_EXCESSIVE" in result.output
    assert "score < 60 and loan_purpose not in {debt_consolidation}" in result.output


def test_facts_from_a_row_match_direct_construction() -> None:
    row = {
        "credit_score": 700,
        "loan_amount": Decimal("1.00"),
        "monthly_income": Decimal("2.00"),
        "monthly_debt": Decimal("0.00"),
        "employment_status": "student",
        "loan_purpose": "other",
    }
    assert ApplicationFacts.from_mapping(row) == ApplicationFacts(
        700, Decimal("1.00"), Decimal("2.00"), Decimal("0.00"), "student", "other"
    )
