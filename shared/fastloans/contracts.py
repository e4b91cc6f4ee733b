"""Facts that more than one process relies on: the public API's paths and headers, notification channels, TTLs.

Each is declared here once; the services, the benchmarks and the tests import it rather than restate it.
Topic names and event schemas live in `fastloans.events`, trace header names in `fastloans.tracecontext`.
"""

from __future__ import annotations

from datetime import timedelta

# The public REST API.
API_PREFIX = "/api/v1"
APPLICATIONS_PATH = f"{API_PREFIX}/loan_applications"
POLICY_PATH = f"{API_PREFIX}/policy"
WEBHOOK_ENDPOINTS_PATH = f"{API_PREFIX}/webhook_endpoints"
REVIEWS_PATH = f"{API_PREFIX}/reviews"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"
# How long an Idempotency-Key is remembered: a retry within it gets the first answer, a reuse after it is new.
IDEMPOTENCY_TTL = timedelta(hours=24)

# PostgreSQL LISTEN/NOTIFY: the recorder announces the ids of the applications it decided on this channel
# (comma-separated, at commit), and the gateway wakes the long polls waiting for them.
DECIDED_CHANNEL = "fastloans_decided"
