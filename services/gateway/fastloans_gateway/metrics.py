"""The gateway's and the relay's own Prometheus metrics (conventions in `fastloans.metrics`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import BaseRoute

from fastloans.db.reviews import UNFINISHED
from fastloans.metrics import LATENCY_BUCKETS
from fastloans.reviews import Action

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
SUBMIT_BATCHES_RETRIED = Counter(
    "fastloans_submit_batches_retried_total",
    "Batches of submissions that failed for a reason other than an outage (a bad row, a deadlock) and were stored "
    "again one submission at a time.",
)
READ_BATCH_SIZE = Histogram(
    "fastloans_read_batch_size",
    "Reads of single applications (GET by id) that shared one statement.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
ADMISSION_REFUSED = Counter(
    "fastloans_admission_refused_total",
    "Submissions and revisions answered 503 by admission control, by bound (in_flight, outbox_backlog, loop_lag).",
    ["reason"],
)
SUBMISSIONS_IN_FLIGHT = Gauge(
    "fastloans_submissions_in_flight",
    "Submissions and revisions being stored by the gateway right now.",
    multiprocess_mode="livesum",
)
# The review queue, sampled by the relay (one loop per deployment) from review_cases; `max` across processes.
REVIEW_CASES = Gauge(
    "fastloans_review_cases",
    "Unfinished review cases, by state (open, claimed, awaiting_approval, waiting_for_information).",
    ["state"],
    multiprocess_mode="max",
)
REVIEW_OLDEST_AGE = Gauge(
    "fastloans_review_oldest_open_age_seconds",
    "Age of the oldest unfinished review case (since it was opened).",
    multiprocess_mode="max",
)
REVIEW_ESCALATED = Gauge(
    "fastloans_review_escalated_cases",
    "Unfinished review cases past their escalation date.",
    multiprocess_mode="max",
)
REVIEW_LEAST_TIME_LEFT = Gauge(
    "fastloans_review_least_seconds_left",
    "Seconds until the earliest deadline of an unfinished review case whose clock runs (+Inf when none).",
    multiprocess_mode="min",
)
REVIEW_ACTIONS = Counter(
    "fastloans_review_actions_total",
    "Actions taken on review cases through the API, by action.",
    ["action"],
)
REVIEW_OVERRIDES = Counter(
    "fastloans_review_overrides_total",
    "Reviewers' decisions that differ from the policy's recommendation, by direction (the reviewer's outcome) "
    "and reviewer (the key's actor).",
    ["direction", "reviewer"],
)
REVIEW_TIME_TO_DECISION = Histogram(
    "fastloans_review_time_to_decision_seconds",
    "Time from a case's opening to its final decision.",
    buckets=(3600, 4 * 3600, 86400, 2 * 86400, 5 * 86400, 10 * 86400, 20 * 86400, 30 * 86400, 60 * 86400),
)
for _result in ("valid", "unknown"):
    AUTH_LOOKUPS.labels(_result)  # present from the start: zero is not "no data"
# Until the relay's first sample (and always in the gateway's own processes): no case, no deadline near. A
# process that exported 0 seconds left would fire FastLoansReviewDeadlineNear, the rule taking the minimum.
REVIEW_LEAST_TIME_LEFT.set(math.inf)
for _state in UNFINISHED:
    REVIEW_CASES.labels(_state)
for _action in (Action.CLAIM, Action.DECIDE, Action.APPROVE, Action.RETURN, Action.REQUEST_INFORMATION):
    REVIEW_ACTIONS.labels(_action.value)  # the actions of the API, present from the start
# The directions of an override: the reviewer's outcome (the decision body's `outcome`).
OVERRIDE_DIRECTIONS = ("approve", "reject")


def declare_reviewer(actor: str) -> None:
    """Create a reviewer's override series at zero (their first override then shows in `increase()`)."""
    for direction in OVERRIDE_DIRECTIONS:
        REVIEW_OVERRIDES.labels(direction, actor)


def declare_routes(routes: Sequence[BaseRoute]) -> None:
    """Create the HTTP series of every documented API operation at zero: each method, each status it declares."""
    # The route declarations are what the OpenAPI document is built from; building the document itself costs more.
    for route in iter_route_contexts(routes):
        if not route.include_in_schema or not route.methods:
            continue
        statuses = {str(route.status_code or 200), *(str(s) for s in (route.responses or {}))}
        for method in set(route.methods) - {"HEAD"}:
            HTTP_LATENCY.labels(route.path, method)
            for status in sorted(s for s in statuses if s.isdigit()):  # not "default", "4XX"
                HTTP_REQUESTS.labels(route.path, method, status)
                if int(status) >= 400:
                    HTTP_ERRORS.labels(route.path, status)
