"""Champion versus challenger: how often the shadow policy agreed with the decisions actually made."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from .model import OUTCOMES

if TYPE_CHECKING:
    import asyncpg

_RATE_PLACES: Final = Decimal("0.0001")

# One row per (champion outcome, challenger outcome, champion version, challenger version).
_AGREEMENT_SQL: Final = """
SELECT outcome AS champion, challenger->>'outcome' AS challenger,
       policy_version AS champion_version, challenger->'policy'->>'version' AS challenger_version,
       count(*) AS decisions
FROM loan_decisions
WHERE challenger IS NOT NULL
  AND ($1::timestamptz IS NULL OR decided_at >= $1) AND ($2::timestamptz IS NULL OR decided_at < $2)
  AND ($3::uuid IS NULL OR tenant_id = $3)
GROUP BY 1, 2, 3, 4
"""


@dataclass
class ChallengerAgreement:
    """Recorded decisions that carry a challenger outcome, counted champion by challenger."""

    since: datetime | None = None
    until: datetime | None = None
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    agreed_by_version: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self, *, champion: str, challenger: str, champion_version: str, challenger_version: str, decisions: int
    ) -> None:
        """Count ``decisions`` recorded decisions of one kind."""
        self.confusion[(champion, challenger)] += decisions
        self.versions[(champion_version, challenger_version)] += decisions
        if champion == challenger:
            self.agreed_by_version[(champion_version, challenger_version)] += decisions

    @property
    def decisions(self) -> int:
        """Return how many decisions had a challenger outcome."""
        return sum(self.confusion.values())

    @property
    def agreed(self) -> int:
        """Return how many of them the challenger decided the same way."""
        return sum(count for (champion, challenger), count in self.confusion.items() if champion == challenger)

    def agreement_rate(self) -> Decimal | None:
        """Return agreed / decisions to four decimals (None without decisions)."""
        if not self.decisions:
            return None
        return (Decimal(self.agreed) / Decimal(self.decisions)).quantize(_RATE_PLACES)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (outcomes in their fixed order, versions sorted)."""
        rate = self.agreement_rate()
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "decisions": self.decisions,
            "agreed": self.agreed,
            "agreement_rate": None if rate is None else str(rate),
            "confusion": {
                champion: {challenger: self.confusion[(champion, challenger)] for challenger in OUTCOMES}
                for champion in OUTCOMES
            },
            "policies": [
                {
                    "champion_version": champion,
                    "challenger_version": challenger,
                    "decisions": count,
                    "agreed": self.agreed_by_version[(champion, challenger)],
                }
                for (champion, challenger), count in sorted(self.versions.items())
            ],
        }


def agreement_from_rows(
    rows: Iterable[Mapping[str, Any]], since: datetime | None = None, until: datetime | None = None
) -> ChallengerAgreement:
    """Build the report from rows of the agreement query."""
    report = ChallengerAgreement(since=since, until=until)
    for row in rows:
        report.add(
            champion=str(row["champion"]),
            challenger=str(row["challenger"]),
            champion_version=str(row["champion_version"]),
            challenger_version=str(row["challenger_version"]),
            decisions=int(row["decisions"]),
        )
    return report


async def challenger_agreement(
    connection: asyncpg.Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant_id: uuid.UUID | None = None,
) -> ChallengerAgreement:
    """Count decisions made in [since, until) (of one tenant, or all) that recorded a challenger outcome."""
    rows = await connection.fetch(_AGREEMENT_SQL, since, until, tenant_id)
    return agreement_from_rows(rows, since, until)
