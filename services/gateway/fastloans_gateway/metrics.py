"""The gateway's and the relay's own Prometheus metrics (conventions in `fastloans.metrics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from fastloans.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "fastloans_http_requests_total",
    "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "fastloans_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter(
    "fastloans_http_errors_total",
    "HTTP requests answered with a 4xx or 5xx, by route and status.",
    ["route", "status"],
)
OUTBOX_BACKLOG = Gauge("fastloans_outbox_backlog", "Outbox rows not yet published to Kafka.", multiprocess_mode="max")
OUTBOX_OLDEST_AGE = Gauge(
    "fastloans_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row.", multiprocess_mode="max"
)
OUTBOX_PUBLISHED = Counter("fastloans_outbox_published_total", "Outbox rows published to Kafka.")
AUTH_LOOKUPS = Counter(
    "fastloans_auth_lookups_total",
    "API-key lookups the gateway made in the database, by result (valid, unknown).",
    ["result"],
)
LONG_POLL_READS = Counter(
    "fastloans_long_poll_reads_total",
    "Reads of a pending application on the primary by waiting GET requests (?wait=): one, then one per announcement.",
)
ADMISSION_REFUSED = Counter(
    "fastloans_admission_refused_total",
    "Submissions and revisions answered 503 by admission control, by bound (in_flight, outbox_backlog).",
    ["reason"],
)
SUBMISSIONS_IN_FLIGHT = Gauge(
    "fastloans_submissions_in_flight",
    "Submissions and revisions being stored by the gateway right now.",
    multiprocess_mode="livesum",
)
for _result in ("valid", "unknown"):
    AUTH_LOOKUPS.labels(_result)  # present from the start: zero is not "no data"


def declare_routes(schema: Mapping[str, Any]) -> None:
    """Create the HTTP series of every operation in the OpenAPI schema at zero: each method, each documented status."""
    for route, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            HTTP_LATENCY.labels(route, method.upper())
            for status in operation.get("responses", {}):
                if not str(status).isdigit():  # "default", "4XX"
                    continue
                HTTP_REQUESTS.labels(route, method.upper(), str(status))
                if int(status) >= 400:
                    HTTP_ERRORS.labels(route, str(status))
