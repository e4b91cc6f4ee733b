"""Prometheus metrics of every service, all named `fastloans_*`.

With several worker processes (gateway `WEB_CONCURRENCY` > 1) set
`PROMETHEUS_MULTIPROC_DIR`: each process writes its samples there and
`/metrics` adds them up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DECISION_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "fastloans_http_requests_total", "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "fastloans_http_request_duration_seconds", "Time to answer an HTTP request, by route and method.",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter(
    "fastloans_http_errors_total", "HTTP requests answered with a 4xx or 5xx, by route and status.",
    ["route", "status"],
)
MESSAGES_PROCESSED = Counter(
    "fastloans_messages_processed_total", "Kafka messages processed, by service and topic.", ["service", "topic"]
)
MESSAGE_LATENCY = Histogram(
    "fastloans_message_processing_seconds", "Time to process one batch of messages, by service.",
    ["service"], buckets=LATENCY_BUCKETS,
)
MESSAGE_FAILURES = Counter(
    "fastloans_message_failures_total", "Failed attempts to process a batch, by service and kind.",
    ["service", "kind"],
)
DEAD_LETTERS = Counter(
    "fastloans_dead_letters_total", "Messages sent to the dead-letter topic, by service and source topic.",
    ["service", "topic"],
)
CONSUMER_LAG = Gauge(
    "fastloans_consumer_lag", "Messages not yet consumed, by service, topic and partition.",
    ["service", "topic", "partition"], multiprocess_mode="max",
)
OUTBOX_BACKLOG = Gauge(
    "fastloans_outbox_backlog", "Outbox rows not yet published to Kafka.", multiprocess_mode="max"
)
OUTBOX_OLDEST_AGE = Gauge(
    "fastloans_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row.", multiprocess_mode="max"
)
OUTBOX_PUBLISHED = Counter("fastloans_outbox_published_total", "Outbox rows published to Kafka.")
DECISIONS = Counter(
    "fastloans_decisions_total", "Decisions recorded, by outcome and policy version.", ["outcome", "policy_version"]
)
DECISION_REASONS = Counter(
    "fastloans_decision_reasons_total", "Principal reasons given with recorded decisions, by reason code.",
    ["code"],
)
SUBMISSION_TO_DECISION = Histogram(
    "fastloans_submission_to_decision_seconds",
    "Time from an application's submission to its recorded decision (from its own timestamps).",
    buckets=DECISION_BUCKETS,
)
DB_POOL_IN_USE = Gauge(
    "fastloans_db_pool_connections_in_use", "Database connections checked out, by pool.", ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "fastloans_db_pool_connections", "Database connections open, by pool.", ["pool"], multiprocess_mode="livesum"
)
REPLICA_LAG = Gauge(
    "fastloans_replica_lag_seconds", "How far the read replica is behind the primary, as seen by this service.",
    multiprocess_mode="max",
)


def render_metrics() -> bytes:
    """The text exposition of every metric (summed across processes in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
