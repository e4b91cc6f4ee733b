"""`fastloans policy check` refuses notice reasons that are not in the catalogue or are vague."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fastloans.policy import reason_catalogue, seed_policy_text
from fastloans.policy.loader import check_notice_reasons
from fastloans.policy.reasons import vagueness
from fastloans_dev.policy.cli import policy as policy_cli

pytestmark = pytest.mark.unit

SEED = seed_policy_text()
# The factor each family of codes in the shipped catalogue explains.
FAMILIES = {
    "CREDIT_SCORE_": "credit_score",
    "DEBT_TO_INCOME_": "debt_to_income",
    "LOAN_TO_INCOME_": "loan_to_income",
    "EMPLOYMENT_": "employment_status",
    "PURPOSE_": "loan_purpose",
}


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_seed_policy_and_every_catalogue_text_are_specific() -> None:
    assert check_notice_reasons(SEED) == []
    for code, text in reason_catalogue().items():
        factor = next(factor for prefix, factor in FAMILIES.items() if code.startswith(prefix))
        assert vagueness(factor, text) is None, code


@pytest.mark.parametrize(
    ("factor", "text", "why"),
    [
        ("credit_score", "Internal policy", "'internal policy'"),
        ("credit_score", "Does not meet our internal standards", "'internal standards'"),
        ("credit_score", "Score too low", "'score too low'"),
        ("credit_score", "Risk score above our limit", "'risk score'"),
        ("credit_score", "Failed to achieve a qualifying score", "'qualifying score'"),
        ("credit_score", "Insufficient rating", "does not name the factor credit_score"),
        ("debt_to_income", "Obligations too high", "needs one of: 'income'"),
        ("debt_to_income", "Credit score below our lending threshold", "does not name the factor debt_to_income"),
        ("loan_to_income", "Too much in relation to income", "does not name the factor loan_to_income"),
        ("loan_purpose", "Business loans are riskier", "does not name the factor loan_purpose"),
        ("employment_status", "Applicants in your situation are riskier", "does not name the factor employment_status"),
    ],
)
def test_vague_means_a_non_specific_phrase_or_no_name_for_the_factor(factor: str, text: str, why: str) -> None:
    problem = vagueness(factor, text)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    ("factor", "text"),
    [
        ("credit_score", "Credit score well below our lending threshold"),
        ("debt_to_income", "Existing DEBT payments are high in relation to INCOME"),
        ("loan_to_income", "Loan amount is high in relation to income"),
        ("employment_status", "No current income from employment"),
        ("loan_purpose", "Purpose of the loan (business financing) carries higher repayment risk"),
    ],
)
def test_a_reason_that_names_its_factor_is_specific(factor: str, text: str) -> None:
    assert vagueness(factor, text) is None


def test_a_reason_code_of_another_factor_is_refused_at_its_line() -> None:
    # A debt-to-income band explained by a credit-score reason: the notice would state the wrong fact.
    text = SEED.replace(
        '{range: "(0.28, 0.36]", points: 10, reason_code: DEBT_TO_INCOME_ELEVATED}',
        '{range: "(0.28, 0.36]", points: 10, reason_code: CREDIT_SCORE_LOW}',
    )
    [error] = check_notice_reasons(text, "p.yaml")
    assert error.line == line_of(text, '"(0.28, 0.36]"')
    assert "rule 'debt-to-income': reason 'CREDIT_SCORE_LOW'" in error.message
    assert "does not name the factor debt_to_income" in error.message


def test_vague_or_missing_catalogue_texts_are_refused() -> None:
    catalogue = {**reason_catalogue(), "EMPLOYMENT_NONE": "Internal policy"}
    del catalogue["PURPOSE_BUSINESS"]
    errors = check_notice_reasons(SEED, "p.yaml", catalogue)
    assert [(error.line, error.message.split(":")[0]) for error in errors] == [
        (line_of(SEED, "unemployed:"), "rule 'employment'"),
        (line_of(SEED, "business:"), "rule 'purpose'"),
    ]
    assert "'internal policy'" in errors[0].message
    assert "'PURPOSE_BUSINESS' is not in the reason catalogue" in errors[1].message


def test_a_code_unknown_to_the_shipped_catalogue_is_an_error_already() -> None:
    text = SEED.replace("reason_code: PURPOSE_BUSINESS", "reason_code: PURPOSE_WHATEVER")
    [error] = check_notice_reasons(text)
    assert "unknown reason code 'PURPOSE_WHATEVER'" in error.message


def test_cli_check_fails_on_a_vague_reason() -> None:
    text = SEED.replace("reason_code: LOAN_TO_INCOME_HIGH", "reason_code: DEBT_TO_INCOME_HIGH")
    result = CliRunner().invoke(policy_cli, ["check", "-"], input=text)
    assert result.exit_code == 1
    assert f"<stdin>:{line_of(text, '(0.3, 0.5]')}: rule 'loan-to-income'" in result.output
    assert "1 error(s) in <stdin>" in result.output
