"""The benchmark's per-second timeline: requests bucketed by the second they were due, joined with the samples."""

from __future__ import annotations

from array import array

import pytest

from bench.loadgen import Outcome
from bench.timeline import Timeline, _changes, worst_seconds

pytestmark = pytest.mark.unit


def outcome(points: list[tuple[float, float, int]]) -> Outcome:
    result = Outcome()
    for intended, latency, status in points:
        result.intended.append(intended)
        result.latency.append(latency)
        result.status.append(status)
    return result


def test_requests_are_bucketed_by_the_second_they_were_due_and_joined_with_that_seconds_sample() -> None:
    start = 1000.0
    timeline = Timeline("postgresql://unused", None)
    timeline.samples = [
        {"at": 1001.05, "checkpoints": 3, "wal_bytes": 1000.0, "autovacuum": 0, "backlog": 5},
        {"at": 1002.02, "checkpoints": 4, "wal_bytes": 5000.0, "autovacuum": 1, "backlog": 9},
    ]
    rows = timeline.rows(
        outcome([(1000.1, 0.010, 202), (1000.9, 0.030, 202), (1001.5, 2.0, 503), (1001.6, 0.020, 202)]), start
    )
    assert [r["second"] for r in rows] == [0, 1]
    assert rows[0]["requests"] == 2 and rows[0]["errors"] == 0 and rows[0]["max_ms"] == 30.0
    assert rows[1]["errors"] == 1 and rows[1]["max_ms"] == 2000.0
    # Counters become changes since the previous second; levels stay levels.
    assert rows[1]["checkpoints"] == 1 and rows[1]["wal_bytes"] == 4000.0 and rows[1]["autovacuum"] == 1
    assert worst_seconds(rows, top=1)[0]["second"] == 1


def test_the_first_sample_has_no_change_to_report() -> None:
    assert _changes({"at": 1.0, "checkpoints": 7, "in_flight": 3}, None) == {"checkpoints": 0.0, "in_flight": 3}


def test_an_empty_phase_has_no_rows() -> None:
    assert Timeline("postgresql://unused", None).rows(Outcome(intended=array("d")), 0.0) == []
