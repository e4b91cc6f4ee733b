"""`fastloans policy ...`: check, show and simulate credit policies; report challenger agreement."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from fastloans.policy.agreement import ChallengerAgreement, challenger_agreement
from fastloans.policy.loader import check_notice_reasons, load_default_policy, load_policy, parse_policy
from fastloans.policy.model import OUTCOMES, BandRule, Policy
from fastloans_dev.policy.replay import ReplayReport, replay


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return rows as a plain-text table with aligned columns."""
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _policy_or_default(path: str | None) -> Policy:
    """Load ``path``, else $POLICY_FILE, else the seed policy."""
    path = path or os.environ.get("POLICY_FILE") or None
    return load_default_policy() if path is None else load_policy(path)


def _load(path: str | None) -> Policy:
    try:
        return _policy_or_default(path)
    except ValueError as error:
        raise click.ClickException(f"invalid policy:\n{error}") from error


@click.group(name="policy")
def policy() -> None:
    """Check, show and simulate credit policies."""


@policy.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def check(file: str) -> None:
    """Validate FILE (- for stdin) and its notice reasons; print every error with its line, or OK and its identity."""
    with click.open_file(file, encoding="utf-8") as handle:
        text = handle.read()
    file = "<stdin>" if file == "-" else file
    errors = check_notice_reasons(text, file)
    if errors:
        for error in errors:
            click.echo(str(error), err=True)
        click.echo(f"{len(errors)} error(s) in {file}", err=True)
        sys.exit(1)
    loaded = parse_policy(text, file)
    click.echo(f"OK {loaded.name} {loaded.version} {loaded.content_hash}")


@policy.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
def show(file: str | None) -> None:
    """Print the rules of FILE (default: $POLICY_FILE or the seed policy) as tables."""
    shown = _load(file)
    click.echo(f"policy {shown.name}  version {shown.version}  hash {shown.content_hash}")
    if shown.description:
        click.echo(shown.description)
    rows: list[tuple[object, ...]] = []
    for rule in shown.scorecard:
        if isinstance(rule, BandRule):
            for band in rule.bands:
                rows.append((rule.id, rule.factor, band.interval, band.award.points, band.award.reason_code or ""))
        else:
            for value, award in rule.categories.items():
                rows.append((rule.id, rule.factor, value, award.points, award.reason_code or ""))
            if rule.otherwise is not None:
                rows.append(
                    (rule.id, rule.factor, "(otherwise)", rule.otherwise.points, rule.otherwise.reason_code or "")
                )
    click.echo("\nScorecard (risk score = sum of points)")
    click.echo(_table(("RULE", "FACTOR", "VALUE", "POINTS", "REASON CODE"), rows))
    click.echo("\nDecision (first match wins)")
    click.echo(
        _table(
            ("RULE", "OUTCOME", "WHEN"),
            [(rule.id, rule.outcome, rule.when.describe()) for rule in shown.decision],
        )
    )


def _bound(value: str | None, *, end: bool) -> datetime | None:
    """Parse an ISO date or date-time (UTC unless it says otherwise); a bare end date includes the day."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not an ISO date or date-time") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _database_url(option: str | None) -> str:
    url = option or os.environ.get("DATABASE_READ_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise click.UsageError("give --database-url or set DATABASE_READ_URL (or DATABASE_URL)")
    return url


def _summary(report: ReplayReport) -> str:
    lines = [f"applications replayed: {report.count}" + (f" (skipped {report.skipped})" if report.skipped else "")]
    for role, chosen, tally in (
        ("active", report.active, report.active_tally),
        ("candidate", report.candidate, report.candidate_tally),
    ):
        rate = tally.approval_rate()
        shown = "n/a" if rate is None else f"{rate * 100:.2f}%"
        lines.append(f"{role:9} {chosen.name} {chosen.version} ({chosen.content_hash[:12]}): approval rate {shown}")
    lines.append(f"decisions changed: {report.changed}")
    lines.append("\nactive \\ candidate")
    lines.append(
        _table(
            ("", *OUTCOMES),
            [(before, *(report.confusion[(before, after)] for after in OUTCOMES)) for before in OUTCOMES],
        )
    )
    codes = sorted(set(report.active_tally.principal_reasons) | set(report.candidate_tally.principal_reasons))
    lines.append("\nprincipal reasons of rejections and referrals")
    lines.append(
        _table(
            ("REASON CODE", "ACTIVE", "CANDIDATE"),
            [
                (code, report.active_tally.principal_reasons[code], report.candidate_tally.principal_reasons[code])
                for code in codes
            ],
        )
    )
    return "\n".join(lines)


@policy.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--active",
    "active_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Policy to compare with (default: $POLICY_FILE or the seed policy).",
)
@click.option("--since", help="First submission date or date-time to include (ISO, UTC by default).")
@click.option("--until", help="Submission date (inclusive) or date-time (exclusive) to stop at.")
@click.option("--database-url", help="PostgreSQL read replica URL (default: $DATABASE_READ_URL, $DATABASE_URL).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: ./simulation-<hash prefix>).")
def simulate(
    file: str,
    active_file: str | None,
    since: str | None,
    until: str | None,
    database_url: str | None,
    out: str | None,
) -> None:
    """Re-decide stored applications with FILE and the active policy, and compare the outcomes."""
    candidate = _load(file)
    active = _load(active_file)
    url = _database_url(database_url)
    start, end = _bound(since, end=False), _bound(until, end=True)
    with click.progressbar(length=0, label="replaying", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        report = asyncio.run(replay(url, candidate, active, start, end, progress=progress))
    click.echo(_summary(report))
    folder = Path(out or f"simulation-{candidate.content_hash[:12]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "simulation.json").write_text(
        json.dumps(report.to_dict(), sort_keys=True, indent=2) + "\n", encoding="utf-8"
    )
    from fastloans_dev.policy.plot import write_simulation_chart

    write_simulation_chart(report, folder / "simulation.png")
    click.echo(f"\nwrote {folder / 'simulation.json'} and {folder / 'simulation.png'}")


def _agreement_summary(report: ChallengerAgreement) -> str:
    rate = report.agreement_rate()
    window = f"{report.since.isoformat() if report.since else 'the beginning'} to " + (
        report.until.isoformat() if report.until else "now"
    )
    lines = [
        f"decisions with a challenger outcome: {report.decisions} ({window})",
        f"agreed: {report.agreed}" + ("" if rate is None else f" ({rate * 100:.2f}%)"),
        "\nchampion \\ challenger",
        _table(
            ("", *OUTCOMES),
            [(champion, *(report.confusion[(champion, other)] for other in OUTCOMES)) for champion in OUTCOMES],
        ),
        "\n"
        + _table(
            ("CHAMPION VERSION", "CHALLENGER VERSION", "DECISIONS", "AGREED"),
            [
                (item["champion_version"], item["challenger_version"], item["decisions"], item["agreed"])
                for item in report.to_dict()["policies"]
            ],
        ),
    ]
    return "\n".join(lines)


async def _stored_agreement(
    url: str, since: datetime | None, until: datetime | None, tenant: str | None
) -> ChallengerAgreement:
    import asyncpg

    from fastloans_dev.policy.replay import asyncpg_dsn

    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        tenant_id = None
        if tenant is not None:
            tenant_id = await connection.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
            if tenant_id is None:
                raise click.BadParameter(f"no tenant named {tenant!r}", param_hint="--tenant")
        return await challenger_agreement(connection, since=since, until=until, tenant_id=tenant_id)
    finally:
        await connection.close()


@policy.command()
@click.option("--since", help="First decision date or date-time to include (ISO, UTC by default).")
@click.option("--until", help="Decision date (inclusive) or date-time (exclusive) to stop at.")
@click.option("--tenant", help="Only this tenant's decisions (its name; default: every tenant).")
@click.option("--database-url", help="PostgreSQL read replica URL (default: $DATABASE_READ_URL, $DATABASE_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def agreement(
    since: str | None, until: str | None, tenant: str | None, database_url: str | None, as_json: bool
) -> None:
    """Compare the challenger's shadow outcomes with the champion's recorded decisions."""
    url = _database_url(database_url)
    report = asyncio.run(_stored_agreement(url, _bound(since, end=False), _bound(until, end=True), tenant))
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True, indent=2))
    else:
        click.echo(_agreement_summary(report))
