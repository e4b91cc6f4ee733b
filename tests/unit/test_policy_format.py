"""The policy file format: loading, the schema, interval notation and the content hash."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources

import jsonschema
import pytest
import yaml

from fastloans.policy import (
    PolicyValidationError,
    load_default_policy,
    load_policy,
    parse_policy,
    seed_policy_text,
)
from fastloans.policy.model import BandRule, CategoryRule, Interval

pytestmark = pytest.mark.unit

SEED = seed_policy_text()


def test_default_policy_is_the_seed() -> None:
    policy = load_default_policy()
    assert (policy.name, policy.version) == ("seed", "seed-1")
    assert [rule.id for rule in policy.scorecard] == [
        "credit-score",
        "debt-to-income",
        "employment",
        "purpose",
        "loan-to-income",
    ]
    assert [rule.outcome for rule in policy.decision] == ["approve", "approve", "reject"]
    assert len(policy.content_hash) == 64


def test_load_policy_reads_a_path() -> None:
    with resources.as_file(resources.files("fastloans.policy") / "seed.yaml") as path:
        policy = load_policy(path)
    assert policy == load_default_policy()
    assert policy.content_hash == load_default_policy().content_hash


def test_bounds_are_exact_decimals() -> None:
    rule = load_default_policy().scorecard[1]
    assert isinstance(rule, BandRule)
    bounds = [band.interval.upper for band in rule.bands]
    assert bounds == [Decimal("0.28"), Decimal("0.36"), Decimal("0.43"), None]
    assert all(isinstance(bound, Decimal) for bound in bounds if bound is not None)


def test_categories_and_otherwise() -> None:
    rule = load_default_policy().scorecard[2]
    assert isinstance(rule, CategoryRule)
    assert rule.award_for("unemployed").points == 20
    assert rule.award_for("retired").points == 0


def test_seed_file_satisfies_the_json_schema() -> None:
    schema = json.loads((resources.files("fastloans.policy") / "policy.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(SEED), schema)


def test_hash_ignores_comments_whitespace_layout_and_decimal_spelling() -> None:
    block_style = SEED.replace(
        '      - {range: "(0.36, 0.43]", points: 20, reason_code: DEBT_TO_INCOME_HIGH}\n',
        "      # the middle band\n"
        "      -   range:   '(0.360, 0.43]'\n"
        "          points: 20\n\n"
        "          reason_code: DEBT_TO_INCOME_HIGH\n",
    )
    assert block_style != SEED
    assert parse_policy(block_style).content_hash == load_default_policy().content_hash


def test_hash_ignores_key_order() -> None:
    reordered = SEED.replace("name: seed\nversion: seed-1\n", "version: seed-1\nname: seed\n")
    assert parse_policy(reordered).content_hash == load_default_policy().content_hash


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("version: seed-1", "version: seed-2"),
        ("points: 5,", "points: 6,"),
        ('"(0.36, 0.43]", points: 20', '"(0.36, 0.44]", points: 20'),
        ("when: {score_below: 30}", "when: {score_below: 31}"),
    ],
)
def test_hash_changes_with_content(old: str, new: str) -> None:
    text = SEED.replace(old, new)
    if "0.44" in new:
        text = text.replace('"(0.43, +inf)"', '"(0.44, +inf)"')
    assert parse_policy(text).content_hash != load_default_policy().content_hash


def test_canonical_form_is_json() -> None:
    data = load_default_policy().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["scorecard"][1]["bands"][2] == {
        "range": "(0.36, 0.43]",
        "points": 20,
        "reason_code": "DEBT_TO_INCOME_HIGH",
    }


def test_parse_policy_raises_with_every_error() -> None:
    with pytest.raises(PolicyValidationError) as raised:
        parse_policy(SEED.replace("version: seed-1", "version: 2"), "bad.yaml")
    assert raised.value.errors[0].filename == "bad.yaml"
    assert str(raised.value).startswith("bad.yaml:12: ")


@pytest.mark.parametrize(
    ("text", "lower", "lower_closed", "upper", "upper_closed", "canonical"),
    [
        ("[600, 700)", "600", True, "700", False, "[600, 700)"),
        ("(-inf, 0.28]", None, False, "0.28", True, "(-inf, 0.28]"),
        (" ( 0.430 , +inf ) ", "0.430", False, None, False, "(0.43, +inf)"),
        ("(-inf, inf)", None, False, None, False, "(-inf, +inf)"),
        ("[5, 5]", "5", True, "5", True, "[5, 5]"),
    ],
)
def test_interval_notation(
    text: str, lower: str | None, lower_closed: bool, upper: str | None, upper_closed: bool, canonical: str
) -> None:
    interval = Interval.parse(text)
    assert interval.lower == (None if lower is None else Decimal(lower))
    assert interval.upper == (None if upper is None else Decimal(upper))
    assert (interval.lower_closed, interval.upper_closed) == (lower_closed, upper_closed)
    assert str(interval) == canonical


@pytest.mark.parametrize("text", ["[600; 700)", "[-inf, 0)", "(0, +inf]", "(5, 5]", "(7, 3)", "(+inf, 3)", "600-700"])
def test_interval_notation_errors(text: str) -> None:
    with pytest.raises(ValueError):
        Interval.parse(text)
