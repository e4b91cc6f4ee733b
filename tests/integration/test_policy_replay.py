"""`policy simulate` against real PostgreSQL: rows written to the primary, replayed from the replica."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from fastloans.policy import load_default_policy, parse_policy, seed_policy_text
from fastloans_dev.policy.cli import policy as policy_cli
from fastloans_dev.policy.replay import ReplayReport, replay

pytestmark = pytest.mark.integration

STRICT = (
    seed_policy_text()
    .replace("version: seed-1", "version: strict-1")
    .replace(
        "  - id: approve-moderate-risk\n    outcome: approve\n", "  - id: refer-moderate-risk\n    outcome: refer\n"
    )
)

# credit, loan, income, debt, employment, purpose, status; seed -> strict outcome in the comment
ROWS = [
    (750, "2000.00", "5000.00", "1000.00", "employed", "home_improvement", "approved"),  # approved -> approved
    (650, "1000.00", "4000.00", "1200.00", "self-employed", "business", "approved"),  # approved -> referred
    (580, "2000.00", "3000.00", "1500.00", "unemployed", "debt_consolidation", "rejected"),  # rejected -> rejected
    (650, "1000.00", "4000.00", "1000.00", "employed", "debt_consolidation", "pending"),  # rejected -> rejected
    (820, "5000.00", "10000.00", "4300.00", "employed", "auto", "approved"),  # approved -> referred (30)
]


async def _insert(url: str, start: datetime) -> uuid.UUID:
    """Write a tenant, the rows above inside [start, start + 1 day), a withdrawn row and one outside."""
    tenant = uuid.uuid4()
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, f"policy-replay-{tenant}"
            )
            rows: list[tuple[Any, ...]] = []
            for index, (credit, loan, income, debt, employment, purpose, status) in enumerate(ROWS):
                rows.append(
                    (credit, loan, income, debt, employment, purpose, status, start + timedelta(minutes=index), None)
                )
            withdrawn = (300, "900.00", "1000.00", "900.00", "unemployed", "other", "withdrawn")
            rows.append((*withdrawn, start + timedelta(hours=1), start + timedelta(hours=2)))
            rows.append((*ROWS[0][:6], "approved", start + timedelta(days=2), None))  # outside the window
            for credit, loan, income, debt, employment, purpose, status, submitted, withdrawn_at in rows:
                await connection.execute(
                    """
                    INSERT INTO loan_applications (
                        id, tenant_id, revision, status, applicant_name, credit_score, loan_amount,
                        loan_purpose, monthly_income, monthly_debt, employment_status, submitted_at,
                        withdrawn_at, created_at, updated_at
                    ) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11, $11)
                    """,
                    uuid.uuid4(),
                    tenant,
                    status,
                    "Test Applicant",
                    credit,
                    Decimal(loan),
                    purpose,
                    Decimal(income),
                    Decimal(debt),
                    employment,
                    submitted,
                    withdrawn_at,
                )
    finally:
        await connection.close()
    return tenant


async def _wait_for_replica(url: str, tenant: uuid.UUID, expected: int) -> None:
    """Wait until streaming replication has brought the rows to the replica."""
    connection = await asyncpg.connect(url)
    try:
        query = "SELECT count(*) FROM loan_applications WHERE tenant_id = $1"
        for _ in range(300):
            if await connection.fetchval(query, tenant) >= expected:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    pytest.fail("rows did not reach the replica")


async def _cleanup(url: str, tenant: uuid.UUID) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("DELETE FROM loan_applications WHERE tenant_id = $1", tenant)
        await connection.execute("DELETE FROM tenants WHERE id = $1", tenant)
    finally:
        await connection.close()


@pytest.fixture
def replay_window(migrated_db: Any) -> Any:
    """Rows in a window of their own (a random day in the 1990s), so other tests' rows do not count."""
    start = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 3650)
    tenant = asyncio.run(_insert(migrated_db.primary_url, start))
    try:
        asyncio.run(_wait_for_replica(migrated_db.replica_url, tenant, len(ROWS) + 2))
        yield start, start + timedelta(days=1)
    finally:
        asyncio.run(_cleanup(migrated_db.primary_url, tenant))


def test_replay_from_the_replica(migrated_db: Any, replay_window: tuple[datetime, datetime]) -> None:
    since, until = replay_window
    calls: list[tuple[int, int]] = []
    report: ReplayReport = asyncio.run(
        replay(
            migrated_db.replica_url.replace("postgresql://", "postgresql+asyncpg://", 1),
            parse_policy(STRICT, "strict.yaml"),
            load_default_policy(),
            since,
            until,
            progress=lambda done, total: calls.append((done, total)),
            batch_size=2,
        )
    )
    assert calls[0] == (0, 5) and calls[-1] == (5, 5) and len(calls) == 4
    data = report.to_dict()
    assert data["count"] == 5 and data["skipped"] == 0 and data["changed"] == 2
    assert data["active"]["outcomes"] == {"approved": 3, "rejected": 2, "referred": 0}
    assert data["candidate"]["outcomes"] == {"approved": 1, "rejected": 2, "referred": 2}
    assert (data["active"]["approval_rate"], data["candidate"]["approval_rate"]) == ("0.6000", "0.2000")
    assert data["confusion"]["approved"] == {"approved": 1, "rejected": 0, "referred": 2}
    assert data["active"]["score_histogram"] == [[20, 1], [30, 1], [35, 1], [50, 1], [115, 1]]
    assert data["inputs"]["since"] == since.isoformat()


def test_simulate_cli_writes_identical_json_twice(
    migrated_db: Any, replay_window: tuple[datetime, datetime], tmp_path: Path
) -> None:
    since, until = replay_window
    candidate = tmp_path / "strict.yaml"
    candidate.write_text(STRICT)
    outputs = []
    for run in ("first", "second"):
        result = CliRunner().invoke(
            policy_cli,
            [
                "simulate",
                str(candidate),
                "--since",
                since.isoformat(),
                "--until",
                until.isoformat(),
                "--database-url",
                migrated_db.replica_url,
                "--out",
                str(tmp_path / run),
            ],
            env={"POLICY_FILE": ""},
        )
        assert result.exit_code == 0, result.output
        assert "applications replayed: 5" in result.output
        assert (tmp_path / run / "simulation.png").read_bytes().startswith(b"\x89PNG")
        outputs.append((tmp_path / run / "simulation.json").read_bytes())
    assert outputs[0] == outputs[1]
    data = json.loads(outputs[0])
    assert data["inputs"]["candidate"]["version"] == "strict-1"
    assert data["inputs"]["active"]["version"] == "seed-1"
