"""The overload phase: twice the sustained rate, open loop, for two minutes; then the time to recover.

What it checks is how the gateway fails, not how fast it is: every request gets an answer quickly, either 202
(stored, and audited with the rest) or 503 with Retry-After from admission control; never a timeout, a
connection error or another 5xx. After the load stops, it measures how long the pipeline takes to decide
everything it accepted (the backlog back to zero) and how soon a single submission is accepted again.
"""

from __future__ import annotations

import time
from typing import Any

from bench.loadgen import NEVER_SENT
from bench.runner import Runner
from bench.workload import accepted_ids
from fastloans_dev.devstack.system import log
from fastloans_gateway.settings import GatewaySettings

ACCEPTED, REFUSED = "202", "503"


def connections() -> int:
    """How many connections the phase may open: twice the gateway's default bound of submissions in flight
    (ADMISSION_MAX_IN_FLIGHT), so that admission control and not the generator limits what reaches the gateway,
    and within its default connection cap (HTTP_MAX_CONNECTIONS). With the 128 of the other phases, 2,500/s
    offered against answers taking 73 ms left most requests queued in the generator, never sent."""
    defaults = GatewaySettings.model_fields
    return min(2 * defaults["admission_max_in_flight"].default, defaults["http_max_connections"].default)


def classify(statuses: dict[str, int]) -> dict[str, int]:
    """The phase's answers as accepted, refused (503) and failed (anything else, unanswered included)."""
    accepted = statuses.get(ACCEPTED, 0)
    refused = statuses.get(REFUSED, 0)
    return {"accepted": accepted, "refused": refused, "failed": sum(statuses.values()) - accepted - refused}


def overload_rate(sustained: dict[str, Any], rates: list[int], factor: float = 2.0) -> int:
    """Twice the rate the sustained run held (or twice the highest fixed rate when it did not run or hold)."""
    held = (sustained or {}).get("held") or {}
    base = held.get("rate") if held.get("flat") else 0
    return int(factor * (base or max(rates or [500])))


async def overload(runner: Runner, rate: int, seconds: float) -> dict[str, Any]:
    """Offer `rate` per second for `seconds`; report answers, latency and the recovery."""
    log(f"overload: {rate}/s offered for {seconds:.0f}s (twice the sustained rate); then the recovery")
    result, outcome, _ = await runner.phase(
        f"overload@{rate}/s",
        "post",
        runner._posts(int(rate * seconds)),
        rate=rate,
        seconds=seconds,
        connections=max(connections(), runner.plan.connections),
    )
    runner.accepted += accepted_ids(outcome)
    stopped = time.monotonic()
    drained = await runner.drain()
    recovery = round(time.monotonic() - stopped, 1) if drained else None
    counts = classify(result.statuses)
    report = {
        "rate": rate,
        "seconds": seconds,
        **counts,
        "refused_fraction": round(counts["refused"] / max(1, result.sent), 4),
        "statuses": result.statuses,
        "latency_ms": result.latency_ms,
        "send_lag_p99_ms": result.send_lag_p99_ms,
        "no_answer_causes": result.no_answer_causes,
        "retried": result.retried,
        "backlog_peak": (result.backlog or {}).get("peak"),
        "recovery_seconds": recovery,
    }
    unsent = result.no_answer_causes.get(NEVER_SENT, 0)
    if unsent:
        # Counted as failed all the same: the phase did not offer what it meant to.
        log(f"overload: {unsent:,} requests were never sent: every connection of the generator stayed busy")
    log(
        f"overload: {counts['accepted']:,} accepted, {counts['refused']:,} refused (503), {counts['failed']} failed; "
        f"p99 {result.latency_ms.get('p99')} ms, max {result.latency_ms.get('max')} ms; "
        f"backlog drained {'in ' + str(recovery) + ' s' if drained else 'NOT within the drain timeout'}"
    )
    return report
