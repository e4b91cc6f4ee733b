"""The runtime `fastloans` command and the development package (devtools/) that adds `up` and `policy`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastloans import cli

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _dev_project() -> dict:
    return tomllib.loads((ROOT / "devtools" / "pyproject.toml").read_text())["project"]


def test_dev_commands_are_the_dev_package_entry_points() -> None:
    """The runtime command's list of development commands is what devtools/pyproject.toml registers."""
    assert sorted(_dev_project()["entry-points"][cli.DEV_COMMAND_GROUP]) == sorted(cli.DEV_COMMANDS)


def test_dev_commands_are_mounted_when_the_dev_package_is_installed() -> None:
    """In the development venv, `fastloans up` and `fastloans policy` come from fastloans_dev."""
    for name in cli.DEV_COMMANDS:
        assert cli.main.commands[name].callback.__module__.startswith("fastloans_dev.")


@pytest.mark.parametrize("name", cli.DEV_COMMANDS)
def test_a_missing_dev_command_says_how_to_get_it(name: str) -> None:
    """Without the development package (as in an image), `fastloans up` fails with a hint, not a bare error."""
    bare = type(cli.main)("fastloans", commands={"db": cli.db})
    result = CliRunner().invoke(bare, [name])
    assert result.exit_code == 2
    assert f"`fastloans {name}` is a development command" in result.output and "make venv" in result.output
    other = CliRunner().invoke(bare, ["nope"])
    assert other.exit_code == 2 and "No such command" in other.output


def test_the_runtime_library_carries_no_dev_tooling() -> None:
    """shared/ has no dev stack, no analysts' tools and no extra that pulls their dependencies into an image."""
    shared = ROOT / "shared"
    assert not (shared / "fastloans" / "devstack").exists()
    assert not any((shared / "fastloans" / "policy" / f"{name}.py").exists() for name in ("cli", "replay", "plot"))
    project = tomllib.loads((shared / "pyproject.toml").read_text())["project"]
    assert "optional-dependencies" not in project
    assert "matplotlib" not in project["dependencies"] and "matplotlib" in _dev_project()["dependencies"]
