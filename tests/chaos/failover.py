"""`make chaos CHAOS_ARGS="--failover"`: the PostgreSQL primary is lost for good under load and the replica takes over.

Starts a stack of its own whose services get both servers in each database URL
(`target_session_attrs=read-write` for writes, `prefer-standby` for reads), submits,
changes and withdraws applications at `--rate`, and a third of the way in:

1. SIGKILLs the primary with every backend (its machine is gone; it is never started again);
2. promotes the replica (`pg_ctl promote`): the services find it by themselves;
3. `--rebuild-after` seconds later, clones a new replica from the new primary (`pg_basebackup`)
   where the lost server was, and attaches it (synchronous again when `--replication sync`).

Then it drains the pipeline and checks every acknowledged application as `make chaos`
does, and reports acknowledged writes missing from the new primary, decisions applied
twice, the write downtime (from the kill to the first 2xx of a write sent after it) and
the latency of every attempt before, around and after the failover.

    python -m tests.chaos.run --failover --duration 120 --replication sync
    python -m tests.chaos.run --failover --duration 120 --replication async
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np

from bench import checks
from bench.runner import percentiles
from fastloans_dev.devstack.stack import Infra, Ports
from tests.chaos.fleet import Fleet
from tests.chaos.invariants import Verdict, verify, wait_drained
from tests.chaos.load import LoadGenerator, LoadStats
from tests.chaos.run import _api_key, _fresh_state, _say

# --replication: what `synchronous_commit` the primary gets (None: asynchronous streaming).
REPLICATION = {"sync": "on", "remote-apply": "remote_apply", "async": None}
WRITES = frozenset({"POST", "PATCH", "DELETE"})
WINDOW = 20.0  # seconds of attempts each latency figure covers


@dataclass
class FailoverConfig:
    """How long, how hard, and which replication."""

    duration: float = 120.0
    rate: float = 100.0
    instances: int = 2
    replication: str = "sync"
    kill_at: float = 1 / 3  # share of the duration
    rebuild_after: float = 10.0
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1_000_000))
    drain_timeout: float = 240.0
    durable: bool = True
    state_dir: Path | None = None


@dataclass
class Timeline:
    """When each step happened, in seconds from the start of the load."""

    killed: float = float("nan")
    promoted: float = float("nan")
    rebuilt: float = float("nan")
    first_write: float = float("nan")  # the first 2xx of a write sent after the kill
    standby_before: str = "?"  # the standby's sync_state in pg_stat_replication right before the kill
    standby_after: str = "?"  # the new standby's, once rebuilt

    @property
    def write_downtime(self) -> float:
        """From the kill to the first acknowledged write on the new primary."""
        return self.first_write - self.killed


@dataclass
class Lost:
    """Acknowledged client writes the new primary does not have."""

    submissions: int = 0  # 202 to a POST, no row
    changes: int = 0  # 202 to a PATCH, revision missing
    withdrawals: int = 0  # 204 to a DELETE, not withdrawn

    @property
    def total(self) -> int:
        """All of them."""
        return self.submissions + self.changes + self.withdrawals


@dataclass
class FailoverReport:
    """The outcome of one failover run."""

    config: FailoverConfig
    verdict: Verdict
    load: LoadStats
    timeline: Timeline
    lost: Lost
    latency_ms: dict[str, dict[str, float]]
    seconds: float

    @property
    def synchronous(self) -> bool:
        """Whether a commit waited for the replica."""
        return REPLICATION[self.config.replication] is not None

    @property
    def ok(self) -> bool:
        """The failover happened; no 5xx but 503; no decision twice; with synchronous replication nothing lost."""
        expected = "sync" if self.synchronous else "async"
        base = (
            self.timeline.standby_before == self.timeline.standby_after == expected
            and not np.isnan(self.timeline.rebuilt)
            and not np.isnan(self.timeline.first_write)
            and self.load.server_errors == 0
            and self.verdict.duplicates == 0
        )
        if not self.synchronous:  # losing acknowledged writes is the price measured here, not a failure
            return base
        return base and self.verdict.ok and self.lost.total == 0 and self.load.rejected == 0 and not self.load.abandoned

    def line(self) -> str:
        """The one-line summary."""
        t = self.timeline
        latency = " ".join(
            f"{name}={figures.get('p99', float('nan')):.0f}ms" for name, figures in self.latency_ms.items()
        )
        answers = " ".join(f"{k.replace(' ', ':')}={n}" for k, n in sorted(self.load.attempts.items()))
        return (
            f"replication={self.config.replication} standby[{t.standby_before}->{t.standby_after}] "
            f"{self.verdict.summary()} lost_acknowledged={self.lost.total} "
            f"(submissions={self.lost.submissions} changes={self.lost.changes} withdrawals={self.lost.withdrawals}) "
            f"write_downtime={t.write_downtime:.2f}s promote={t.promoted - t.killed:.2f}s "
            f"rebuild={t.rebuilt - t.promoted - self.config.rebuild_after:.1f}s p99[{latency}] "
            f"server_errors={self.load.server_errors} retries={self.load.retries} abandoned={self.load.abandoned} "
            f"rejected={self.load.rejected} answers[{answers}] duration={self.seconds:.0f}s seed={self.config.seed}"
        )


async def fail_over(
    infra: Infra, config: FailoverConfig, timeline: Timeline, started: float, log: Callable[[str], None]
) -> None:
    """Kill the primary at its time, promote the replica, then rebuild a replica from the new primary."""
    await asyncio.sleep(max(0.0, started + config.duration * config.kill_at - time.monotonic()))
    timeline.standby_before = await asyncio.to_thread(_standby_state, infra)
    log(f"fault: SIGKILL the PostgreSQL primary :{infra.postgres.primary.port} and its backends (for good)")
    await asyncio.to_thread(infra.postgres.kill_primary)
    timeline.killed = time.monotonic() - started
    log(f"promoting the replica :{infra.postgres.replica.port} (pg_ctl promote)")
    await asyncio.to_thread(infra.postgres.promote_replica)
    timeline.promoted = time.monotonic() - started
    log(f"primary is now :{infra.postgres.primary.port} ({timeline.promoted - timeline.killed:.2f}s after the kill)")
    await asyncio.sleep(config.rebuild_after)
    log(f"rebuilding a replica on :{infra.postgres.replica.port} from the new primary (pg_basebackup)")
    await asyncio.to_thread(infra.postgres.rebuild_replica)
    timeline.rebuilt = time.monotonic() - started
    timeline.standby_after = await asyncio.to_thread(_standby_state, infra)
    log(
        f"new replica streaming "
        f"({timeline.rebuilt - timeline.promoted - config.rebuild_after:.1f}s to clone and attach)"
    )


def _standby_state(infra: Infra) -> str:
    return infra.postgres.primary.psql("SELECT string_agg(sync_state, ',') FROM pg_stat_replication") or "none"


def first_write_after(stats: LoadStats, moment: float) -> float:
    """When the first write sent at or after `moment` was acknowledged (absolute monotonic time; NaN if none)."""
    done = [
        sent + seconds
        for sent, seconds, method, status in stats.answers
        if method in WRITES and sent >= moment and 200 <= status < 300
    ]
    return min(done, default=float("nan"))


def latency_windows(stats: LoadStats, started: float, timeline: Timeline) -> dict[str, dict[str, float]]:
    """Percentiles of every write attempt (any answer) sent before, right after the kill, and after the rebuild."""
    bounds = {
        "before": (timeline.killed - WINDOW, timeline.killed),
        "failover": (timeline.killed, timeline.killed + WINDOW),
        "after": (timeline.rebuilt, timeline.rebuilt + WINDOW),
    }
    figures = {}
    for name, (low, high) in bounds.items():
        values = [
            seconds for sent, seconds, method, _ in stats.answers if method in WRITES and low <= sent - started < high
        ]
        figures[name] = percentiles(np.array(values, dtype=float))
    return figures


async def lost_writes(pool: asyncpg.Pool, stats: LoadStats) -> Lost:
    """Compare what the client was told (2xx) with what the new primary has."""
    tracked = list(stats.accepted.values())
    rows, _ = await checks.stored(pool, [uuid.UUID(t.id) for t in tracked])
    lost = Lost()
    for t in tracked:
        row = rows.get(t.id)
        if row is None:
            lost.submissions += 1
            continue
        lost.changes += max(0, 1 + t.patches - row["revision"])
        lost.withdrawals += t.withdrawn and row["status"] != "withdrawn"
    return lost


async def failover(
    config: FailoverConfig, infra: Infra, fleet: Fleet, api_key: str, log: Callable[[str], None] = _say
) -> FailoverReport:
    """Load, lose the primary, promote, rebuild; then drain and verify."""
    settings = infra.settings()
    gateways = [fleet.url(name) for name in fleet.instances("gateway")]
    load = LoadGenerator(gateways, api_key, rate=config.rate, seed=config.seed)
    timeline = Timeline()
    log(
        f"load {config.rate}/s for {config.duration:.0f}s; replication {config.replication}; the primary dies at "
        f"{config.duration * config.kill_at:.0f}s"
    )
    # The checker follows the failover too: both servers in its URL.
    pool = await asyncpg.create_pool(infra.postgres.multi_host_url(), min_size=0, max_size=4)
    started = time.monotonic()
    try:
        loading = asyncio.create_task(load.run(config.duration * 10))
        faults = asyncio.create_task(fail_over(infra, config, timeline, started, log))
        while not loading.done():
            await asyncio.wait({loading, faults} if not faults.done() else {loading}, timeout=10)
            if faults.done() and time.monotonic() - started >= config.duration:
                load.stop()
            log(
                f"t={time.monotonic() - started:.0f}s accepted={len(load.stats.accepted)} "
                f"in_flight={load.in_flight} retries={load.stats.retries} "
                + " ".join(f"{k.replace(' ', ':')}={n}" for k, n in sorted(load.stats.attempts.items()))
            )
            if faults.done() and faults.exception() is not None:
                load.stop()
        await loading
        await faults
        timeline.first_write = first_write_after(load.stats, started + timeline.killed) - started
        log("load finished; waiting for the pipeline to drain")
        tracked = list(load.stats.accepted.values())
        drain = config.drain_timeout if REPLICATION[config.replication] else min(config.drain_timeout, 60)
        await wait_drained(pool, settings, tracked, within=drain, progress=log)
        verdict = await verify(pool, settings, gateways[0], api_key, load.stats)
        lost = await lost_writes(pool, load.stats)
    finally:
        try:
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            pool.terminate()
    for example in verdict.examples:
        log(f"problem: {example}")
    return FailoverReport(
        config,
        verdict,
        load.stats,
        timeline,
        lost,
        latency_windows(load.stats, started, timeline),
        time.monotonic() - started,
    )


def run(config: FailoverConfig, log: Callable[[str], None] = _say) -> FailoverReport:
    """Start a stack of its own with the chosen replication, run `failover` on it, and stop everything."""
    state = config.state_dir or _fresh_state()
    infra = Infra(
        state,
        Ports.free(),
        durable=config.durable,
        partitions=6,
        kafka_heap="384m",
        synchronous=REPLICATION[config.replication],
        multi_host=True,
    )
    fleet: Fleet | None = None
    try:
        log(
            f"starting the stack in {state} ({config.instances} instance(s) of every service, "
            f"replication {config.replication})"
        )
        infra.start()
        api_key = asyncio.run(_api_key(infra.postgres.primary_url))
        fleet = Fleet.on(infra)
        fleet.start_all(config.instances)
        return asyncio.run(failover(config, infra, fleet, api_key, log))
    finally:
        log(f"stopping the stack (logs kept in {infra.log_dir})")
        if fleet is not None:
            fleet.stop_all()
        infra.stop()


def main(argv: list[str]) -> int:
    """Command line (after `--failover`): run, print the summary line, exit 1 if a guarantee broke."""
    parser = argparse.ArgumentParser(
        prog="make chaos CHAOS_ARGS='--failover ...'", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument("--rate", type=float, default=100.0, help="submissions per second offered (default 100)")
    parser.add_argument("--instances", type=int, default=2, help="instances of every service (default 2)")
    parser.add_argument("--replication", choices=sorted(REPLICATION), default="sync", help="default sync")
    parser.add_argument("--rebuild-after", type=float, default=10.0, help="seconds from promotion to the rebuild")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed at the end)")
    args = parser.parse_args(argv)
    config = FailoverConfig(
        duration=args.duration,
        rate=args.rate,
        instances=args.instances,
        replication=args.replication,
        rebuild_after=args.rebuild_after,
    )
    if args.seed is not None:
        config.seed = args.seed
    report = run(config)
    print(report.line(), flush=True)
    return 0 if report.ok else 1
