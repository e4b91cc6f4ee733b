"""A pipeline of a test module's own: its services on a topic prefix and consumer groups nobody else uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastloans.kafka import create_topics
from fastloans_dev.devstack.stack import ServiceSet
from fastloans_dev.devstack.system import Child, free_port


@asynccontextmanager
async def pipeline_of_its_own(
    infra: Any, prefix: str, names: Iterable[str], env: dict[str, str]
) -> AsyncIterator[dict[str, Child]]:
    """The topics under `prefix`, then one ready instance of each named service with `env` (and KAFKA_TOPIC_PREFIX
    and its own consumer group); every instance is stopped afterwards, also when one failed to start."""
    await create_topics(
        infra.settings().model_copy(update={"kafka_topic_prefix": prefix}),
        partitions=2,
        replication_factor=infra.kafka.replication,
        min_insync_replicas=infra.kafka.min_isr,
    )
    sets = {
        name: ServiceSet(
            infra, extra_env={**env, "KAFKA_TOPIC_PREFIX": prefix, "KAFKA_CONSUMER_GROUP": f"{prefix}{name}"}
        )
        for name in names
    }

    def start() -> dict[str, Child]:
        children = {
            name: service_set.start(name, instance=f"{prefix}{name}", port=free_port())
            for name, service_set in sets.items()
        }
        for name, child in children.items():
            sets[name].wait_ready(child, timeout=120)
        return children

    def stop() -> None:
        for service_set in sets.values():
            service_set.stop_all()

    try:
        yield await asyncio.to_thread(start)
    finally:
        await asyncio.to_thread(stop)
