"""The `fastloans` command: migrations, topics, tenants and keys (what the images run).

The development package (devtools/, fastloans-dev) adds `fastloans up` and `fastloans policy ...`
through the ``fastloans.cli`` entry points; the images do not install it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any

import asyncpg
import click

from fastloans.settings import Settings, load_settings
from fastloans.tenants import NOTICE_SETTING_OPTIONS


def _settings() -> Settings:
    return load_settings(Settings, service_name="fastloans-cli")


def _primary_dsn(settings: Settings) -> str:
    """The primary's DSN; a clear error when DATABASE_URL is unset (the Kafka commands do not need it)."""
    if settings.database_url is None:
        raise click.ClickException("DATABASE_URL is not set: this command needs the primary's address")
    return settings.primary_dsn()


def _with_connection(work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    settings = _settings()

    async def run() -> Any:
        conn = await asyncpg.connect(_primary_dsn(settings), ssl=settings.database_ssl(), timeout=10)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as error:
        raise click.ClickException(f"database error: {error}") from None


# Entry-point group through which the development package adds its subcommands.
DEV_COMMAND_GROUP = "fastloans.cli"
# The subcommands it adds (checked against devtools/pyproject.toml by a test), for a clear hint when absent.
DEV_COMMANDS = ("policy", "up")


class _Commands(click.Group):
    """The runtime commands plus those of installed plug-ins; a hint for development commands that are absent."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Resolve ``cmd_name``; a development command without the development package fails with how to get it."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in DEV_COMMANDS:
            ctx.fail(
                f"`fastloans {cmd_name}` is a development command: install the development package "
                "(`make venv`, or pip install -e ./devtools); service images do not include it"
            )
        return command


@click.group(cls=_Commands)
def main() -> None:
    """Fast Loans: loan applications decided by a versioned credit policy over Kafka."""


@main.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations on the primary (DATABASE_URL) up to REVISION."""
    from fastloans.db.migrate import upgrade

    upgrade(_primary_dsn(_settings()), revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision", default="base")
def db_downgrade(revision: str) -> None:
    """Revert migrations on the primary down to REVISION."""
    from fastloans.db.migrate import downgrade

    downgrade(_primary_dsn(_settings()), revision)
    click.echo(f"database at {revision}")


@main.group()
def kafka() -> None:
    """Kafka topics."""


@kafka.command("create-topics")
@click.option("--partitions", default=6, show_default=True, type=click.IntRange(1, 1000))
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--min-insync-replicas", default=None, type=click.IntRange(1, 10))
def kafka_create_topics(partitions: int, replication_factor: int, min_insync_replicas: int | None) -> None:
    """Create the pipeline's topics (existing ones are left alone)."""
    from fastloans.kafka import create_topics

    created = asyncio.run(
        create_topics(
            _settings(),
            partitions=partitions,
            replication_factor=replication_factor,
            min_insync_replicas=min_insync_replicas,
        )
    )
    click.echo("created: " + (", ".join(created) if created else "nothing (all topics exist)"))


@main.group()
def keys() -> None:
    """API keys of tenants."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant name (created if new).")
@click.option(
    "--scopes",
    default="submit,read",
    show_default=True,
    help="Comma-separated: submit, read, admin, review, supervise.",
)
@click.option("--label", default=None, help="A note to recognise the key by.")
@click.option(
    "--actor",
    default=None,
    help="The person using the key (required with review or supervise), recorded with every review action.",
)
@click.option(
    "--key-from-stdin",
    is_flag=True,
    help="Register the key read from standard input (made elsewhere) instead of a new one.",
)
def keys_create(tenant: str, scopes: str, label: str | None, actor: str | None, key_from_stdin: bool) -> None:
    """Create a key and print it once; only its hash is stored."""
    from fastloans.tenants import KeyConflictError, issue_key

    wanted = tuple(s.strip() for s in scopes.split(",") if s.strip())
    given = sys.stdin.readline().strip() if key_from_stdin else None
    try:
        issued = _with_connection(
            lambda conn: issue_key(conn, tenant, scopes=wanted, label=label, key=given, actor=actor)
        )
    except KeyConflictError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        hint = "--actor" if "actor" in str(error) else "--scopes" if "scope" in str(error) else "--key-from-stdin"
        raise click.BadParameter(str(error), param_hint=hint) from None
    if not key_from_stdin:
        click.echo(issued.key)
    click.echo(
        f"tenant={tenant} prefix={issued.prefix} scopes={','.join(issued.scopes)} "
        + (f"actor={issued.actor} " if issued.actor else "")
        + ("(registered)" if key_from_stdin else "(store the key now: it cannot be shown again)"),
        err=True,
    )


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key whose listing prefix is PREFIX."""
    from fastloans.tenants import revoke_key

    count = _with_connection(lambda conn: revoke_key(conn, prefix))
    if not count:
        raise click.ClickException(f"no live key with prefix {prefix}")
    click.echo(f"revoked {count} key(s) with prefix {prefix}")


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix, tenant, scopes, state); never the keys themselves."""
    from fastloans.tenants import list_keys

    for row in _with_connection(list_keys):
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "live"
        actor = f"  actor={row['actor']}" if row["actor"] else ""
        click.echo(f"{row['prefix']}  {row['tenant']:<20} {','.join(row['scopes']):<20} {state}{actor}")


@main.group()
def tenants() -> None:
    """Tenants' settings."""


@tenants.command("limit")
@click.argument("tenant")
@click.option(
    "--per-second",
    type=click.FloatRange(min=0),
    default=None,
    help="Requests a second for all of the tenant's keys together (0: unlimited).",
)
@click.option("--burst", type=click.IntRange(min=1), default=None, help="Requests it may make at once.")
def tenants_limit(tenant: str, per_second: float | None, burst: int | None) -> None:
    """Set TENANT's own rate limit; without options, it takes the gateway's default again."""
    from fastloans.tenants import set_rate_limit

    if not _with_connection(lambda conn: set_rate_limit(conn, tenant, per_second=per_second, burst=burst)):
        raise click.ClickException(f"no tenant named {tenant}")
    shown = "the default" if per_second is None and burst is None else f"per_second={per_second} burst={burst}"
    click.echo(f"tenant {tenant}: rate limit {shown} (takes effect within AUTH_CACHE_SECONDS)")


@tenants.command("notice-settings")
@click.option("--tenant", required=True, help="Tenant name.")
@click.option("--creditor-name", default=None, help="The creditor's legal name, as notices print it.")
@click.option("--address", default=None, help='The creditor\'s address; lines separated by "\\n" or real line breaks.')
@click.option("--agency", default=None, help="The federal agency supervising the creditor, with its address.")
@click.option("--contact", default=None, help="How applicants reach the creditor (telephone, e-mail, web).")
@click.option(
    "--score-source",
    default=None,
    help="The consumer reporting agency the credit scores come from: name, address and telephone, one a line.",
)
def tenants_notice_settings(tenant: str, **values: str | None) -> None:
    """Set TENANT's adverse-action notice settings (given options only); without options, show them."""
    from fastloans.tenants import notice_settings, set_notice_settings

    columns = {
        column: values[option.removeprefix("--").replace("-", "_")] for column, option in NOTICE_SETTING_OPTIONS.items()
    }
    given = {column: value.replace("\\n", "\n") for column, value in columns.items() if value is not None}
    try:
        row = _with_connection(
            lambda conn: set_notice_settings(conn, tenant, **given) if given else notice_settings(conn, tenant)
        )
    except ValueError as error:
        message = str(error)
        for column, option in NOTICE_SETTING_OPTIONS.items():
            message = message.replace(column, option)
        raise click.ClickException(f"tenant {tenant}: {message}") from None
    if row is None:
        raise click.ClickException(
            f"no tenant named {tenant}" if given else f"tenant {tenant} has no notice settings (or does not exist)"
        )
    for column, option in NOTICE_SETTING_OPTIONS.items():
        shown = (row[column] or "").replace("\n", " / ") or "(not set)"
        click.echo(f"{option.removeprefix('--'):<14} {shown}")


@main.group()
def reviews() -> None:
    """Review cases of referred applications."""


@reviews.command("verify-chain")
@click.option("--tenant", required=True, help="Tenant name.")
def reviews_verify_chain(tenant: str) -> None:
    """Check every review case history of TENANT link by link; exit 1 at the first broken link."""
    from fastloans.db.reviews import verify_tenant

    cases, entries, broken = _with_connection(lambda conn: verify_tenant(conn, tenant))
    if broken is not None:
        where = "has no history" if broken.seq is None else f"entry {broken.seq}"
        click.echo(f"BROKEN case {broken.case_id} {where}: {broken.reason}")
        raise SystemExit(1)
    click.echo(f"OK tenant {tenant}: {cases} case(s), {entries} history entries, every chain verifies")


def _mount_plugins() -> None:
    for entry in entry_points(group=DEV_COMMAND_GROUP):
        main.add_command(entry.load(), entry.name)


_mount_plugins()
