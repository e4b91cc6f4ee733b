"""The dispatcher's own Prometheus metrics (conventions in `fastloans.metrics`); every label set is bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# What became of an attempt: delivered, retrying (failed, to be tried again), failed (given up), gone
# (410: the endpoint is disabled). An address that may not be called is a failed attempt like any other.
OUTCOMES = ("delivered", "retrying", "failed", "gone")

ATTEMPTS = Counter("fastloans_webhook_attempts_total", "Webhook delivery attempts, by outcome.", ["outcome"])
for _outcome in OUTCOMES:  # exported from the start, so a rate over them exists before the first attempt
    ATTEMPTS.labels(_outcome)
ATTEMPT_SECONDS = Histogram(
    "fastloans_webhook_attempt_seconds", "Time of one delivery attempt.", buckets=ATTEMPT_BUCKETS
)
QUEUED = Counter("fastloans_webhook_deliveries_queued_total", "Deliveries queued (one per event and endpoint).")
PENDING = Gauge("fastloans_webhook_pending_deliveries", "Deliveries waiting to be sent or retried.")
DUE = Gauge(
    "fastloans_webhook_due_deliveries", "Pending deliveries due now, to enabled endpoints (what the dispatchers owe)."
)
OLDEST_PENDING = Gauge(
    "fastloans_webhook_oldest_pending_seconds", "Age of the oldest delivery still pending (0 when none)."
)
DISABLED_ENDPOINTS = Gauge("fastloans_webhook_disabled_endpoints", "Webhook endpoints disabled (410, or failing).")
