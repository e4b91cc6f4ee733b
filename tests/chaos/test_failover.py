"""A short `make chaos CHAOS_ARGS="--failover"`: the primary is lost for good under load, the replica promoted.

Its own small stack (the primary is killed), synchronous replication: no acknowledged write is
lost, no decision applied twice, no 5xx but 503, and the services find the new primary by themselves.
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos.failover import FailoverConfig, run


def test_losing_the_primary_for_good_loses_no_acknowledged_write(state_dir: Path) -> None:
    report = run(
        FailoverConfig(
            duration=30,
            rate=15,
            instances=1,
            replication="sync",
            kill_at=0.35,
            rebuild_after=3,
            drain_timeout=60,
            durable=False,
            state_dir=state_dir / "failover",
        )
    )
    print(report.line())
    assert report.timeline.rebuilt > report.timeline.promoted > report.timeline.killed, report.line()
    # Writes were acknowledged again by the promoted server, within seconds.
    assert 0 < report.timeline.write_downtime < 20, report.line()
    assert report.load.server_errors == 0, report.line()
    assert report.lost.total == 0 and report.verdict.duplicates == 0, report.line()
    assert report.verdict.ok, "\n".join([report.line(), *report.verdict.examples])
    assert report.verdict.accepted > 100, report.line()
    assert report.verdict.decided + report.verdict.withdrawn == report.verdict.accepted, report.line()
    assert report.ok, report.line()
