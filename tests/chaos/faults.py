"""Fault injection: SIGKILL and restart services, restart or kill Kafka brokers, restart the PostgreSQL primary."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

from fastloans import services as registry
from fastloans_dev.devstack.stack import Infra
from tests.chaos.fleet import Fleet

# One SIGKILL fault per service of the registry (the webhooks dispatcher too).
SERVICE_KILLS = tuple(f"kill-{service.short}" for service in registry.SERVICES)
DEFAULT_FAULTS = (*SERVICE_KILLS, "restart-kafka", "restart-postgres")
ALL_FAULTS = (*DEFAULT_FAULTS, "kill-broker")


def schedule(kinds: tuple[str, ...], duration: float, rng: random.Random) -> list[tuple[float, str]]:
    """When to inject what: every kind once per ~100 s of load, spread over the first 80% of the run."""
    rounds = max(1, round(duration / 100))
    faults = [kind for _ in range(rounds) for kind in rng.sample(kinds, len(kinds))]
    start, span = 0.1 * duration, 0.7 * duration
    slot = span / len(faults)
    return [(start + (i + rng.uniform(0.1, 0.9)) * slot, kind) for i, kind in enumerate(faults)]


class FaultInjector:
    """Injects one fault at a time and counts them by kind."""

    def __init__(self, fleet: Fleet, infra: Infra, rng: random.Random, log: Callable[[str], None]) -> None:
        self.fleet = fleet
        self.infra = infra
        self.rng = rng
        self.log = log
        self.counts: Counter[str] = Counter()

    async def run(self, plan: list[tuple[float, str]], started: float) -> None:
        """Inject each planned fault at its time (later if the previous one is still recovering)."""
        loop = asyncio.get_running_loop()
        for at, kind in plan:
            await asyncio.sleep(max(0.0, started + at - loop.time()))
            await self.inject(kind)

    async def inject(self, kind: str) -> None:
        """Inject one fault and wait until the system has the failed part back."""
        if kind.startswith("kill-") and kind != "kill-broker":
            service = kind.removeprefix("kill-")
            instance = self.rng.choice(self.fleet.instances(service))
            self.log(f"fault: SIGKILL {instance}")
            await asyncio.to_thread(self.fleet.kill, instance)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            await asyncio.to_thread(self.fleet.start, service, instance)
        elif kind == "restart-kafka":
            node = self.rng.randrange(len(self.infra.kafka.nodes))
            self.log(f"fault: restarting Kafka broker {node + 1}")
            await asyncio.to_thread(self.infra.kafka.restart_node, node)
        elif kind == "kill-broker":
            node = self.rng.randrange(len(self.infra.kafka.nodes))
            self.log(f"fault: SIGKILL Kafka broker {node + 1}")
            await asyncio.to_thread(self.infra.kafka.kill_node, node)
            await asyncio.sleep(self.rng.uniform(8.0, 15.0))
            self.log(f"fault: starting Kafka broker {node + 1} again")
            await asyncio.to_thread(self.infra.kafka.start_node, node)
        elif kind == "restart-postgres":
            self.log("fault: restarting the PostgreSQL primary")
            await asyncio.to_thread(self.infra.postgres.primary.restart)
        else:
            raise ValueError(f"unknown fault {kind}")
        self.counts[kind] += 1
        self.log(f"fault: {kind} recovered")
