"""Prometheus metrics the services share (pipeline, database), all named `fastloans_*`.

A service's own metrics live in its package (the gateway's HTTP and outbox metrics, the
recorder's decision metrics), with the same conventions.

With several worker processes (gateway `WEB_CONCURRENCY` > 1) set
`PROMETHEUS_MULTIPROC_DIR`: each process writes its samples there and
`/metrics` adds them up (prometheus-client's multiprocess mode).

Pipeline metrics are labelled `consumer` (not `service`, which the Prometheus
Operator sets on every scraped series to the Kubernetes Service's name).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from fastloans.db import Database

log = logging.getLogger("fastloans.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MESSAGES_PROCESSED = Counter(
    "fastloans_messages_processed_total", "Kafka messages processed, by consumer and topic.", ["consumer", "topic"]
)
MESSAGE_LATENCY = Histogram(
    "fastloans_message_processing_seconds",
    "Time to process one batch of messages, by consumer.",
    ["consumer"],
    buckets=LATENCY_BUCKETS,
)
MESSAGE_FAILURES = Counter(
    "fastloans_message_failures_total",
    "Failed attempts to process a batch, by consumer and error type.",
    ["consumer", "kind"],
)
DEAD_LETTERS = Counter(
    "fastloans_dead_letters_total",
    "Messages sent to the dead-letter topic, by consumer and source topic.",
    ["consumer", "topic"],
)
CONSUMER_LAG = Gauge(
    "fastloans_consumer_lag",
    "Messages not yet consumed, by consumer, topic and partition.",
    ["consumer", "topic", "partition"],
    multiprocess_mode="max",
)
DB_POOL_IN_USE = Gauge(
    "fastloans_db_pool_connections_in_use",
    "Database connections checked out, by pool.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "fastloans_db_pool_connections", "Database connections open, by pool.", ["pool"], multiprocess_mode="livesum"
)
REPLICA_LAG = Gauge(
    "fastloans_replica_lag_seconds",
    "How far the read replica is behind the primary, as seen by this service.",
    multiprocess_mode="max",
)


def declare_consumer(consumer: str, topic: str, failure_kinds: Iterable[str] = ()) -> None:
    """Create a consumer's series at zero (zero is not "no data"): processed, latency, dead letters, failures."""
    MESSAGES_PROCESSED.labels(consumer, topic)
    MESSAGE_LATENCY.labels(consumer)
    declare_dead_letters(consumer, (topic,))
    for kind in failure_kinds:
        MESSAGE_FAILURES.labels(consumer, kind)


def declare_dead_letters(consumer: str, topics: Iterable[str]) -> None:
    """Create the dead-letter counters of the topics a service may dead-letter from, at zero."""
    for topic in topics:
        DEAD_LETTERS.labels(consumer, topic)


def render_metrics() -> bytes:
    """The text exposition of every metric (summed across processes in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def render_metrics_off_loop() -> bytes:
    """`render_metrics()` in a worker thread, for a scrape served by an event loop.

    The gateway's exposition is about 150 kB (every route, status and reason code exists from the start) and takes
    20-30 ms of pure Python to write at idle on a slow core, more under load: on the loop, every scrape stalled every
    request in flight for that long. In a thread the loop keeps running, sharing the interpreter with the scrape
    at the interpreter's switch interval (5 ms).
    """
    return await asyncio.to_thread(render_metrics)


# Zero on the primary and while the replica has replayed everything it received; otherwise the
# age of the last transaction it replayed.
REPLICA_LAG_SQL = """
SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0)
       END::float8
"""


async def sample_database(db: Database, *, interval: float = 5.0) -> None:
    """Keep the connection-pool and replica-lag gauges current until cancelled."""
    pools = {"primary": db.primary} if db.replica is db.primary else {"primary": db.primary, "replica": db.replica}
    while True:
        for name, pool in pools.items():
            DB_POOL_IN_USE.labels(name).set(pool.in_use)
            DB_POOL_SIZE.labels(name).set(pool.opened)
        if "replica" in pools:
            try:
                async with db.connection(read=True) as conn:
                    REPLICA_LAG.set(await conn.fetchval(REPLICA_LAG_SQL))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("replica lag unavailable", exc_info=True)
        await asyncio.sleep(interval)
