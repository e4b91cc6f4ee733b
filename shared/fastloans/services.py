"""The service registry: one declaration per deployable process, and what it needs to run.

Settings defaults, the local stack, the Procfile, the benchmark and the chaos runs derive
from it; the chart's components, skaffold.yaml and the console scripts are tested against it.
A new service is one entry here plus its own package.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastloans.events import Topic

PREFIX = "fastloans-"


@dataclass(frozen=True)
class Service:
    """One deployable process: its name, code, port, topics and dependencies."""

    short: str
    # The Python package and the module whose `main` is the console script.
    package: str
    module: str
    # The settings class, as "module:Class".
    settings: str
    port: int
    consumes: Topic | None = None
    produces: tuple[Topic, ...] = ()
    # The image it runs (a directory under services/ holding its package); the relay runs the gateway's.
    image: str = ""
    # A second port for /healthz, /readyz and /metrics, kept off the main port (the gateway's API).
    ops_port: int | None = None
    # The primary; the replica (reads, or only its replication-lag gauge); Kafka; the credit policy files.
    database: bool = False
    replica: bool = False
    kafka: bool = True
    policy: bool = False

    @property
    def name(self) -> str:
        """The service name (SERVICE_NAME, log and metric label): fastloans-<short>."""
        return PREFIX + self.short

    @property
    def command(self) -> str:
        """The console script that runs it."""
        return self.name

    @property
    def entry_point(self) -> str:
        """The console script's target, as pyproject.toml declares it."""
        return f"{self.module}:main"

    @property
    def group(self) -> str | None:
        """Its default Kafka consumer group (None when it consumes nothing)."""
        return self.name if self.consumes is not None else None

    @property
    def image_name(self) -> str:
        """The image it runs (its own unless declared otherwise)."""
        return self.image or self.short

    @property
    def project(self) -> str:
        """The directory of the Python project that holds its package."""
        return f"services/{self.image_name}"


GATEWAY = Service(
    short="gateway",
    package="fastloans_gateway",
    module="fastloans_gateway.main",
    settings="fastloans_gateway.settings:GatewaySettings",
    port=8000,
    ops_port=9180,
    database=True,
    replica=True,
)
RELAY = Service(
    short="relay",
    package="fastloans_gateway",
    module="fastloans_gateway.relay",
    settings="fastloans_gateway.relay:RelaySettings",
    port=8004,
    image="gateway",
    produces=(Topic.SUBMITTED, Topic.DECIDED, Topic.DLQ),
    database=True,
    replica=True,
)
RISK = Service(
    short="risk",
    package="fastloans_risk",
    module="fastloans_risk.service",
    settings="fastloans_risk.service:RiskSettings",
    port=8001,
    consumes=Topic.SUBMITTED,
    produces=(Topic.SCORED, Topic.DLQ),
    policy=True,
)
APPROVAL = Service(
    short="approval",
    package="fastloans_approval",
    module="fastloans_approval.service",
    settings="fastloans_approval.service:ApprovalSettings",
    port=8002,
    consumes=Topic.SCORED,
    produces=(Topic.DECIDED, Topic.DLQ),
    policy=True,
)
RECORDER = Service(
    short="recorder",
    package="fastloans_recorder",
    module="fastloans_recorder.service",
    settings="fastloans_recorder.service:RecorderSettings",
    port=8003,
    consumes=Topic.DECIDED,
    produces=(Topic.DLQ,),
    database=True,
    replica=True,
)
WEBHOOKS = Service(
    short="webhooks",
    package="fastloans_webhooks",
    module="fastloans_webhooks.service",
    settings="fastloans_webhooks.settings:WebhooksSettings",
    port=8005,
    consumes=Topic.DECIDED,
    produces=(Topic.DLQ,),
    database=True,
    replica=True,
)

# In the order a submission travels; the local stack starts them in this order.
SERVICES: tuple[Service, ...] = (GATEWAY, RELAY, RISK, APPROVAL, RECORDER, WEBHOOKS)
CONSUMERS: tuple[Service, ...] = tuple(s for s in SERVICES if s.consumes is not None)
# The process the Procfile names `web` (the one a Heroku-style router sends HTTP to).
WEB = GATEWAY


def by_short(short: str) -> Service:
    """The service of that short name (KeyError if there is none)."""
    for service in SERVICES:
        if service.short == short:
            return service
    raise KeyError(short)


def images() -> dict[str, tuple[Service, ...]]:
    """Each image and the services that run it (its own first)."""
    built: dict[str, tuple[Service, ...]] = {}
    for service in SERVICES:
        built[service.image_name] = (*built.get(service.image_name, ()), service)
    return {name: tuple(sorted(runs, key=lambda s: s.short != name)) for name, runs in built.items()}


def image_ports(image: str) -> list[int]:
    """The ports an image's processes listen on (its own service's first), for EXPOSE."""
    ports: list[int] = []
    for service in images()[image]:
        ports += [service.port] + ([service.ops_port] if service.ops_port else [])
    return ports


def procfile() -> str:
    """The Procfile's text: the release step, then one line per process."""
    lines = ["release: fastloans db upgrade && fastloans kafka create-topics"]
    lines += [f"{'web' if s is WEB else s.short}: {s.command}" for s in SERVICES]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print one line per image: its name and the ports it exposes (for `make images`)."""
    for image in images():
        print(image, " ".join(map(str, image_ports(image))))


if __name__ == "__main__":
    main()
