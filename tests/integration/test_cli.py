"""The `fastloans` command against the real database and broker."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fastloans.cli import main


@pytest.fixture
def env(infra, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"DATABASE_URL": infra.postgres.primary_url, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}


def test_keys_create_list_revoke(env: dict[str, str]) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--tenant", "cli-tenant", "--scopes", "read"], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("fl_") and len(key) > 40
    listing = runner.invoke(main, ["keys", "list"], env=env)
    assert listing.exit_code == 0 and key[:11] in listing.output and key not in listing.output
    revoked = runner.invoke(main, ["keys", "revoke", key[:11]], env=env)
    assert revoked.exit_code == 0 and "revoked 1" in revoked.output
    again = runner.invoke(main, ["keys", "revoke", key[:11]], env=env)
    assert again.exit_code != 0 and "no live key" in again.output


def test_bad_scope_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--tenant", "x", "--scopes", "everything"], env=env)
    assert result.exit_code == 2 and "unknown scope" in result.output


def test_a_reviewer_key_has_an_actor(env: dict[str, str], infra) -> None:
    runner = CliRunner()
    created = runner.invoke(
        main, ["keys", "create", "--tenant", "cli-tenant", "--scopes", "review", "--actor", "reviewer-1"], env=env
    )
    assert created.exit_code == 0, created.output
    assert "actor=reviewer-1" in created.stderr
    listing = runner.invoke(main, ["keys", "list"], env=env)
    assert f"{created.stdout.strip()[:11]}  cli-tenant" in listing.output and "actor=reviewer-1" in listing.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scopes", "supervise"], "needs an actor"),
        (["--scopes", "review", "--actor", "two words"], "an actor is an identifier"),
    ],
)
def test_a_review_key_without_a_proper_actor_is_refused(
    env: dict[str, str], arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--tenant", "cli-tenant", *arguments], env=env)
    assert result.exit_code == 2 and message in result.output and "--actor" in result.output


def test_migrations_and_topics_are_idempotent(env: dict[str, str]) -> None:
    runner = CliRunner()
    upgraded = runner.invoke(main, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    topics = runner.invoke(main, ["kafka", "create-topics", "--partitions", "3"], env=env)
    assert topics.exit_code == 0 and "nothing (all topics exist)" in topics.output


def test_missing_setting_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = CliRunner().invoke(main, ["keys", "list"], env={"DATABASE_URL": "postgresql://a@b/c"})
    assert result.exit_code == 2
    assert "configuration error: KAFKA_BOOTSTRAP_SERVERS is required but not set" in result.output


def test_a_database_command_without_database_url_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "DB_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["keys", "list"], env={"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert result.exit_code == 1
    assert "DATABASE_URL is not set: this command needs the primary's address" in result.output


def test_topics_are_created_without_a_database(infra, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The chart's topics Job gets no database settings (it is not admitted to PostgreSQL)."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "DB_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}
    result = CliRunner().invoke(main, ["kafka", "create-topics", "--partitions", "3"], env=env)
    assert result.exit_code == 0, result.output
