"""`check_policy_text`: one test per kind of error, with its message and line; `policy check`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fastloans.policy import check_policy_text, load_default_policy, seed_policy_text
from fastloans_dev.policy.cli import policy as policy_cli

pytestmark = pytest.mark.unit

SEED = seed_policy_text()


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """Return the 1-based line of the ``occurrence``-th line containing ``fragment``."""
    hits = [number for number, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return hits[occurrence - 1]


def edited(old: str, new: str, text: str = SEED) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def only_error(text: str) -> str:
    errors = check_policy_text(text, "policy.yaml")
    assert len(errors) == 1, [str(error) for error in errors]
    return str(errors[0])


def test_the_seed_policy_is_valid() -> None:
    assert check_policy_text(SEED, "seed.yaml") == []


def test_schema_violation() -> None:
    text = edited("version: seed-1", "version: 1")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'version: 1')}: version: expected string, got 1 (quote it)"
    )


def test_schema_violation_of_a_nested_field() -> None:
    text = edited("education: {points: 5,", "education: {points: 5.5,")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'points: 5.5')}: scorecard[3].categories.education.points: "
        "expected integer, got 5.5"
    )


def test_invalid_yaml() -> None:
    text = edited("    factor: credit_score", "    factor: [credit_score")
    assert only_error(text).startswith(f"policy.yaml:{line_of(text, 'bands:')}: invalid YAML:")


def test_invalid_range_notation() -> None:
    text = edited('"[700, 800)"', '"[700; 800)"')
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '[700; 800)')}: invalid range '[700; 800)'; "
        "write e.g. '[600, 700)', '(-inf, 0.28]' or '(0.43, +inf)'"
    )


def test_overlapping_bands() -> None:
    text = edited('"(0.36, 0.43]"', '"[0.35, 0.43]"')
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '[0.35, 0.43]')}: rule 'debt-to-income': "
        "band [0.35, 0.43] overlaps band (0.28, 0.36]"
    )


def test_gap_between_bands() -> None:
    text = edited('"(0.36, 0.43]"', '"(0.40, 0.43]"')
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '(0.40, 0.43]')}: rule 'debt-to-income': "
        "no band covers (0.36, 0.4] (between bands (0.28, 0.36] and (0.4, 0.43])"
    )


def test_gap_of_a_single_value() -> None:
    text = edited('"[700, 800)"', '"(700, 800)"')
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '(700, 800)')}: rule 'credit-score': "
        "no band covers [700, 700] (between bands [600, 700) and (700, 800))"
    )


def test_bands_must_cover_the_whole_line() -> None:
    text = edited('"[800, +inf)", points: 0', '"[800, 900)", points: 0')
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '[800, 900)')}: rule 'credit-score': "
        "no band covers [900, +inf); bands must cover every value"
    )


def test_categories_must_cover_every_value() -> None:
    text = edited("    otherwise: {points: 0}\n\n  - id: purpose", "\n  - id: purpose")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'categories:')}: rule 'employment': no points given for "
        "employed, retired, student; list them or add `otherwise`"
    )


def test_unknown_factor() -> None:
    text = edited("factor: loan_to_income", "factor: loan_to_value")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'loan_to_value')}: unknown factor 'loan_to_value'; known factors: "
        "credit_score, debt_to_income, loan_to_income, employment_status, loan_purpose"
    )


def test_unknown_category_value() -> None:
    text = edited("self-employed: {", "self_employed: {")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'self_employed')}: rule 'employment': unknown employment_status value "
        "'self_employed'; known: employed, self-employed, unemployed, retired, student"
    )


def test_unknown_reason_code() -> None:
    text = edited("reason_code: CREDIT_SCORE_LOW}", "reason_code: CREDIT_SCORE_MEH}")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'CREDIT_SCORE_MEH')}: unknown reason code 'CREDIT_SCORE_MEH' "
        "in band [600, 700); add it to the reason catalogue first"
    )


def test_points_need_a_reason_code() -> None:
    text = edited(", reason_code: CREDIT_SCORE_LOW}", "}")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, '[600, 700)')}: band [600, 700) adds 20 points but has no reason_code"
    )


def test_duplicate_rule_id() -> None:
    text = edited("- id: purpose", "- id: employment")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'id: employment', 2)}: duplicate rule id 'employment' "
        f"(first used on line {line_of(text, 'id: employment')})"
    )


def test_duplicate_yaml_key() -> None:
    text = edited("      education: {points: 5", "      business: {points: 5")
    assert only_error(text) == f"policy.yaml:{line_of(text, 'business:', 2)}: duplicate key 'business'"


def test_decision_rule_after_the_catch_all() -> None:
    text = SEED + "  - id: approve-the-rest\n    outcome: approve\n"
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'approve-the-rest')}: decision rule 'approve-the-rest' is unreachable: "
        f"it comes after the catch-all rule 'reject-otherwise' (line {line_of(text, 'reject-otherwise')})"
    )


def test_decision_rule_shadowed_by_earlier_rules() -> None:
    text = edited("    when: {score_below: 30}", "    when: {score_below: 70}")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'approve-moderate-risk')}: decision rule 'approve-moderate-risk' is "
        "unreachable: every application it matches is decided earlier by 'approve-low-risk'"
    )


def test_decision_rule_no_application_can_meet() -> None:
    text = edited("    when: {score_below: 30}", "    when: {score_below: 0}")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'approve-low-risk')}: decision rule 'approve-low-risk' is unreachable: "
        "no application matches it (risk scores range from 0 to 115)"
    )


def test_decision_rules_leaving_applications_undecided() -> None:
    text = edited(
        "  - id: reject-otherwise\n    outcome: reject\n",
        "  - id: reject-high\n    outcome: reject\n    when: {score_at_least: 70}\n",
    )
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'reject-high')}: decision rules leave applications undecided "
        "(e.g. risk score 60, loan_purpose business, employment_status employed); "
        "end them with a catch-all rule without `when`"
    )


def test_decision_rules_must_end_with_a_catch_all_even_when_complete() -> None:
    text = edited(
        "  - id: reject-otherwise\n    outcome: reject\n",
        "  - id: reject-rest\n    outcome: reject\n    when: {score_at_least: 0}\n",
    )
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'reject-rest')}: decision rules must end with a catch-all rule without `when`"
    )


def test_unknown_value_in_a_decision_condition() -> None:
    text = edited("loan_purpose_not_in: [debt_consolidation]", "loan_purpose_not_in: [debt-consolidation]")
    assert only_error(text) == (
        f"policy.yaml:{line_of(text, 'debt-consolidation')}: decision rule 'approve-moderate-risk': unknown "
        "loan_purpose value 'debt-consolidation'; known: business, education, debt_consolidation, "
        "home_improvement, auto, medical, personal, other"
    )


def test_several_errors_are_reported_in_file_order() -> None:
    text = edited("version: seed-1", "version: [1]")
    text = edited("factor: loan_to_income", "factor: loan_to_value", text)
    lines = [error.line for error in check_policy_text(text, "p.yaml")]
    assert lines == sorted(lines) and len(lines) == 2


def test_cli_check_accepts_a_valid_policy() -> None:
    result = CliRunner().invoke(policy_cli, ["check", "-"], input=SEED)
    assert result.exit_code == 0
    assert result.output == f"OK seed seed-1 {load_default_policy().content_hash}\n"


def test_cli_check_rejects_an_invalid_policy() -> None:
    text = edited('"(0.36, 0.43]"', '"[0.35, 0.43]"')
    result = CliRunner().invoke(policy_cli, ["check", "-"], input=text)
    assert result.exit_code == 1
    line = line_of(text, "[0.35, 0.43]")
    assert f"<stdin>:{line}: rule 'debt-to-income': band [0.35, 0.43] overlaps band (0.28, 0.36]" in result.output
    assert "1 error(s) in <stdin>" in result.output
