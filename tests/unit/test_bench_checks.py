"""The audit helpers bench and chaos share (bench/checks.py): lag maths, the drain wait, the lost/duplicate audit."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bench import checks, probes
from tests.chaos import fleet, invariants

TP = TopicPartition("loan-applications.decided", 0)


def test_bench_and_chaos_use_the_one_copy() -> None:
    assert probes.GROUPS is checks.GROUPS is fleet.GROUPS is invariants.GROUPS
    assert invariants.checks is probes.checks is checks


def test_a_partition_without_a_commit_counts_from_zero() -> None:
    assert checks.committed_offset({}, TP) == 0
    assert checks.committed_offset({TP: OffsetAndMetadata(-1, "")}, TP) == 0
    assert checks.committed_offset({TP: OffsetAndMetadata(42, "")}, TP) == 42


def _row(status: str = "approved", revision: int = 1, risk_score: int = 700) -> dict[str, object]:
    return {"status": status, "revision": revision, "risk_score": risk_score}


def _decision(revision: int = 1, outcome: str = "approved", risk_score: int = 700) -> dict[str, object]:
    return {"revision": revision, "outcome": outcome, "risk_score": risk_score}


def test_one_decision_for_the_current_revision_is_decided() -> None:
    finding = checks.check_application("a", _row(), {1: [_decision()]})
    assert (finding.outcome, finding.surplus, finding.problems) == ("decided", 0, [])


def test_missing_pending_or_undecided_applications_are_lost() -> None:
    assert checks.check_application("a", None, {}).outcome == "lost"
    assert checks.check_application("a", _row("pending"), {}).outcome == "lost"
    assert checks.check_application("a", _row(revision=2), {1: [_decision()]}).outcome == "lost"
    assert checks.check_application("a", _row("withdrawn"), {}).outcome == "lost"


def test_surplus_decisions_are_counted_one_by_one() -> None:
    finding = checks.check_application("a", _row(), {1: [_decision()] * 3, 2: [_decision(2)]})
    # two repeats of revision 1, and one decision for a revision 2 the application never had
    assert (finding.outcome, finding.surplus, len(finding.problems)) == ("decided", 3, 2)


def test_withdrawals_resurrections_and_mismatches() -> None:
    withdrawn = checks.check_application("a", _row("withdrawn"), {}, delete_sent=True)
    resurrected = checks.check_application("a", _row(), {1: [_decision()]}, delete_sent=True, withdrawn=True)
    mismatched = checks.check_application("a", _row(), {1: [_decision(outcome="rejected")]})
    assert [f.outcome for f in (withdrawn, resurrected, mismatched)] == ["withdrawn", "resurrected", "mismatched"]


def test_the_chaos_verdict_counts_each_finding() -> None:
    verdict = invariants.Verdict()
    for finding in (
        checks.Finding("decided", surplus=2, problems=["x"]),
        checks.Finding("mismatched"),
        checks.Finding("lost"),
        checks.Finding("withdrawn"),
    ):
        invariants._count(verdict, finding)
    assert (verdict.decided, verdict.duplicates, verdict.lost, verdict.withdrawn) == (1, 3, 1, 1)
    assert verdict.examples == ["x"]


async def test_drained_only_when_every_count_is_zero_and_stays_so() -> None:
    samples = iter(
        [
            {"outbox": 3, "lag": 0},
            {"outbox": 0, "lag": 0},
            {"outbox": 0, "lag": 1},
            {"outbox": 0, "lag": 0},
            {"outbox": 0, "lag": 0},
        ]
    )
    said: list[str] = []

    async def sample() -> dict[str, int]:
        return next(samples)

    assert await checks.wait_drained(sample, within=10, interval=0, settle=0.001, progress=said.append)
    assert said == ["draining: outbox=3 lag=0", "draining: outbox=0 lag=1"]
    assert next(samples, None) is None


async def test_the_wait_gives_up_after_its_deadline() -> None:
    calls = 0

    async def sample() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"total": 1}

    assert not await checks.wait_drained(sample, within=0.05, interval=0.01)
    assert calls >= 2
