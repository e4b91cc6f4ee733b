"""Graceful shutdown: SIGTERM each service in turn under load, restart it; nothing is lost or redelivered."""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from tests.chaos.fleet import Fleet
from tests.chaos.invariants import verify, wait_drained
from tests.chaos.load import LoadGenerator

ROLLING_ORDER = ("relay", "risk", "approval", "recorder", "gateway")


async def test_a_rolling_restart_under_load_loses_and_duplicates_nothing(
    services: object, infra: object, api_url: str, tenant_key: str, pg: asyncpg.Pool
) -> None:
    fleet = Fleet(services)  # type: ignore[arg-type]
    load = LoadGenerator([api_url], tenant_key, rate=5, seed=7, delete_share=0.05)
    loading = asyncio.create_task(load.run(duration=900))
    exit_codes = {}
    try:
        for name in ROLLING_ORDER:
            await asyncio.sleep(3)
            exit_codes[name] = await asyncio.to_thread(fleet.terminate, name, 60)
            await asyncio.to_thread(fleet.start, name, name)
        await asyncio.sleep(3)
    finally:
        load.stop()
        await loading
    # Each service finished its work and exited by itself: 0, or (uvicorn) re-raising the SIGTERM it handled
    # once it was done. A kill after the grace period would show as -9.
    assert {name: code in (0, -signal.SIGTERM) for name, code in exit_codes.items()} == dict.fromkeys(
        ROLLING_ORDER, True
    ), exit_codes
    settings = infra.settings()  # type: ignore[attr-defined]
    await wait_drained(pg, settings, list(load.stats.accepted.values()), within=180)
    verdict = await verify(pg, settings, api_url, tenant_key, load.stats)
    assert load.stats.rejected == 0 and load.stats.abandoned == 0 and verdict.accepted > 50, verdict.summary()
    assert verdict.ok, "\n".join([verdict.summary(), *verdict.examples])
    # Offsets were committed before each consumer exited: no decision had to be made twice.
    assert verdict.redelivered == 0, verdict.summary()
