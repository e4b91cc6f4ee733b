"""Scaling the consumer services up and down under load: partitions move, nothing is lost or applied twice."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.chaos.fleet import CONSUMERS, Fleet
from tests.chaos.invariants import verify, wait_drained
from tests.chaos.load import LoadGenerator


async def processed(url: str) -> float:
    """How many messages an instance has processed, from its /metrics."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fastloans_messages_processed_total{")
    )


async def test_scaling_consumers_up_and_down_under_load(
    services: object, infra: object, api_url: str, tenant_key: str, pg: asyncpg.Pool
) -> None:
    fleet = Fleet(services)  # type: ignore[arg-type]
    load = LoadGenerator([api_url], tenant_key, rate=5, seed=11)
    loading = asyncio.create_task(load.run(duration=900))
    added: list[str] = []
    exit_codes = {}
    try:
        await asyncio.sleep(3)
        for service in CONSUMERS:  # 1 → 3 instances: one partition each
            for _ in range(2):
                added.append(await asyncio.to_thread(fleet.start, service))
        busy: set[str] = set()
        for _ in range(120):
            busy = {name for name in added if await processed(fleet.ops_url(name)) > 0}
            if busy == set(added):
                break
            await asyncio.sleep(1)
        assert busy == set(added), "every added instance takes a share of the work"
        for name in added:  # 3 → 1 instance, under load
            exit_codes[name] = await asyncio.to_thread(fleet.terminate, name, 60)
            fleet.remove(name)
        await asyncio.sleep(5)
    finally:
        load.stop()
        await loading
        for name in added:
            if name in fleet.kinds:
                fleet.terminate(name)
                fleet.remove(name)
    assert exit_codes == dict.fromkeys(added, 0)
    settings = infra.settings()  # type: ignore[attr-defined]
    await wait_drained(pg, settings, list(load.stats.accepted.values()), within=180)
    verdict = await verify(pg, settings, api_url, tenant_key, load.stats)
    assert load.stats.rejected == 0 and load.stats.abandoned == 0 and verdict.accepted > 50, verdict.summary()
    assert verdict.ok, "\n".join([verdict.summary(), *verdict.examples])
