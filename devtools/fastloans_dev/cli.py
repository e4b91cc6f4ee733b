"""`fastloans up`: the local stack, mounted by the runtime `fastloans` command when this package is installed."""

from __future__ import annotations

import sys

import click


@click.command()
def up() -> None:
    """Run the local stack in the foreground: PostgreSQL primary + replica, Kafka, every service."""
    from fastloans_dev.devstack.stack import up as run_up
    from fastloans_dev.devstack.system import StackError, state_dir

    try:
        code = run_up(state_dir())
    except StackError as error:
        click.echo(f"error: {error}", err=True)
        code = 1
    sys.exit(code)
