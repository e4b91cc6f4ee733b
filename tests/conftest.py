"""Session fixtures: one real PostgreSQL primary + replica and one real Kafka broker per test run,
started by the same code as `make up`; the services as real processes for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """This test run's stack state: .fastloans/test-run-<pid> (kept afterwards for its logs).

    Runs at the same time get separate directories and ports; directories of
    finished runs are removed when the next run starts.
    """
    base = ROOT / ".fastloans"
    base.mkdir(exist_ok=True)
    for old in base.glob("test-run-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            target = old.resolve()
            shutil.rmtree(target, ignore_errors=True)
            if old.is_symlink() or old.exists():
                old.unlink() if old.is_symlink() else shutil.rmtree(old, ignore_errors=True)
    path = base / f"test-run-{os.getpid()}"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def infra(state_dir: Path) -> Iterator[object]:
    """PostgreSQL primary + streaming replica and a Kafka broker on free loopback ports, migrated, with topics."""
    from fastloans_dev.devstack.stack import Infra, Ports

    ports = Ports.free()
    stack = Infra(state_dir, ports, durable=False, partitions=3)
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


@dataclass
class MigratedDb:
    """URLs of the migrated test database."""

    primary_url: str
    replica_url: str


@pytest.fixture(scope="session")
def migrated_db(infra: object) -> MigratedDb:
    """The test database (migrations already applied by the stack)."""
    return MigratedDb(primary_url=infra.postgres.primary_url, replica_url=infra.postgres.replica_url)  # type: ignore[attr-defined]


# What every service the tests start gets: no key cache and no rate limits (the tests of those set their own).
TEST_SERVICE_ENV = {
    "ENVIRONMENT": "test",
    "AUTH_CACHE_SECONDS": "0",
    "RATE_LIMIT_PER_SECOND": "0",
    "AUTH_FAILURE_RATE_PER_SECOND": "0",
    "LOG_LEVEL": "INFO",
    # Webhook retries in seconds rather than days, and a short attempt timeout (tests/e2e/test_webhooks.py).
    "WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,1,1,1,2,2,2,2,2,2",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
}


@contextmanager
def extra_instances(infra: object, service: str, instances: list[str], **env: str) -> Iterator[list[Any]]:
    """More instances of one service, each on free ports with TEST_SERVICE_ENV and `env`; stopped afterwards."""
    from fastloans_dev.devstack.stack import ServiceSet
    from fastloans_dev.devstack.system import free_port

    service_set = ServiceSet(infra, extra_env={**TEST_SERVICE_ENV, **env})  # type: ignore[arg-type]
    try:
        children = [service_set.start(service, instance=name, port=free_port()) for name in instances]
        for child in children:
            service_set.wait_ready(child)
        yield children
    finally:
        service_set.stop_all()


@pytest.fixture(scope="session")
def services(infra: object) -> Iterator[object]:
    """Every service as a real process against the test infrastructure."""
    from fastloans_dev.devstack.stack import ServiceSet

    service_set = ServiceSet(infra, extra_env=TEST_SERVICE_ENV)  # type: ignore[arg-type]
    try:
        service_set.start_all()
    except Exception:
        service_set.stop_all()
        raise
    yield service_set
    service_set.stop_all()


@pytest.fixture(scope="session")
def api_url(services: object, infra: object) -> str:
    """The gateway's base URL."""
    return f"http://127.0.0.1:{infra.ports.services['gateway']}"  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def ops_url(services: object, infra: object) -> str:
    """The base URL of the gateway's /healthz, /readyz and /metrics (not the public port)."""
    return f"http://127.0.0.1:{infra.ports.ops_port('gateway')}"  # type: ignore[attr-defined]


async def issue_test_key(primary_url: str, tenant: str, scopes: tuple[str, ...] = ("submit", "read")) -> str:
    """Create a tenant (if new) and an API key for it."""
    from fastloans.tenants import issue_key

    conn = await asyncpg.connect(primary_url)
    try:
        return (await issue_key(conn, tenant, scopes=scopes)).key
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def tenant_key(migrated_db: MigratedDb) -> str:
    """An API key (submit + read) of a tenant used by most tests."""
    return await issue_test_key(migrated_db.primary_url, f"tenant-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def client(api_url: str, tenant_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the gateway, authenticated as the test tenant."""
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=40
    ) as http:
        yield http


@pytest.fixture(scope="session")
async def pg(migrated_db: MigratedDb) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the primary, for checking what the services stored."""
    pool = await asyncpg.create_pool(migrated_db.primary_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/unit are marked `unit`; tests under tests/e2e are marked `e2e`."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts[0] in {"unit", "integration", "e2e", "charts", "browser", "chaos"}:
            item.add_marker(getattr(pytest.mark, parts[0]))
