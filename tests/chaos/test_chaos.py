"""A short `make chaos` inside the test suite: about a minute of load while every kind of fault is injected, with
reviewers deciding the referred applications meanwhile."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.faults import DEFAULT_FAULTS
from tests.chaos.run import ChaosConfig, run


def test_nothing_is_lost_duplicated_or_resurrected_under_faults(state_dir: Path) -> None:
    report = run(ChaosConfig(duration=60, rate=6, instances=2, durable=False, state_dir=state_dir / "chaos"))
    print(report.line())
    assert report.faults == dict.fromkeys(DEFAULT_FAULTS, 1), report.line()
    assert report.load.rejected == 0 and report.load.abandoned == 0, report.line()
    assert report.verdict.accepted > 100 and report.verdict.withdrawn > 0, report.line()
    assert report.verdict.ok, "\n".join([report.line(), *report.verdict.examples])
    assert report.poison.dead_letter_keys and report.poison.ok, report.line()
    assert report.verdict.decided + report.verdict.withdrawn == report.verdict.accepted, report.line()
    # Review traffic (seed-with-review): cases opened and decided while the faults hit, none lost or left over.
    assert report.reviews.opened > 0 and report.reviews.decided > 0, report.line()
    assert report.reviews_ok, "\n".join([report.line(), *report.reviews.examples, *report.review_client.examples])
