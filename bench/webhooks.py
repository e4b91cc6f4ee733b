"""The webhooks phase: what one subscribed endpoint adds per decision, and how soon a decision reaches it.

POSTs at a fixed rate (500/s) in alternating rounds, with the benchmark tenant's endpoint disabled and then
enabled. The receiver runs in a process of its own (outside the measured stack) and verifies every delivery
with `standardwebhooks`. Reported: the stack's CPU per decision (every process but the load generator, from
the start of the load until the last decision, or delivery, is done) with and without the endpoint, their
difference (medians of the rounds), and the delivery latency from `decided_at` to receipt.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import numpy as np

from bench.runner import Runner, percentiles
from bench.target import BENCH_TENANT
from bench.workload import accepted_ids
from fastloans.contracts import WEBHOOK_ENDPOINTS_PATH
from fastloans.tenants import issue_key
from fastloans_dev.devstack.system import free_port, log
from tests.webhook_receiver import serve_verified

EVENT = "application.decided"
# Components of the stack that are not the stack.
NOT_MEASURED = ("load generator",)
PENDING = "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'"
QUEUED = "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND application_id = ANY($2::uuid[])"


class ReceiverProcess:
    """A verifying receiver in a child process, so its CPU is not the stack's."""

    def __init__(self, secret: str, port: int) -> None:
        self.port = port
        self.control, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=serve_verified, args=(port, secret, child), daemon=True
        )
        self.process.start()
        if not self.control.poll(120) or self.control.recv() != "ready":
            raise RuntimeError("the webhook receiver did not start")

    def report(self) -> list[tuple[str, int, float, str | None]]:
        """Every request so far."""
        self.control.send("report")
        rows: list[tuple[str, int, float, str | None]] = self.control.recv()
        return rows

    def stop(self) -> None:
        """End the child."""
        self.control.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


async def _admin_client(runner: Runner) -> httpx.AsyncClient:
    conn = await asyncpg.connect(runner.target.primary_url)
    try:
        key = (await issue_key(conn, BENCH_TENANT, scopes=("admin",), label="benchmark webhooks")).key
    finally:
        await conn.close()
    return httpx.AsyncClient(base_url=runner.target.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _cpu_ms_per_decision(runner: Runner, start: float, end: float, decisions: int) -> dict[str, float]:
    """CPU milliseconds per decision of each measured component between two times."""
    return {
        name: 1000 * runner.monitor.cpu_seconds(name, start, end) / max(1, decisions)
        for name in runner.monitor.usage
        if name not in NOT_MEASURED
    }


async def _round(
    runner: Runner, label: str, rate: int, pool: asyncpg.Pool, endpoint: str | None, within: float
) -> tuple[dict[str, float], int]:
    """One fixed-rate phase; CPU per decision until the pipeline (and, with `endpoint`, the deliveries) drained."""
    start = time.time()
    runner.monitor.sample(start)
    _, outcome = await runner._post_phase(label, rate, runner.plan.fixed_seconds)
    ids = accepted_ids(outcome)
    runner.accepted += ids
    await runner.drain()
    if endpoint is not None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            queued = await pool.fetchval(QUEUED, endpoint, ids)
            if queued >= len(ids) and not await pool.fetchval(PENDING, endpoint):
                break
            await asyncio.sleep(0.5)
    end = time.time()
    runner.monitor.sample(end)
    return _cpu_ms_per_decision(runner, start, end, len(ids)), len(ids)


async def webhook_cost(runner: Runner, *, rate: int = 500, rounds: int = 2) -> dict[str, Any]:
    """Alternate rounds without and with one subscribed endpoint; the added cost and the delivery latency."""
    port = free_port()
    async with await _admin_client(runner) as admin:
        created = await admin.post(
            WEBHOOK_ENDPOINTS_PATH,
            json={"url": f"http://127.0.0.1:{port}/hooks/fastloans", "event_types": [EVENT], "description": "bench"},
        )
        created.raise_for_status()
        endpoint = created.json()
        item = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint['id']}"
        receiver = ReceiverProcess(endpoint["secret"], port)
        pool = await asyncpg.create_pool(runner.target.primary_url, min_size=0, max_size=2)
        without: list[dict[str, float]] = []
        with_endpoint: list[dict[str, float]] = []
        delivered = 0
        try:
            for n in range(rounds):
                (await admin.patch(item, json={"enabled": False})).raise_for_status()
                cost, _ = await _round(runner, f"post@{rate}/s no webhook #{n + 1}", rate, pool, None, 0)
                without.append(cost)
                (await admin.patch(item, json={"enabled": True})).raise_for_status()
                cost, count = await _round(
                    runner, f"post@{rate}/s webhook #{n + 1}", rate, pool, endpoint["id"], runner.plan.drain_timeout
                )
                with_endpoint.append(cost)
                delivered += count
            rows = receiver.report()
        finally:
            receiver.stop()
            await pool.close()
            (await admin.delete(item)).raise_for_status()
    return summarise(without, with_endpoint, rows, expected=delivered, rate=rate)


def summarise(
    without: list[dict[str, float]],
    with_endpoint: list[dict[str, float]],
    rows: list[tuple[str, int, float, str | None]],
    *,
    expected: int,
    rate: int,
) -> dict[str, Any]:
    """Medians of the rounds, the added cost by component, and the latency from decided_at to receipt."""

    def median(rounds: list[dict[str, float]], name: str | None = None) -> float:
        return round(statistics.median(sum(r.values()) if name is None else r.get(name, 0.0) for r in rounds), 3)

    components = sorted({name for r in [*without, *with_endpoint] for name in r})
    accepted: dict[str, tuple[float, str | None]] = {}
    for ident, status, wall, occurred in rows:
        if 200 <= status < 300:
            accepted.setdefault(ident, (wall, occurred))  # a repeat counts from its first receipt
    latencies = np.array(
        [wall - datetime.fromisoformat(occurred).timestamp() for wall, occurred in accepted.values() if occurred]
    )
    return {
        "rate": rate,
        "rounds": len(without),
        "cpu_ms_per_decision_without": median(without),
        "cpu_ms_per_decision_with": median(with_endpoint),
        "added_cpu_ms_per_decision": round(median(with_endpoint) - median(without), 3),
        "added_cpu_ms_by_component": {
            name: round(median(with_endpoint, name) - median(without, name), 3) for name in components
        },
        "delivery_ms": percentiles(latencies),
        "expected": expected,
        "delivered": len(accepted),
        "unverified": sum(1 for _, status, _, _ in rows if status == 400),
        "repeats": sum(1 for _, status, _, _ in rows if 200 <= status < 300) - len(accepted),
    }


def line(figures: dict[str, Any]) -> str:
    """One line for the log."""
    delivery = figures["delivery_ms"]
    return (
        f"webhooks at {figures['rate']}/s: +{figures['added_cpu_ms_per_decision']} ms CPU per decision "
        f"({figures['cpu_ms_per_decision_without']} -> {figures['cpu_ms_per_decision_with']}, medians of "
        f"{figures['rounds']} rounds); decided_at to receipt p50 {delivery.get('p50', float('nan')):.0f} ms, "
        f"p99 {delivery.get('p99', float('nan')):.0f} ms; delivered {figures['delivered']}/{figures['expected']}"
    )


def log_line(figures: dict[str, Any]) -> None:
    """Log the one line."""
    log(line(figures))
