"""The whole local stack: infrastructure (PostgreSQL pair, Kafka) and the service processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from fastloans import services as registry
from fastloans.db.migrate import upgrade
from fastloans.kafka import create_topics
from fastloans.settings import Settings
from fastloans.tenants import KeyConflictError, issue_key
from fastloans_dev.devstack.kafka import KafkaCluster
from fastloans_dev.devstack.postgres import PostgresPair
from fastloans_dev.devstack.system import Child, StackError, free_port, log, require_free, wait_for

# name -> (console script, default port), from the service registry.
SERVICES: dict[str, tuple[str, int]] = {s.short: (s.command, s.port) for s in registry.SERVICES}
# name -> default port of /healthz, /readyz and /metrics (OPS_PORT), for the services that keep them off their main
# port; the other services serve them on their only port.
OPS_PORTS: dict[str, int] = {s.short: s.ops_port for s in registry.SERVICES if s.ops_port is not None}


@dataclass
class Ports:
    """Every port the stack listens on (all on 127.0.0.1)."""

    pg_primary: int = 5432
    pg_replica: int = 5433
    kafka: list[int] = field(default_factory=lambda: [9092])
    kafka_controller: list[int] = field(default_factory=lambda: [9093])
    services: dict[str, int] = field(default_factory=lambda: {n: p for n, (_, p) in SERVICES.items()})
    ops: dict[str, int] = field(default_factory=lambda: dict(OPS_PORTS))

    @classmethod
    def from_env(cls) -> Ports:
        """Defaults, overridden by FASTLOANS_{PG,REPLICA,KAFKA}_PORT, FASTLOANS_<SERVICE>_PORT and _OPS_PORT."""
        env = os.environ
        ports = cls(
            pg_primary=int(env.get("FASTLOANS_PG_PORT", 5432)),
            pg_replica=int(env.get("FASTLOANS_REPLICA_PORT", 5433)),
        )
        kafka = int(env.get("FASTLOANS_KAFKA_PORT", 9092))
        nodes = int(env.get("FASTLOANS_KAFKA_NODES", 1))
        controller = int(env.get("FASTLOANS_KAFKA_CONTROLLER_PORT", kafka + 1))
        # Node i listens on FASTLOANS_KAFKA_PORT + 2i and its controller on FASTLOANS_KAFKA_CONTROLLER_PORT + 2i.
        ports.kafka = [kafka + 2 * i for i in range(nodes)]
        ports.kafka_controller = [controller + 2 * i for i in range(nodes)]
        for name in ports.services:
            ports.services[name] = int(env.get(f"FASTLOANS_{name.upper()}_PORT", ports.services[name]))
        for name in ports.ops:
            ports.ops[name] = int(env.get(f"FASTLOANS_{name.upper()}_OPS_PORT", ports.ops[name]))
        return ports

    @classmethod
    def free(cls) -> Ports:
        """A free loopback port for everything (one Kafka node): for tests, the benchmark and chaos runs."""
        return cls(
            pg_primary=free_port(),
            pg_replica=free_port(),
            kafka=[free_port()],
            kafka_controller=[free_port()],
            services={name: free_port() for name in SERVICES},
            ops={name: free_port() for name in OPS_PORTS},
        )

    def ops_port(self, name: str) -> int:
        """The port of a service's /healthz, /readyz and /metrics."""
        return self.ops.get(name, self.services[name])

    def named(self) -> dict[str, int]:
        """Every port with a readable name, for the already-in-use check."""
        named = {"PostgreSQL primary": self.pg_primary, "PostgreSQL replica": self.pg_replica}
        for i, (port, cport) in enumerate(zip(self.kafka, self.kafka_controller, strict=True)):
            named[f"Kafka broker {i + 1}"] = port
            named[f"Kafka controller {i + 1}"] = cport
        named.update({f"{name} service": port for name, port in self.services.items()})
        named.update({f"{name} ops": port for name, port in self.ops.items()})
        return named


class Infra:
    """PostgreSQL primary + replica and Kafka, initialised on first start and reused afterwards."""

    def __init__(
        self,
        state: Path,
        ports: Ports,
        *,
        durable: bool = True,
        partitions: int = 6,
        kafka_nodes: int | None = None,
        kafka_heap: str = "512m",
        synchronous: str | None = None,
        multi_host: bool = False,
    ) -> None:
        if kafka_nodes is not None and kafka_nodes != len(ports.kafka):
            # More (or fewer) brokers than ports given: the extra ones get free ports.
            ports.kafka = (ports.kafka + [free_port() for _ in range(kafka_nodes)])[:kafka_nodes]
            ports.kafka_controller = (ports.kafka_controller + [free_port() for _ in range(kafka_nodes)])[:kafka_nodes]
        self.state = state
        self.ports = ports
        self.partitions = partitions
        self.log_dir = state / "logs"
        self.postgres = PostgresPair(
            state / "pg",
            primary_port=ports.pg_primary,
            replica_port=ports.pg_replica,
            log_dir=self.log_dir,
            durable=durable,
            synchronous=synchronous,
        )
        # The services get both servers in each URL and follow a failover by themselves.
        self.multi_host = multi_host
        self.kafka = KafkaCluster(
            state / "kafka",
            ports=ports.kafka,
            controller_ports=ports.kafka_controller,
            log_dir=self.log_dir,
            heap=kafka_heap,
        )

    def database_urls(self) -> tuple[str, str]:
        """The URLs of the primary (writes) and the replica (reads), as the services get them."""
        if self.multi_host:
            return self.postgres.multi_host_url(), self.postgres.multi_host_url(read=True)
        return self.postgres.primary_url, self.postgres.replica_url

    def env(self, *, database: bool = True) -> dict[str, str]:
        """The settings a service needs to reach this infrastructure (without the database's if it uses none)."""
        write, read = self.database_urls()
        urls = {"DATABASE_URL": write, "DATABASE_READ_URL": read}
        return {**(urls if database else {}), "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers}

    def settings(self) -> Settings:
        """Base settings pointing at this infrastructure."""
        write, read = self.database_urls()
        return Settings(
            database_url=write,
            database_read_url=read,
            kafka_bootstrap_servers=self.kafka.bootstrap_servers,
            service_name="fastloans-devstack",
        )

    def start(self) -> None:
        """Start both databases and Kafka, migrate, and create the topics."""
        started = time.monotonic()
        self.postgres.start()
        log(f"PostgreSQL primary :{self.ports.pg_primary} and streaming replica :{self.ports.pg_replica} ready")
        upgrade(self.postgres.primary_url)
        log("migrations applied")
        self.kafka.start()
        asyncio.run(self._topics())
        log(f"Kafka {self.kafka.bootstrap_servers} ready with topics ({time.monotonic() - started:.1f}s)")

    async def _topics(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            try:
                await create_topics(
                    self.settings(),
                    partitions=self.partitions,
                    replication_factor=self.kafka.replication,
                    min_insync_replicas=self.kafka.min_isr,
                )
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise StackError(f"could not create the Kafka topics: {error}") from error
                await asyncio.sleep(0.5)

    def stop(self) -> None:
        """Stop Kafka, then the databases."""
        self.kafka.stop()
        self.postgres.stop()


# What a service without a database does not inherit from the caller's environment (a sourced stack.env).
DATABASE_VARIABLES = frozenset({"DATABASE_URL", "DB_URL", "DATABASE_READ_URL", "DATABASE_PASSWORD"})


class ServiceSet:
    """The service processes, started from the virtualenv's console scripts."""

    def __init__(self, infra: Infra, *, extra_env: dict[str, str] | None = None) -> None:
        self.infra = infra
        self.extra_env = extra_env or {}
        self.children: dict[str, Child] = {}

    @staticmethod
    def available() -> list[str]:
        """The services whose console scripts are installed."""
        bindir = Path(sys.executable).parent
        return [name for name, (script, _) in SERVICES.items() if (bindir / script).exists() or shutil.which(script)]

    def env_for(self, name: str, port: int) -> dict[str, str]:
        """The environment of one service process (a service without a database gets no database URL)."""
        database = registry.by_short(name).database
        inherited = {k: v for k, v in os.environ.items() if database or k not in DATABASE_VARIABLES}
        return {
            **inherited,
            **self.infra.env(database=database),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "ENVIRONMENT": os.environ.get("ENVIRONMENT", "development"),
            **self.extra_env,
        }

    def start(
        self, name: str, *, instance: str | None = None, port: int | None = None, ops_port: int | None = None
    ) -> Child:
        """Start one instance of a service (several instances get distinct names and ports)."""
        script, _ = SERVICES[name]
        bindir = Path(sys.executable).parent
        executable = str(bindir / script) if (bindir / script).exists() else script
        key = instance or name
        port = port or self.infra.ports.services[name]
        env = self.env_for(name, port)
        env["FASTLOANS_INSTANCE"] = key
        if name in self.infra.ports.ops:
            # Another instance of the service needs an ops port of its own.
            ops_port = ops_port or (self.infra.ports.ops[name] if key == name else free_port())
            env["OPS_PORT"] = str(ops_port)
        else:
            ops_port = port
        child = Child(name=key, argv=[executable], log_path=self.infra.log_dir / f"{key}.log", env=env)
        child.start()
        child.port = port  # type: ignore[attr-defined]
        child.ops_port = ops_port  # type: ignore[attr-defined]
        self.children[key] = child
        return child

    def wait_ready(self, child: Child, timeout: float = 60.0) -> None:
        """Wait until the service answers 200 on /readyz."""
        url = f"http://127.0.0.1:{child.ops_port}/readyz"  # type: ignore[attr-defined]

        def ready() -> bool:
            if not child.running:
                raise StackError(f"{child.name} exited during start:\n{child.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_for(ready, timeout=timeout, what=f"{child.name} to be ready ({url})", interval=0.2)

    def start_all(self) -> None:
        """Start every installed service and wait until each is ready."""
        for name in self.available():
            self.start(name)
        for child in self.children.values():
            self.wait_ready(child)

    def stop_all(self) -> None:
        """SIGTERM every service (the gateway first) and wait for each to exit."""
        for name in ["gateway", *[n for n in self.children if n != "gateway"]]:
            if name in self.children:
                self.children[name].stop(timeout=30)


DEMO_TENANT = "demo"
# The web page and the README's examples submit and read; admin keys are made on purpose with `fastloans keys create`.
DEMO_SCOPES = ("submit", "read")


async def register_demo_key(primary_url: str, key: str | None) -> str:
    """Make sure the demo tenant exists with `key` (or a new key); returns the key."""
    conn = await asyncpg.connect(primary_url)
    try:
        issued = await issue_key(conn, DEMO_TENANT, scopes=DEMO_SCOPES, key=key, label="make up demo key")
    finally:
        await conn.close()
    return issued.key


def demo_environment() -> bool:
    """Whether this stack runs in development, the only environment with a demo key."""
    default = Settings.model_fields["environment"].default
    return os.environ.get("ENVIRONMENT", default) == "development"


def prepare_demo_key(state: Path, primary_url: str) -> str | None:
    """The demo tenant's key, registered now: $FASTLOANS_DEMO_API_KEY, else the one kept in the state.

    None outside development. A kept key that was revoked (or belongs to another tenant) is
    replaced by a new one; a revoked $FASTLOANS_DEMO_API_KEY stops the start.
    """
    if not demo_environment():
        return None
    given = os.environ.get("FASTLOANS_DEMO_API_KEY") or None
    path = state / "demo-api-key"
    kept = path.read_text().strip() if path.exists() else None
    try:
        key = asyncio.run(register_demo_key(primary_url, given or kept))
    except KeyConflictError as error:
        if given:
            raise StackError(f"FASTLOANS_DEMO_API_KEY cannot be used: {error}") from None
        log(f"the demo key kept in {path} cannot be used ({error}); a new one replaces it")
        key = asyncio.run(register_demo_key(primary_url, None))
    except ValueError as error:  # a malformed key (KeyConflictError, a ValueError too, is handled above)
        raise StackError(f"FASTLOANS_DEMO_API_KEY cannot be used: {error}") from None
    if not given:
        path.write_text(key + "\n")
        os.chmod(path, 0o600)
    return key


def write_stack_env(state: Path, values: dict[str, str]) -> Path:
    """Write `.fastloans/stack.env` (readable only by its owner: it holds the demo key)."""
    path = state / "stack.env"
    tmp = path.with_suffix(".tmp")
    # Quoted so that `source .fastloans/stack.env` works in a shell (some values hold spaces).
    tmp.write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def up(state: Path) -> int:
    """Run the whole stack in the foreground until SIGINT or SIGTERM."""
    started = time.monotonic()
    ports = Ports.from_env()
    stack_env = state / "stack.env"
    if stack_env.exists():
        stack_env.unlink()
    require_free(ports.named())
    stopping = {"flag": False}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    # FASTLOANS_PG_SYNCHRONOUS=on (or remote_apply): commits wait for the replica; FASTLOANS_PG_MULTIHOST=1: the
    # services get both servers in each URL (what a failover needs).
    infra = Infra(
        state,
        ports,
        synchronous=os.environ.get("FASTLOANS_PG_SYNCHRONOUS") or None,
        multi_host=os.environ.get("FASTLOANS_PG_MULTIHOST", "") not in {"", "0"},
    )
    services = ServiceSet(infra, extra_env={"FASTLOANS_STATE_DIR": str(state)})
    try:
        infra.start()
        key = prepare_demo_key(state, infra.postgres.primary_url)
        services.start_all()
        gateway = f"http://127.0.0.1:{ports.services['gateway']}"
        metrics = " ".join(f"http://127.0.0.1:{c.ops_port}/metrics" for c in services.children.values())  # type: ignore[attr-defined]
        write_stack_env(
            state,
            {
                "FASTLOANS_API_URL": gateway,
                **infra.env(),
                "FASTLOANS_METRICS_URLS": metrics,
                **({"FASTLOANS_DEMO_API_KEY": key} if key else {}),
            },
        )
        log(f"ready in {time.monotonic() - started:.1f}s")
        demo_line = f"  Demo key   {key}\n" if key else ""
        print(
            f"\n  API        {gateway}/api/v1/loan_applications\n  Web page   {gateway}/\n"
            f"  API docs   {gateway}/docs\n{demo_line}  Primary    {infra.postgres.primary_url}\n"
            f"  Replica    {infra.postgres.replica_url}\n  Kafka      {infra.kafka.bootstrap_servers}\n"
            f"  Settings   {stack_env}\n  Logs       {infra.log_dir}/\n"
            "  Reviewer   fastloans keys create --tenant demo --scopes review --actor reviewer-1"
            " (supervisor: --scopes supervise --actor supervisor-1; a referring policy:"
            " POLICY_FILE=shared/fastloans/policy/seed-with-review.yaml)\n\nCtrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for child in list(services.children.values()):
                if not child.running:
                    log(
                        f"{child.name} exited (code {child.process.returncode}); restarting it. Last lines:\n"  # type: ignore[union-attr]
                        f"{child.tail(10)}"
                    )
                    services.start(child.name)
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping")
    except StackError as error:
        log(f"error: {error}")
        code = 1
    finally:
        # Whatever stops the start (an unexpected error too), nothing it started is left running.
        _shutdown(services, infra, stack_env)
    log("stopped")
    return code


def _shutdown(services: ServiceSet, infra: Infra, stack_env: Path) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if stack_env.exists():
        stack_env.unlink()
    services.stop_all()
    infra.stop()
