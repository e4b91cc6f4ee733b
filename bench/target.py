"""The stack under test: the running `make up` stack when it answers, else one started for the benchmark."""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from fastloans.tenants import issue_key, set_rate_limit
from fastloans_dev.devstack.stack import SERVICES, Infra, Ports, ServiceSet
from fastloans_dev.devstack.system import log

BENCH_TENANT = "bench"
# Requests a second for the benchmark tenant: far above any rate offered, so every request pays for the
# per-tenant rate limit (as production traffic does) and none is refused.
BENCH_RATE_LIMIT = 1_000_000


@dataclass
class Target:
    """Where the stack listens, and which port belongs to which component (to find its processes)."""

    api_url: str
    primary_url: str
    replica_url: str
    kafka: str
    component_ports: dict[str, int]
    reused: bool
    environment: dict[str, str] = field(default_factory=dict)
    infra: Infra | None = None
    # The gateway's /metrics (its ops port), for the per-second timeline.
    metrics_url: str | None = None
    services: ServiceSet | None = None

    @property
    def host(self) -> str:
        """The gateway's host:port, for the Host header."""
        return urlsplit(self.api_url).netloc

    @property
    def address(self) -> tuple[str, int]:
        """The gateway's host and port."""
        parts = urlsplit(self.api_url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def stop(self) -> None:
        """Stop what the benchmark started (a reused stack is left running)."""
        if self.services is not None:
            self.services.stop_all()
        if self.infra is not None:
            self.infra.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 - http URL of the stack
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip().strip('"')
    return values


def _port(url: str) -> int:
    return urlsplit(url if "://" in url else f"tcp://{url}").port or 0


def running_stack(state: Path) -> Target | None:
    """The stack `make up` runs, if its settings file exists and its gateway answers."""
    env_file = state / "stack.env"
    if not env_file.exists():
        return None
    env = _read_env(env_file)
    api = env.get("FASTLOANS_API_URL", "")
    # `make up` lists the metrics URLs in the order it starts the services; the gateway's is on its ops port.
    metrics = dict(zip(SERVICES, env.get("FASTLOANS_METRICS_URLS", "").split(), strict=False))
    if not api or not _answers(metrics.get("gateway", "").removesuffix("/metrics")):
        return None
    ports = {
        "postgres-primary": _port(env["DATABASE_URL"]),
        "postgres-replica": _port(env["DATABASE_READ_URL"]),
        "kafka": _port(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0]),
    }
    for name, url in metrics.items():
        ports[name] = _port(url)
    ports["gateway"] = _port(api)
    return Target(
        api_url=api,
        primary_url=env["DATABASE_URL"],
        replica_url=env["DATABASE_READ_URL"],
        kafka=env["KAFKA_BOOTSTRAP_SERVERS"],
        component_ports=ports,
        reused=True,
        metrics_url=metrics.get("gateway"),
    )


def start_stack(state: Path, *, durable: bool, extra_env: dict[str, str]) -> Target:
    """Start PostgreSQL, Kafka and every service on free ports, with their data in `state`."""
    ports = Ports.free()
    infra = Infra(state, ports, durable=durable)
    environment = {"FASTLOANS_STATE_DIR": str(state), **extra_env}
    services = ServiceSet(infra, extra_env=environment)
    target = Target(
        api_url=f"http://127.0.0.1:{ports.services['gateway']}",
        primary_url=infra.postgres.primary_url,
        replica_url=infra.postgres.replica_url,
        kafka=infra.kafka.bootstrap_servers,
        component_ports={
            "postgres-primary": ports.pg_primary,
            "postgres-replica": ports.pg_replica,
            "kafka": ports.kafka[0],
            **ports.services,
        },
        reused=False,
        environment=environment,
        infra=infra,
        services=services,
        metrics_url=f"http://127.0.0.1:{ports.ops_port('gateway')}/metrics",
    )
    try:
        infra.start()
        services.start_all()
    except BaseException:
        target.stop()
        raise
    log(f"benchmark stack ready: {target.api_url} (state in {state})")
    return target


async def issue_keys(primary_url: str, count: int) -> list[str]:
    """`count` API keys of the benchmark tenant, whose own rate limit is counted but never reached."""
    conn = await asyncpg.connect(primary_url)
    try:
        keys = [
            (await issue_key(conn, BENCH_TENANT, scopes=("submit", "read"), label="benchmark")).key
            for _ in range(count)
        ]
        await set_rate_limit(conn, BENCH_TENANT, per_second=BENCH_RATE_LIMIT, burst=2 * BENCH_RATE_LIMIT)
        return keys
    finally:
        await conn.close()


def bench_keys(primary_url: str, count: int) -> list[str]:
    """Synchronous wrapper of `issue_keys`."""
    return asyncio.run(issue_keys(primary_url, count))


def state_root() -> Path:
    """The stack state folder `make up` uses (`.fastloans/`, or $FASTLOANS_STATE_DIR)."""
    return Path(os.environ.get("FASTLOANS_STATE_DIR") or Path.cwd() / ".fastloans").absolute()
