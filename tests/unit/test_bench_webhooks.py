"""The webhooks phase's arithmetic: medians of rounds, the added cost, latency from decided_at, repeats."""

from __future__ import annotations

import pytest

from bench.webhooks import line, summarise

pytestmark = pytest.mark.unit

DECIDED = "2026-12-02T04:00:00Z"
AT = 1_796_184_000.0  # DECIDED as a Unix time


def test_the_added_cost_is_the_difference_of_the_medians_and_latency_runs_from_decided_at() -> None:
    without = [{"gateway": 1.0, "webhooks": 0.1}, {"gateway": 1.2, "webhooks": 0.1}, {"gateway": 9.0, "webhooks": 0.1}]
    with_endpoint = [
        {"gateway": 1.1, "webhooks": 0.5},
        {"gateway": 1.3, "webhooks": 0.6},
        {"gateway": 1.2, "webhooks": 0.4},
    ]
    rows = [
        ("msg_a", 204, AT + 0.010, DECIDED),
        ("msg_b", 204, AT + 0.030, DECIDED),
        ("msg_b", 204, AT + 0.500, DECIDED),  # a repeat under the same id counts once, at its first receipt
        ("msg_c", 400, AT + 0.020, DECIDED),
    ]
    figures = summarise(without, with_endpoint, rows, expected=2, rate=500)
    assert figures["cpu_ms_per_decision_without"] == 1.3
    assert figures["cpu_ms_per_decision_with"] == 1.6
    assert figures["added_cpu_ms_per_decision"] == 0.3
    assert figures["added_cpu_ms_by_component"] == {"gateway": 0.0, "webhooks": 0.4}
    assert figures["delivered"] == 2 and figures["repeats"] == 1 and figures["unverified"] == 1
    assert figures["delivery_ms"]["p50"] == pytest.approx(20.0)
    assert "delivered 2/2" in line(figures)
