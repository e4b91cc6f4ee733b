"""The requests the generator sends: synthetic applications, reads by id, the no-op endpoint."""

from __future__ import annotations

import random
import uuid

import orjson

from bench.loadgen import Outcome
from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENCY_KEY_HEADER
from fastloans.policy import EMPLOYMENT_STATUSES, LOAN_PURPOSES

API_PATH = APPLICATIONS_PATH
NOOP_PATH = "/noop"
PURPOSES = LOAN_PURPOSES
EMPLOYMENT = EMPLOYMENT_STATUSES
FIRST = ("Alex", "Sam", "Robin", "Kim", "Jordan", "Taylor", "Casey", "Morgan")
LAST = ("Smith", "Jones", "Brown", "Garcia", "Martin", "Lee", "Walker", "Young")


def application(rng: random.Random) -> dict[str, object]:
    """A synthetic loan application (made-up applicant, mixed outcomes)."""
    income = rng.randrange(1500, 15000)
    return {
        "applicant_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "credit_score": rng.randrange(450, 850),
        "loan_amount": f"{rng.randrange(500, 8000)}.00",
        "loan_purpose": rng.choice(PURPOSES),
        "monthly_income": f"{income}.00",
        "monthly_debt": f"{rng.randrange(0, income // 2)}.00",
        "employment_status": rng.choice(EMPLOYMENT),
    }


def _head(
    method: str, path: str, host: str, key: str | None, body: bytes | None, *, idempotency_key: str | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if idempotency_key:
        lines.append(f"{IDEMPOTENCY_KEY_HEADER}: {idempotency_key}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def post_requests(host: str, keys: list[str], count: int, seed: int, *, idempotency_keys: bool = False) -> list[bytes]:
    """`count` distinct POSTs of new applications, spread over the API keys; with `idempotency_keys` each has its
    own key (unique across runs against the same database), so that the generator may send one again."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data
    return [
        _head(
            "POST",
            API_PATH,
            host,
            keys[i % len(keys)],
            orjson.dumps(application(rng)),
            idempotency_key=uuid.uuid4().hex if idempotency_keys else None,
        )
        for i in range(count)
    ]


def get_requests(host: str, keys: list[str], ids: list[uuid.UUID | str]) -> list[bytes]:
    """A GET by id for each application, spread over the API keys."""
    return [_head("GET", f"{API_PATH}/{ident}", host, keys[i % len(keys)], None) for i, ident in enumerate(ids)]


def noop_requests(host: str, path: str = NOOP_PATH) -> list[bytes]:
    """The unauthenticated no-op request."""
    return [_head("GET", path, host, None, None)]


def accepted_ids(outcome: Outcome) -> list[uuid.UUID]:
    """The application ids of every 202 response."""
    return [uuid.UUID(ident) for ident in outcome.accepted]
