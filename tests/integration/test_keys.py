"""API keys on the real database: a revoked key stays revoked, a key never changes tenant, the demo key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from fastloans.cli import main
from fastloans.tenants import KeyConflictError, hash_key, issue_key, new_key, revoke_key
from fastloans_dev.devstack.stack import DEMO_TENANT, prepare_demo_key
from fastloans_dev.devstack.system import StackError


def on_db(url: str, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Run `work` on a connection to `url` (these tests are synchronous: the code under test runs its own loop)."""

    async def run() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def key_row(url: str, key: str) -> asyncpg.Record | None:
    """The stored row of `key`, with its tenant's name."""
    return on_db(
        url,
        lambda conn: conn.fetchrow(
            "SELECT t.name AS tenant, k.scopes, k.revoked_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
            "WHERE k.key_hash = $1",
            hash_key(key),
        ),
    )


@pytest.fixture
def url(migrated_db: Any) -> str:
    return str(migrated_db.primary_url)


def test_a_revoked_key_is_never_reinstated(url: str) -> None:
    tenant = f"revoked-{uuid.uuid4().hex[:8]}"
    key = on_db(url, lambda conn: issue_key(conn, tenant, key=new_key())).key
    assert on_db(url, lambda conn: revoke_key(conn, key[:11])) == 1
    with pytest.raises(KeyConflictError, match="was revoked"):
        on_db(url, lambda conn: issue_key(conn, tenant, key=key, scopes=("submit", "read", "admin")))
    row = key_row(url, key)
    assert row["revoked_at"] is not None and list(row["scopes"]) == ["submit", "read"]


def test_a_key_never_moves_to_another_tenant(url: str) -> None:
    owner, intruder = f"owner-{uuid.uuid4().hex[:8]}", f"intruder-{uuid.uuid4().hex[:8]}"
    key = on_db(url, lambda conn: issue_key(conn, owner, key=new_key())).key
    with pytest.raises(KeyConflictError, match="another tenant"):
        on_db(url, lambda conn: issue_key(conn, intruder, key=key))
    assert key_row(url, key)["tenant"] == owner
    assert on_db(url, lambda conn: conn.fetchval("SELECT count(*) FROM tenants WHERE name = $1", intruder)) == 0


def test_a_live_key_is_registered_again_with_new_scopes(url: str) -> None:
    tenant = f"again-{uuid.uuid4().hex[:8]}"
    key = on_db(url, lambda conn: issue_key(conn, tenant, key=new_key(), scopes=("submit", "read", "admin"))).key
    again = on_db(url, lambda conn: issue_key(conn, tenant, key=key, scopes=("read",)))
    assert again.key == key
    row = key_row(url, key)
    assert row["revoked_at"] is None and list(row["scopes"]) == ["read"]


def test_cli_refuses_a_revoked_key_clearly(
    url: str, infra: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}
    runner = CliRunner()
    key = new_key()
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    created = runner.invoke(main, ["keys", "create", "--tenant", tenant, "--key-from-stdin"], input=key + "\n", env=env)
    assert created.exit_code == 0, created.output
    assert key not in created.stdout and key_row(url, key)["tenant"] == tenant
    assert runner.invoke(main, ["keys", "revoke", key[:11]], env=env).exit_code == 0
    again = runner.invoke(main, ["keys", "create", "--tenant", tenant, "--key-from-stdin"], input=key + "\n", env=env)
    assert again.exit_code == 1
    assert f"Error: the API key {key[:11]}… was revoked" in again.output and key not in again.output
    assert key_row(url, key)["revoked_at"] is not None


def test_cli_sets_and_clears_a_tenants_rate_limit(
    url: str, infra: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}
    tenant = f"limited-{uuid.uuid4().hex[:8]}"
    on_db(url, lambda conn: issue_key(conn, tenant))
    runner = CliRunner()
    limits = "SELECT rate_limit_per_second, rate_limit_burst FROM tenants WHERE name = $1"
    result = runner.invoke(main, ["tenants", "limit", tenant, "--per-second", "5", "--burst", "20"], env=env)
    assert result.exit_code == 0, result.output
    assert tuple(on_db(url, lambda conn: conn.fetchrow(limits, tenant))) == (5.0, 20)
    assert runner.invoke(main, ["tenants", "limit", tenant], env=env).exit_code == 0
    assert tuple(on_db(url, lambda conn: conn.fetchrow(limits, tenant))) == (None, None)
    missing = runner.invoke(main, ["tenants", "limit", "no-such-tenant", "--burst", "3"], env=env)
    assert missing.exit_code == 1 and "no tenant named no-such-tenant" in missing.output


def test_the_demo_key_exists_only_in_development(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTLOANS_DEMO_API_KEY", raising=False)
    demo_keys = "SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE t.name = $1"
    before = on_db(url, lambda conn: conn.fetchval(demo_keys, DEMO_TENANT))
    for environment in ("test", "staging", "production"):
        monkeypatch.setenv("ENVIRONMENT", environment)
        assert prepare_demo_key(tmp_path, url) is None
    assert not (tmp_path / "demo-api-key").exists()
    assert on_db(url, lambda conn: conn.fetchval(demo_keys, DEMO_TENANT)) == before
    monkeypatch.delenv("ENVIRONMENT")  # development by default
    key = prepare_demo_key(tmp_path, url)
    assert key is not None and (tmp_path / "demo-api-key").read_text().strip() == key
    row = key_row(url, key)
    assert row["tenant"] == DEMO_TENANT and sorted(row["scopes"]) == ["read", "submit"]
    assert prepare_demo_key(tmp_path, url) == key  # reused on the next start


def test_a_revoked_demo_key_stays_revoked(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTLOANS_DEMO_API_KEY", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    key = prepare_demo_key(tmp_path, url)
    assert key is not None
    on_db(url, lambda conn: revoke_key(conn, key[:11]))
    replacement = prepare_demo_key(tmp_path, url)
    assert replacement is not None and replacement != key
    assert (tmp_path / "demo-api-key").read_text().strip() == replacement
    assert key_row(url, key)["revoked_at"] is not None and key_row(url, replacement)["revoked_at"] is None
    monkeypatch.setenv("FASTLOANS_DEMO_API_KEY", key)
    with pytest.raises(StackError, match=r"FASTLOANS_DEMO_API_KEY cannot be used: .* was revoked"):
        prepare_demo_key(tmp_path, url)
    assert key_row(url, key)["revoked_at"] is not None
