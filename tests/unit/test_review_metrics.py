"""The review queue gauges the relay sets from its sample of review_cases."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY

from fastloans_gateway.relay import sample_review_queue

pytestmark = pytest.mark.unit


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_the_gauges_follow_the_sample() -> None:
    sample_review_queue(
        [
            {"state": "open", "cases": 3, "oldest": 7200.0, "escalated": 1, "least_left": 86400.0},
            {"state": "waiting_for_information", "cases": 1, "oldest": 9000.0, "escalated": 1, "least_left": None},
        ]
    )
    assert value("fastloans_review_cases", state="open") == 3
    assert value("fastloans_review_cases", state="claimed") == 0
    assert value("fastloans_review_oldest_open_age_seconds") == 9000.0
    assert value("fastloans_review_escalated_cases") == 2
    assert value("fastloans_review_least_seconds_left") == 86400.0
    sample_review_queue([])
    assert value("fastloans_review_cases", state="open") == 0
    assert value("fastloans_review_least_seconds_left") == math.inf
