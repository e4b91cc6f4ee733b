"""Reading and validating policy files, with errors that name the line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from itertools import product
from typing import Any, Final

import jsonschema
import yaml

from .facts import CATEGORICAL_FACTORS, EMPLOYMENT_STATUSES, FACTORS, LOAN_PURPOSES, NUMERIC_FACTORS
from .model import (
    CENT,
    DEFAULT_REVIEW_DEADLINE_DAYS,
    DEFAULT_REVIEW_ESCALATION_DAYS,
    DEFAULT_ROUNDING_STEP,
    DEFAULT_SECOND_PERSON_FOR,
    Band,
    BandRule,
    CategoryRule,
    Condition,
    DecisionRule,
    Interval,
    Points,
    Policy,
    ReviewSettings,
    ScoreRule,
)
from .reasons import reason_catalogue, vagueness

SEED_FILE: Final = "seed.yaml"
#: The seed with a borderline band referred to the review queue, and the queue's settings (not the default).
REVIEW_SEED_FILE: Final = "seed-with-review.yaml"
SCHEMA_FILE: Final = "policy.schema.json"

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in a policy file, located by line."""

    filename: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}: {self.message}"


class PolicyValidationError(ValueError):
    """Raised when a policy file is not valid; ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


class _DecimalLoader(yaml.SafeLoader):
    """A safe YAML loader that reads YAML floats as exact Decimals."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    try:
        return Decimal(special.get(text, text))
    except InvalidOperation as error:  # pragma: no cover - YAML's float pattern is stricter
        raise yaml.constructor.ConstructorError(None, None, f"invalid number {text!r}", node.start_mark) from error


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


@cache
def policy_schema() -> Mapping[str, Any]:
    """Return the policy JSON Schema shipped with the package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


class _Checker:
    """Collects errors for one file; knows the line of every YAML node."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[Path, int] = {}
        self.errors: list[PolicyError] = []

    def line(self, path: Iterable[str | int]) -> int:
        """Return the line of ``path``, or of its nearest ancestor the file has."""
        key = tuple(path)
        while key and key not in self.lines:
            key = key[:-1]
        return self.lines.get(key, 1)

    def error(self, path: Iterable[str | int], message: str) -> None:
        """Record an error at ``path``."""
        self.errors.append(PolicyError(self.filename, self.line(path), message))

    def index(self, node: yaml.Node, path: Path = ()) -> None:
        """Record the line of every node under ``node``; report duplicate mapping keys."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.errors.append(
                        PolicyError(self.filename, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                    )
                seen.add(key)
                self.lines.setdefault((*path, key), key_node.start_mark.line + 1)
                self.index(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self.index(item, (*path, position))

    def sorted_errors(self) -> list[PolicyError]:
        """Return the errors in file order."""
        return sorted(self.errors, key=lambda error: (error.line, error.message))


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _schema_message(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "enum" and path and path[-1] == "factor":
        return f"unknown factor {instance!r}; known factors: {', '.join(FACTORS)}"
    if error.validator == "not" and isinstance(instance, dict):
        factor = instance.get("factor")
        if factor in NUMERIC_FACTORS:
            return f"numeric factor {factor!r} is scored with `bands`, not `categories` or `otherwise`"
        return f"categorical factor {factor!r} is scored with `categories`, not `bands`"
    if error.validator == "type":
        where = _where(path) or "the policy"
        shown = str(instance) if isinstance(instance, Decimal) else repr(instance)
        hint = " (quote it)" if error.validator_value == "string" and not isinstance(instance, (dict, list)) else ""
        return f"{where}: expected {error.validator_value}, got {shown}{hint}"
    if error.validator == "pattern" and path and path[-1] == "range":
        return f"invalid range {instance!r}; write e.g. '[600, 700)', '(-inf, 0.28]' or '(0.43, +inf)'"
    where = _where(path)
    return f"{where}: {error.message}" if where else error.message


def _load_yaml(text: str, checker: _Checker) -> Any:
    """Parse YAML text, indexing node lines; return None (and record an error) on failure."""
    loader = _DecimalLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            checker.error((), "the policy file is empty")
            return None
        checker.index(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        checker.errors.append(PolicyError(checker.filename, line, f"invalid YAML: {error.problem or error}"))
        return None
    except yaml.YAMLError as error:
        checker.error((), f"invalid YAML: {error}")
        return None
    finally:
        loader.dispose()


def _award(data: Mapping[str, Any], label: str, path: Path, checker: _Checker) -> Points:
    points: int = data["points"]
    code: str | None = data.get("reason_code")
    if points > 0 and code is None:
        checker.error(path, f"{label} adds {points} points but has no reason_code")
    elif points == 0 and code is not None:
        checker.error(path, f"{label} adds no points, so it takes no reason_code (got {code!r})")
    elif code is not None and code not in reason_catalogue():
        checker.error(path, f"unknown reason code {code!r} in {label}; add it to the reason catalogue first")
    return Points(points, code)


def _lower_key(interval: Interval) -> tuple[int, Decimal, int]:
    if interval.lower is None:
        return (0, Decimal(0), 0)
    return (1, interval.lower, 0 if interval.lower_closed else 1)


def _upper_key(interval: Interval) -> tuple[int, Decimal, int]:
    if interval.upper is None:
        return (1, Decimal(0), 0)
    return (0, interval.upper, 1 if interval.upper_closed else 0)


def _check_partition(rule_id: str, bands: Sequence[tuple[Band, Path]], checker: _Checker) -> None:
    """Report overlaps between bands and values no band covers (the bands must cover the line)."""
    ordered = sorted(bands, key=lambda item: _lower_key(item[0].interval))
    first, first_path = ordered[0]
    if first.interval.lower is not None:
        gap = Interval(None, False, first.interval.lower, not first.interval.lower_closed)
        checker.error(first_path, f"rule {rule_id!r}: no band covers {gap}; bands must cover every value")
    reach, _ = ordered[0]
    for band, path in ordered[1:]:
        low, high = band.interval, reach.interval
        starts_inside = high.upper is None or (
            low.lower is None
            or low.lower < high.upper
            or (low.lower == high.upper and low.lower_closed and high.upper_closed)
        )
        if starts_inside:
            checker.error(path, f"rule {rule_id!r}: band {low} overlaps band {high}")
        elif (
            low.lower is not None
            and high.upper is not None
            and (low.lower > high.upper or (not low.lower_closed and not high.upper_closed))
        ):
            gap = Interval(high.upper, not high.upper_closed, low.lower, not low.lower_closed)
            checker.error(path, f"rule {rule_id!r}: no band covers {gap} (between bands {high} and {low})")
        if _upper_key(low) > _upper_key(high):
            reach = band
    if reach.interval.upper is not None:
        last = reach.interval
        gap = Interval(last.upper, not last.upper_closed, None, False)
        path = next(path for band, path in ordered if band is reach)
        checker.error(path, f"rule {rule_id!r}: no band covers {gap}; bands must cover every value")


def _band_rule(data: Mapping[str, Any], path: Path, checker: _Checker) -> BandRule | None:
    rule_id = data["id"]
    bands: list[tuple[Band, Path]] = []
    for position, band_data in enumerate(data["bands"]):
        band_path = (*path, "bands", position)
        try:
            interval = Interval.parse(band_data["range"])
        except ValueError as error:
            checker.error((*band_path, "range"), f"rule {rule_id!r}: {error}")
            continue
        award = _award(band_data, f"band {interval}", band_path, checker)
        bands.append((Band(interval, award), band_path))
    if len(bands) < len(data["bands"]):
        return None
    _check_partition(rule_id, bands, checker)
    ordered = sorted((band for band, _ in bands), key=lambda band: _lower_key(band.interval))
    return BandRule(rule_id, data["factor"], tuple(ordered), data.get("description"))


def _category_rule(data: Mapping[str, Any], path: Path, checker: _Checker) -> CategoryRule:
    rule_id, factor = data["id"], data["factor"]
    known = CATEGORICAL_FACTORS[factor]
    categories: dict[str, Points] = {}
    for value, award_data in data["categories"].items():
        value_path = (*path, "categories", value)
        if value not in known:
            checker.error(value_path, f"rule {rule_id!r}: unknown {factor} value {value!r}; known: {', '.join(known)}")
        categories[value] = _award(award_data, f"category {value!r}", value_path, checker)
    otherwise = None
    if "otherwise" in data:
        otherwise = _award(data["otherwise"], "otherwise", (*path, "otherwise"), checker)
    missing = [value for value in known if value not in categories]
    if missing and otherwise is None:
        checker.error(
            (*path, "categories"),
            f"rule {rule_id!r}: no points given for {', '.join(missing)}; list them or add `otherwise`",
        )
    return CategoryRule(rule_id, factor, categories, otherwise, data.get("description"))


def _condition(data: Mapping[str, Any], rule_id: str, path: Path, checker: _Checker) -> Condition:
    sets: dict[str, frozenset[str] | None] = {}
    for field, known in (("loan_purpose", LOAN_PURPOSES), ("employment_status", EMPLOYMENT_STATUSES)):
        for suffix in ("_in", "_not_in"):
            values = data.get(field + suffix)
            if values is not None:
                for value in values:
                    if value not in known:
                        checker.error(
                            (*path, field + suffix),
                            f"decision rule {rule_id!r}: unknown {field} value {value!r}; known: {', '.join(known)}",
                        )
                values = frozenset(values)
            sets[field + suffix] = values
    return Condition(
        score_below=data.get("score_below"),
        score_at_least=data.get("score_at_least"),
        loan_purpose_in=sets["loan_purpose_in"],
        loan_purpose_not_in=sets["loan_purpose_not_in"],
        employment_status_in=sets["employment_status_in"],
        employment_status_not_in=sets["employment_status_not_in"],
    )


def _possible_cells(scorecard: Sequence[ScoreRule]) -> Iterator[tuple[int, str, str]]:
    """Yield every (risk score, loan purpose, employment status) the scorecard can produce."""
    numeric = {0}
    for rule in scorecard:
        if isinstance(rule, BandRule):
            numeric = {total + band.award.points for total in numeric for band in rule.bands}
    for purpose, employment in product(LOAN_PURPOSES, EMPLOYMENT_STATUSES):
        fixed = 0
        for rule in scorecard:
            if isinstance(rule, CategoryRule):
                value = purpose if rule.factor == "loan_purpose" else employment
                fixed += rule.award_for(value).points
        for total in sorted(numeric):
            yield total + fixed, purpose, employment


def _check_decisions(rules: Sequence[DecisionRule], scorecard: Sequence[ScoreRule], checker: _Checker) -> None:
    """Report unreachable decision rules and applications no rule decides."""
    catch_all = next((index for index, rule in enumerate(rules) if rule.when.is_catch_all), None)
    if catch_all is not None:
        for rule_index in range(catch_all + 1, len(rules)):
            checker.error(
                ("decision", rule_index),
                f"decision rule {rules[rule_index].id!r} is unreachable: it comes after the catch-all "
                f"rule {rules[catch_all].id!r} (line {checker.line(('decision', catch_all))})",
            )
    considered = rules if catch_all is None else rules[:catch_all]
    wins = [False] * len(considered)
    matched = [False] * len(considered)
    shadowed_by: list[set[str]] = [set() for _ in considered]
    undecided: tuple[int, str, str] | None = None
    scores: list[int] = []
    for cell in _possible_cells(scorecard):
        scores.append(cell[0])
        winner: str | None = None
        for index, rule in enumerate(considered):
            if rule.when.matches(*cell):
                matched[index] = True
                if winner is None:
                    winner = rule.id
                    wins[index] = True
                else:
                    shadowed_by[index].add(winner)
        if winner is None and catch_all is None and undecided is None:
            undecided = cell
    for index, rule in enumerate(considered):
        if not matched[index]:
            checker.error(
                ("decision", index),
                f"decision rule {rule.id!r} is unreachable: no application matches it "
                f"(risk scores range from {min(scores)} to {max(scores)})",
            )
        elif not wins[index]:
            earlier = ", ".join(repr(rule_id) for rule_id in sorted(shadowed_by[index]))
            checker.error(
                ("decision", index),
                f"decision rule {rule.id!r} is unreachable: every application it matches is decided "
                f"earlier by {earlier}",
            )
    if undecided is not None:
        risk, purpose, employment = undecided
        checker.error(
            ("decision", len(rules) - 1),
            f"decision rules leave applications undecided (e.g. risk score {risk}, loan_purpose "
            f"{purpose}, employment_status {employment}); end them with a catch-all rule without `when`",
        )
    elif catch_all is None:
        checker.error(
            ("decision", len(rules) - 1),
            "decision rules must end with a catch-all rule without `when`",
        )


def _build(data: Mapping[str, Any], checker: _Checker) -> Policy | None:
    """Check what the schema cannot, and build the policy if everything holds."""
    seen_ids: dict[str, Path] = {}
    for section in ("scorecard", "decision"):
        for position, rule_data in enumerate(data[section]):
            path: Path = (section, position)
            rule_id = rule_data["id"]
            if rule_id in seen_ids:
                checker.error(
                    (*path, "id"),
                    f"duplicate rule id {rule_id!r} (first used on line {checker.line(seen_ids[rule_id])})",
                )
            else:
                seen_ids[rule_id] = path
    scorecard: list[ScoreRule] = []
    complete = True
    for position, rule_data in enumerate(data["scorecard"]):
        path = ("scorecard", position)
        if rule_data["factor"] in NUMERIC_FACTORS:
            band_rule = _band_rule(rule_data, path, checker)
            if band_rule is None:
                complete = False
            else:
                scorecard.append(band_rule)
        else:
            scorecard.append(_category_rule(rule_data, path, checker))
    decision = [
        DecisionRule(
            rule_data["id"],
            rule_data["outcome"],
            _condition(rule_data.get("when", {}), rule_data["id"], ("decision", position, "when"), checker),
            rule_data.get("description"),
        )
        for position, rule_data in enumerate(data["decision"])
    ]
    if complete and not checker.errors:
        _check_decisions(decision, scorecard, checker)
    rounding_step = _rounding_step(data, checker)
    review = _review(data, decision, checker)
    if checker.errors:
        return None
    return Policy(
        name=data["name"],
        version=data["version"],
        scorecard=tuple(scorecard),
        decision=tuple(decision),
        description=data.get("description"),
        rounding_step=rounding_step,
        review=review,
        source=checker.filename,
    )


def _review(data: Mapping[str, Any], decision: Sequence[DecisionRule], checker: _Checker) -> ReviewSettings | None:
    """The review settings (the schema has checked their types and ranges): escalation before the deadline."""
    section = data.get("review")
    if section is None:
        return None
    settings = ReviewSettings(
        deadline_days=section.get("deadline_days", DEFAULT_REVIEW_DEADLINE_DAYS),
        escalation_days=section.get("escalation_days", DEFAULT_REVIEW_ESCALATION_DAYS),
        second_person_for=tuple(section.get("second_person_for", DEFAULT_SECOND_PERSON_FOR)),
    )
    if settings.escalation_days >= settings.deadline_days:
        checker.error(
            ("review", "escalation_days"),
            f"review.escalation_days ({settings.escalation_days}) must be less than review.deadline_days "
            f"({settings.deadline_days}): a case is escalated before it can miss its deadline",
        )
    if not any(rule.outcome == "refer" for rule in decision):
        checker.error(("review",), "the policy has review settings but no decision rule refers")
    return settings


def _rounding_step(data: Mapping[str, Any], checker: _Checker) -> Decimal:
    """The counteroffer step: a whole number of cents (the schema has checked it is positive)."""
    value = data.get("rounding_step")
    if value is None:
        return DEFAULT_ROUNDING_STEP
    step = Decimal(value)
    if step != step.quantize(CENT):
        checker.error(("rounding_step",), f"rounding_step {value} has more than two decimal places")
        return DEFAULT_ROUNDING_STEP
    return step.quantize(CENT)


def _analyse(text: str, filename: str) -> tuple[Policy | None, list[PolicyError]]:
    policy, checker, _ = _analysed(text, filename)
    return policy, checker.sorted_errors()


def _analysed(text: str, filename: str) -> tuple[Policy | None, _Checker, Any]:
    """The policy (None if invalid), the checker with its errors and lines, and the parsed YAML."""
    checker = _Checker(filename)
    data = _load_yaml(text, checker)
    if checker.errors or data is None:
        return None, checker, data
    if not isinstance(data, dict):
        checker.error((), "a policy file must be a YAML mapping (name, version, scorecard, decision)")
        return None, checker, data
    validator = jsonschema.Draft202012Validator(policy_schema())
    for error in validator.iter_errors(data):
        checker.error(error.absolute_path, _schema_message(error))
    if checker.errors:
        return None, checker, data
    return _build(data, checker), checker, data


def check_notice_reasons(
    text: str, filename: str = "policy.yaml", catalogue: Mapping[str, str] | None = None
) -> list[PolicyError]:
    """Return every problem `check_policy_text` finds, then every notice reason that is unknown or vague.

    A notice reason is the catalogue text (default: the shipped catalogue) of a reason code the policy gives;
    it is vague when `reasons.vagueness` says so for the factor its rule scores.
    """
    policy, checker, data = _analysed(text, filename)
    if policy is None:
        return checker.sorted_errors()
    catalogue = reason_catalogue() if catalogue is None else catalogue
    for position, rule in enumerate(data["scorecard"]):
        path: Path = ("scorecard", position)
        awards = [((*path, "bands", index), band) for index, band in enumerate(rule.get("bands", ()))]
        awards += [((*path, "categories", value), award) for value, award in rule.get("categories", {}).items()]
        if "otherwise" in rule:
            awards.append(((*path, "otherwise"), rule["otherwise"]))
        for award_path, award in awards:
            code = award.get("reason_code")
            if code is None:
                continue
            reason = catalogue.get(code)
            if reason is None:
                checker.error(award_path, f"rule {rule['id']!r}: reason code {code!r} is not in the reason catalogue")
                continue
            problem = vagueness(rule["factor"], reason)
            if problem is not None:
                checker.error(
                    award_path,
                    f"rule {rule['id']!r}: reason {code!r} ({reason!r}) is too vague for a notice: {problem}",
                )
    return checker.sorted_errors()


def check_policy_text(text: str, filename: str = "policy.yaml") -> list[PolicyError]:
    """Return every problem in a policy file's text (empty when it is valid)."""
    return _analyse(text, filename)[1]


def parse_policy(text: str, filename: str = "policy.yaml") -> Policy:
    """Parse and validate a policy file's text; raise ``PolicyValidationError`` if invalid."""
    policy, errors = _analyse(text, filename)
    if errors or policy is None:
        raise PolicyValidationError(errors)
    return policy


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load and validate the policy file at ``path``."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse_policy(text, os.fspath(path))


def seed_policy_text() -> str:
    """Return the text of the seed policy shipped with the package."""
    return resources.files(__package__).joinpath(SEED_FILE).read_text(encoding="utf-8")


def shipped_policy_path(filename: str = REVIEW_SEED_FILE) -> str:
    """The path on disk of a policy file shipped with the package (for POLICY_FILE)."""
    return str(resources.files(__package__).joinpath(filename))


@cache
def load_default_policy() -> Policy:
    """Return the seed policy shipped with the package (parsed once)."""
    return parse_policy(seed_policy_text(), SEED_FILE)
