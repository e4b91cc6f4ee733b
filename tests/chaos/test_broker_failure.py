"""A three-broker Kafka cluster (replication factor 3, min.insync.replicas 2): SIGKILL one broker under load."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.run import ChaosConfig, run


def test_killing_one_of_three_brokers_loses_nothing(state_dir: Path) -> None:
    report = run(
        ChaosConfig(
            duration=45,
            rate=6,
            instances=1,
            kafka_nodes=3,
            faults=("kill-broker",),
            durable=False,
            state_dir=state_dir / "kafka-cluster",
        )
    )
    print(report.line())
    assert report.faults == {"kill-broker": 1}, report.line()
    assert report.load.rejected == 0 and report.load.abandoned == 0, report.line()
    assert report.verdict.accepted > 50, report.line()
    assert report.verdict.ok, "\n".join([report.line(), *report.verdict.examples])
    assert report.verdict.decided + report.verdict.withdrawn == report.verdict.accepted, report.line()
