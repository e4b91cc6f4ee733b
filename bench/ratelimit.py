"""`python -m bench.ratelimit`: what the per-tenant rate limit costs a gateway process.

Two figures, on a real PostgreSQL primary: the CPU time of one admission (a request of a tenant
the process already serves: dictionary look-ups and arithmetic, no I/O), and the latency of the
one statement each process runs per sync interval, for processes serving a number of tenants.
Uses the running `make up` stack's primary when there is one, else starts a PostgreSQL pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.target import running_stack, state_root
from fastloans.db import Database
from fastloans.db.migrate import upgrade
from fastloans.settings import Settings
from fastloans_dev.devstack.postgres import PostgresPair
from fastloans_dev.devstack.system import free_port, log
from fastloans_gateway.ratelimit import Limit, TenantLimiter


async def measure(
    primary_url: str,
    *,
    admissions: int = 200_000,
    syncs: int = 200,
    tenants: tuple[int, ...] = (1, 10, 100),
    processes: int = 4,
) -> dict[str, Any]:
    """Admission CPU per request and sync statement latency, with `processes` limiters on one database."""
    settings = Settings(database_url=primary_url, kafka_bootstrap_servers="127.0.0.1:9", service_name="bench-ratelimit")
    db = Database.from_settings(settings)
    load = os.getloadavg()
    try:
        limit = Limit.of(1_000_000_000, 2_000_000_000)  # never reached: every admission takes the full path
        limiter = TenantLimiter(db, interval=3600)  # synchronised by hand below
        tenant = uuid.uuid4()
        assert await limiter.admit(tenant, limit) is None  # the first admission waits for a sync
        started_cpu = time.process_time()
        for _ in range(admissions):
            await limiter.admit(tenant, limit)
        admit_us = (time.process_time() - started_cpu) / admissions * 1e6
        await limiter.stop()

        sync_ms: dict[str, Any] = {}
        for count in tenants:
            limiters = [TenantLimiter(db, interval=3600) for _ in range(processes)]
            ids = [uuid.uuid4() for _ in range(count)]
            for each in limiters:
                for tenant_id in ids:
                    await each.admit(tenant_id, limit)
            samples = []
            for i in range(syncs):
                each = limiters[i % processes]
                for tenant_id in ids:
                    await each.admit(tenant_id, limit)  # new counts to flush, as under load
                started = time.perf_counter()
                await each.sync()
                samples.append((time.perf_counter() - started) * 1000)
            for each in limiters:
                await each.stop()
            samples.sort()
            sync_ms[str(count)] = {
                "p50": round(statistics.median(samples), 3),
                "p99": round(samples[int(len(samples) * 0.99) - 1], 3),
            }
        return {
            "admit_cpu_us": round(admit_us, 2),
            "sync_statement_ms_by_tenants": sync_ms,
            "processes": processes,
            "admissions": admissions,
            "syncs_per_case": syncs,
            "load_before": [round(x, 2) for x in load],
        }
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures as JSON (and write them to --output when given)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--output", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    target = running_stack(state_root())
    pair: PostgresPair | None = None
    if target is not None:
        url = target.primary_url
    else:
        state = state_root() / "bench-ratelimit"
        pair = PostgresPair(
            state / "pg", primary_port=free_port(), replica_port=free_port(), log_dir=state / "logs", durable=True
        )
        pair.start()
        url = pair.primary_url
        upgrade(url)
    try:
        log(f"measuring the rate limiter on {url.rsplit('@', 1)[-1]}")
        figures = asyncio.run(measure(url))
    finally:
        if pair is not None:
            pair.stop()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
