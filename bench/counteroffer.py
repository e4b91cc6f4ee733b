"""What the counteroffer costs the approval service: CPU time per decision, and its share (timeit).

`python -m bench.counteroffer` prints the figures; `make bench` records them under `counteroffer`. The
applications are the load generator's (`bench.workload.application`), scored by the seed policy the way the
risk service scores them; no service or database is involved, so the figures are the engine's own cost.
"""

from __future__ import annotations

import random
import statistics
import time
import timeit
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.workload import application
from fastloans.events import ApplicationScored, Facts
from fastloans.policy import ApplicationFacts, Policy, alternatives, decide, load_default_policy, score
from fastloans.policy_runtime import policy_ref
from fastloans_approval.service import decided_event

SEED = 20261202


def _scored(policy: Policy, body: dict[str, Any], now: datetime) -> tuple[ApplicationScored, ApplicationFacts]:
    facts = ApplicationFacts.from_mapping(body)
    result = score(policy, facts)
    event = ApplicationScored(
        application_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        revision=1,
        submitted_at=now,
        facts=Facts(**{name: value for name, value in body.items() if name != "applicant_name"}),
        risk_score=result.risk_score,
        contributions=[c.to_dict() for c in result.contributions],
        policy=policy_ref(policy),
        scored_at=now,
    )
    return event, facts


def _cpu_us(work: Any, count: int) -> float:
    """CPU time of one pass over `count` items, per item, in microseconds (steadier than wall time)."""
    return timeit.timeit(work, number=1, timer=time.process_time) / count * 1e6


def measure(count: int = 2000, runs: int = 7) -> dict[str, Any]:
    """Time the approval's per-decision work and the counteroffer's share of it, on `count` applications."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible synthetic data
    policy, now = load_default_policy(), datetime.now(UTC)
    cases = [_scored(policy, application(rng), now) for _ in range(count)]
    decisions = [
        (facts, decide(policy, facts, event.risk_score, contributions=score(policy, facts).contributions))
        for event, facts in cases
    ]
    scores = [score(policy, facts) for _, facts in cases]
    adverse = sum(decision.outcome != "approved" for _, decision in decisions)
    offered = sum(alternatives(policy, facts, decision)[0] is not None for facts, decision in decisions)

    def approval() -> None:
        for event, _ in cases:
            decided_event(policy, event, now).encode()

    def counteroffers() -> None:
        for (facts, decision), scored in zip(decisions, scores, strict=True):
            alternatives(policy, facts, decision, scored)

    # Interleaved, so that both see the same machine; the median of the runs.
    pairs = [(_cpu_us(approval, count), _cpu_us(counteroffers, count)) for _ in range(runs)]
    approval_us = statistics.median(a for a, _ in pairs)
    added_us = statistics.median(b for _, b in pairs)
    return {
        "decisions": count,
        "adverse": adverse,
        "with_counteroffer": offered,
        "runs": runs,
        "approval_us_per_decision": round(approval_us, 2),
        "counteroffer_us_per_decision": round(added_us, 2),
        "counteroffer_us_per_adverse_decision": round(added_us * count / max(adverse, 1), 2),
        "counteroffer_share_of_approval": round(statistics.median(b / a for a, b in pairs), 3),
    }


def main() -> None:
    """Print the figures as JSON."""
    print(orjson.dumps(measure(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
