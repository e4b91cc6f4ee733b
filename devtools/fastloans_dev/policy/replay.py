"""Replaying stored applications through an active and a candidate policy (what-if analysis)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from fastloans.policy.engine import Assessment, evaluate
from fastloans.policy.facts import ApplicationFacts
from fastloans.policy.model import OUTCOMES, Policy

ProgressCallback = Callable[[int, int], None]

BATCH_SIZE: Final = 2000
_RATE_PLACES: Final = Decimal("0.0001")

_WHERE: Final = "status <> 'withdrawn' AND withdrawn_at IS NULL"
_COLUMNS: Final = "credit_score, loan_amount, monthly_income, monthly_debt, employment_status, loan_purpose"


def asyncpg_dsn(url: str) -> str:
    """Return a libpq-style URL asyncpg accepts (drops a SQLAlchemy ``+driver`` suffix)."""
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError("expected a postgresql:// or postgresql+asyncpg:// URL")
    return f"postgresql://{rest}"


@dataclass
class PolicyTally:
    """What one policy did to the replayed applications."""

    outcomes: Counter[str] = field(default_factory=Counter)
    scores: Counter[int] = field(default_factory=Counter)
    principal_reasons: Counter[str] = field(default_factory=Counter)
    contributions: Counter[str] = field(default_factory=Counter)

    def add(self, assessment: Assessment) -> None:
        """Count one assessment."""
        self.outcomes[assessment.outcome] += 1
        self.scores[assessment.risk_score] += 1
        self.principal_reasons.update(item.reason_code for item in assessment.decision.principal_reasons)
        self.contributions.update(item.reason_code for item in assessment.score.contributions)

    def approval_rate(self) -> Decimal | None:
        """Return approved / decided, to four decimals (None when nothing was decided)."""
        total = sum(self.outcomes.values())
        if not total:
            return None
        return (Decimal(self.outcomes["approved"]) / Decimal(total)).quantize(_RATE_PLACES)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (sorted, so that the same input gives the same bytes)."""
        rate = self.approval_rate()
        return {
            "outcomes": {outcome: self.outcomes[outcome] for outcome in OUTCOMES},
            "approval_rate": None if rate is None else str(rate),
            "score_histogram": [[value, count] for value, count in sorted(self.scores.items())],
            "principal_reason_mix": dict(sorted(self.principal_reasons.items())),
            "contribution_mix": dict(sorted(self.contributions.items())),
        }


@dataclass
class ReplayReport:
    """The outcome of replaying applications through the active and the candidate policy."""

    active: Policy
    candidate: Policy
    since: datetime | None = None
    until: datetime | None = None
    count: int = 0
    skipped: int = 0
    active_tally: PolicyTally = field(default_factory=PolicyTally)
    candidate_tally: PolicyTally = field(default_factory=PolicyTally)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, facts: ApplicationFacts) -> None:
        """Decide one application with both policies and count the results."""
        before = evaluate(self.active, facts)
        after = evaluate(self.candidate, facts)
        self.count += 1
        self.active_tally.add(before)
        self.candidate_tally.add(after)
        self.confusion[(before.outcome, after.outcome)] += 1

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Decide one stored application; rows the policy cannot read are counted as skipped."""
        try:
            facts = ApplicationFacts.from_mapping(row)
        except (TypeError, ValueError):
            self.skipped += 1
            return
        self.add(facts)

    @property
    def changed(self) -> int:
        """Return how many applications the candidate decides differently."""
        return sum(count for (before, after), count in self.confusion.items() if before != after)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: only inputs and figures, no timestamps of the run itself."""
        return {
            "inputs": {
                "active": self.active.identity(),
                "candidate": self.candidate.identity(),
                "since": None if self.since is None else self.since.isoformat(),
                "until": None if self.until is None else self.until.isoformat(),
            },
            "count": self.count,
            "skipped": self.skipped,
            "changed": self.changed,
            "active": self.active_tally.to_dict(),
            "candidate": self.candidate_tally.to_dict(),
            "confusion": {
                before: {after: self.confusion[(before, after)] for after in OUTCOMES} for before in OUTCOMES
            },
        }


def _filters(since: datetime | None, until: datetime | None) -> tuple[str, list[datetime]]:
    clauses, args = [_WHERE], []
    if since is not None:
        args.append(since)
        clauses.append(f"submitted_at >= ${len(args)}")
    if until is not None:
        args.append(until)
        clauses.append(f"submitted_at < ${len(args)}")
    return " AND ".join(clauses), args


async def replay(
    database_url: str,
    candidate: Policy,
    active: Policy,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: ProgressCallback | None = None,
    *,
    batch_size: int = BATCH_SIZE,
) -> ReplayReport:
    """Re-decide stored applications submitted in [since, until) with both policies."""
    import asyncpg  # imported here: only the simulate command needs a database driver

    report = ReplayReport(active=active, candidate=candidate, since=since, until=until)
    where, args = _filters(since, until)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # One read-only snapshot: the count and the cursor see the same rows (works on a hot standby).
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            total = await connection.fetchval(f"SELECT count(*) FROM loan_applications WHERE {where}", *args)
            if progress is not None:
                progress(0, total)
            cursor = await connection.cursor(
                f"SELECT {_COLUMNS} FROM loan_applications WHERE {where} ORDER BY submitted_at, id", *args
            )
            done = 0
            while rows := await cursor.fetch(batch_size):
                for row in rows:
                    report.add_row(row)
                done += len(rows)
                if progress is not None:
                    progress(done, total)
    finally:
        await connection.close()
    return report
