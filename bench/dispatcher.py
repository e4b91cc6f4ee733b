"""How fast one dispatcher process drains a backlog of deliveries to one endpoint.

`python -m bench.dispatcher` starts a PostgreSQL of its own (migrated), queues `--deliveries` pending
deliveries for one endpoint, and runs the dispatcher (in this process) against a verifying receiver in a
child process (its CPU is not the dispatcher's). It prints, and returns as JSON, the deliveries per second
from the first attempt to the last recorded outcome, the dispatcher's CPU milliseconds per delivery, and the
per-attempt latency. Every delivery must arrive once, verified with `standardwebhooks`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil

from bench.__main__ import _fresh_state, _remove_state
from bench.target import state_root
from bench.webhooks import ReceiverProcess
from fastloans import webhooks
from fastloans.db import Database
from fastloans.db.migrate import upgrade
from fastloans.tenants import ensure_tenant
from fastloans_dev.devstack.postgres import PostgresPair
from fastloans_dev.devstack.system import free_port, log
from fastloans_webhooks.sender import Dispatcher
from fastloans_webhooks.settings import WebhooksSettings

ENDPOINT = """
INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secret)
VALUES ($1, $2, $3, 'dispatcher benchmark', ARRAY['application.decided'], $4)
"""
QUEUE = """
INSERT INTO webhook_deliveries (endpoint_id, event_key, message_id, event_type, application_id, revision, body)
SELECT $1, k, 'msg_' || md5(k), 'application.decided', gen_random_uuid(), 1, $2
  FROM unnest($3::text[]) AS k
"""


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds so far of a PostgreSQL server: its postmaster and every backend and helper under it."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    total = 0.0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


LEFT = "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
QUEUED_TO_DELIVERED = (
    "SELECT EXTRACT(EPOCH FROM delivered_at - created_at)::float8 * 1000 AS ms FROM webhook_deliveries "
    "WHERE status = 'delivered'"
)
SPAN = "SELECT EXTRACT(EPOCH FROM max(delivered_at) - min(delivered_at))::float8 FROM webhook_deliveries"


async def drain(
    primary_url: str,
    primary_dir: Path,
    receiver_port: int,
    secret: str,
    deliveries: int,
    env: dict[str, Any],
    rate: float = 0.0,
) -> dict[str, Any]:
    """Queue the backlog (all at once, or `rate` a second while sending), deliver it; the figures."""
    conn = await asyncpg.connect(primary_url)
    # The dispatcher never touches Kafka; the setting is required of every service.
    settings = WebhooksSettings(
        database_url=primary_url, environment="test", kafka_bootstrap_servers="127.0.0.1:9", **env
    )
    box = webhooks.secret_box(None, "test")
    try:
        tenant = await ensure_tenant(conn, f"dispatcher-bench-{uuid.uuid4().hex[:8]}")
        endpoint = uuid.uuid4()
        await conn.execute(ENDPOINT, endpoint, tenant, f"http://127.0.0.1:{receiver_port}/hook", box.seal(secret))
        body = webhooks.body("application.decided", datetime.now(UTC), {"application_id": str(uuid.uuid4())})
        keys = [f"bench:{i}" for i in range(deliveries)]
        if not rate:
            await conn.execute(QUEUE, endpoint, body, keys)
        db = Database.from_settings(settings)
        dispatcher = Dispatcher(db, settings)
        cpu, wall, pg_cpu = time.process_time(), time.perf_counter(), server_cpu_seconds(primary_dir)
        dispatcher.start()
        queued = len(keys) if not rate else 0
        while queued < len(keys):  # as the webhooks service queues them: a batch of decisions every 10 ms
            due = min(len(keys), int((time.perf_counter() - wall) * rate))
            if due > queued:
                await conn.execute(QUEUE, endpoint, body, keys[queued:due])
                queued = due
            await asyncio.sleep(0.01)
        while (left := await conn.fetchval(LEFT)) > 0:
            log(f"{deliveries - left:,} of {deliveries:,} delivered")
            await asyncio.sleep(1)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        pg_cpu = server_cpu_seconds(primary_dir) - pg_cpu
        await dispatcher.stop()
        await db.dispose()
        span = await conn.fetchval(SPAN)
        latencies = [r["latency_ms"] for r in await conn.fetch("SELECT latency_ms FROM webhook_attempts")]
        waits = [r["ms"] for r in await conn.fetch(QUEUED_TO_DELIVERED)]
        attempts = len(latencies)
    finally:
        await conn.close()
    return {
        "deliveries": deliveries,
        "queued_per_s": rate or None,
        "attempts": attempts,
        "deliveries_per_s": round(deliveries / max(span, 1e-9), 1),
        "wall_s": round(wall, 2),
        "cpu_ms_per_delivery": round(1000 * cpu / deliveries, 3),
        "primary_cpu_ms_per_delivery": round(1000 * pg_cpu / deliveries, 3),
        "queued_to_delivered_ms_p50": round(statistics.median(waits), 1),
        "queued_to_delivered_ms_p99": round(statistics.quantiles(waits, n=100)[98], 1),
        "attempt_ms_p50": round(statistics.median(latencies), 2),
        "attempt_ms_p99": round(statistics.quantiles(latencies, n=100)[98], 2),
        "settings": env,
    }


def main() -> None:
    """Command line: `python -m bench.dispatcher [--deliveries N] [--concurrency C] [--endpoint-concurrency E]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=None, help="WEBHOOK_CONCURRENCY (default: the setting's)")
    parser.add_argument("--endpoint-concurrency", type=int, default=None, help="WEBHOOK_ENDPOINT_CONCURRENCY")
    parser.add_argument("--rate", type=float, default=0.0, help="queue this many a second while sending (0: all first)")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures here (JSON)")
    args = parser.parse_args()
    env: dict[str, Any] = {}
    if args.concurrency:
        env["webhook_concurrency"] = args.concurrency
    if args.endpoint_concurrency:
        env["webhook_endpoint_concurrency"] = args.endpoint_concurrency
    root = _fresh_state(state_root())
    pair = PostgresPair(root / "pg", primary_port=free_port(), replica_port=free_port(), log_dir=root, durable=True)
    secret = webhooks.new_secret()
    receiver = None
    try:
        pair.start()
        upgrade(pair.primary_url)
        receiver = ReceiverProcess(secret, free_port())
        figures = asyncio.run(
            drain(pair.primary_url, pair.primary.data_dir, receiver.port, secret, args.deliveries, env, args.rate)
        )
        received = receiver.report()
    finally:
        if receiver is not None:
            receiver.stop()
        pair.stop()
        _remove_state(root)
    ids = [row[0] for row in received]
    figures["received"] = len(ids)
    figures["received_unverified"] = sum(1 for row in received if row[1] != 204)
    figures["received_twice"] = len(ids) - len(set(ids))
    text = orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
