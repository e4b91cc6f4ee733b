"""`make chaos`: the pipeline under load while services, brokers and the database fail; then the invariants.

Starts a stack of its own (PostgreSQL pair, Kafka, several instances of every
service) under `.fastloans/chaos-<pid>/`, submits applications at a steady
rate, injects faults at random moments, waits for the pipeline to drain and
checks every acknowledged application. Ends with one summary line and exits
non-zero on any loss, duplicate or resurrection, or on any 5xx other than
503 + Retry-After (an outage answers 503, never 500).

    python -m tests.chaos.run --duration 180 --rate 100 --instances 2

`--failover` runs `tests/chaos/failover.py` instead: the PostgreSQL primary lost
for good under load, the replica promoted, a new replica cloned.

Meanwhile a poison source (`tests/chaos/poison.py`, one message every
`--poison-interval` seconds, 0 turns it off) sends oversized and malformed
headers and bodies through the API and straight to the topics and the outbox.

The pipeline runs the `seed-with-review` policy (`--no-reviews`: the seed), so
part of the load is referred: two reviewers and a supervisor
(`tests/chaos/reviews.py`) claim and decide the cases while the faults hit, and
the cases are checked too (none opened twice, none without its application,
every final decision recorded once and applied).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from fastloans.policy.loader import shipped_policy_path
from fastloans.tenants import issue_key
from fastloans_dev.devstack.stack import Infra, Ports
from tests.chaos.faults import ALL_FAULTS, DEFAULT_FAULTS, FaultInjector, schedule
from tests.chaos.fleet import Fleet
from tests.chaos.invariants import Verdict, verify, wait_drained
from tests.chaos.load import LoadGenerator, LoadStats
from tests.chaos.poison import PoisonSource, PoisonStats
from tests.chaos.reviews import ReviewClient, ReviewStats, ReviewVerdict, review_keys
from tests.chaos.reviews import check as check_reviews
from tests.chaos.webhooks import WebhookCheck, WebhookVerdict

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChaosConfig:
    """How long, how hard, and which faults."""

    duration: float = 180.0
    rate: float = 100.0  # offered; enough to keep the pipeline busy while the faults hit
    instances: int = 2
    kafka_nodes: int = 1
    faults: tuple[str, ...] = DEFAULT_FAULTS
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1_000_000))
    drain_timeout: float = 300.0
    durable: bool = True
    state_dir: Path | None = None
    poison_interval: float = 2.0
    reviews: bool = True  # the seed-with-review policy, and reviewers deciding its referrals


@dataclass
class ChaosReport:
    """The outcome of one run."""

    config: ChaosConfig
    verdict: Verdict
    load: LoadStats
    faults: dict[str, int]
    seconds: float
    poison: PoisonStats = field(default_factory=PoisonStats)
    webhooks: WebhookVerdict = field(default_factory=WebhookVerdict)
    reviews: ReviewVerdict = field(default_factory=ReviewVerdict)
    review_client: ReviewStats = field(default_factory=ReviewStats)

    @property
    def reviews_ok(self) -> bool:
        """With review traffic: cases opened and decided, none lost, duplicated, resurrected or orphaned, and the
        reviewers got no answer but 2xx, 404, 409 or 503 with Retry-After."""
        if not self.config.reviews:
            return True
        client = self.review_client
        return self.reviews.ok and client.server_errors == 0 and client.unexpected == 0

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or resurrected, every planned fault injected, every poison dead-lettered."""
        return (
            self.verdict.ok
            and self.reviews_ok
            and sum(self.faults.values()) > 0
            and self.load.rejected == 0
            and self.load.server_errors == 0
            and self.poison.ok
            and self.webhooks.ok
        )

    def line(self) -> str:
        """The one-line summary."""
        faults = " ".join(f"{kind}={n}" for kind, n in sorted(self.faults.items()))
        answers = " ".join(f"{k.replace(' ', ':')}={n}" for k, n in sorted(self.load.attempts.items()))
        reviews = f"{self.reviews.summary(self.review_client)} " if self.config.reviews else ""
        return (
            f"{self.verdict.summary()} {reviews}{self.webhooks.summary()} {self.poison.summary()} "
            f"faults[{faults}] retries={self.load.retries} "
            f"abandoned={self.load.abandoned} rejected={self.load.rejected} answers[{answers}] "
            f"duration={self.seconds:.0f}s seed={self.config.seed}"
        )


def _say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def chaos(
    config: ChaosConfig, infra: Infra, fleet: Fleet, api_key: str, log: Callable[[str], None] = _say
) -> ChaosReport:
    """Load + faults on a running stack, then drain and verify."""
    rng = random.Random(config.seed)  # noqa: S311 - reproducible fault timing, not secrets
    settings = infra.settings()
    gateways = [fleet.url(name) for name in fleet.instances("gateway")]
    load = LoadGenerator(gateways, api_key, rate=config.rate, seed=config.seed)
    injector = FaultInjector(fleet, infra, rng, log)
    plan = schedule(config.faults, config.duration, rng)
    log(
        f"load {config.rate}/s for {config.duration:.0f}s; faults planned: "
        + ", ".join(f"{kind}@{at:.0f}s" for at, kind in plan)
    )
    pool = await asyncpg.create_pool(infra.postgres.primary_url, min_size=0, max_size=4)
    poison = PoisonSource(
        settings, pool, gateways, api_key, load.stats, interval=config.poison_interval, seed=config.seed
    )
    hooks = await WebhookCheck.subscribe(infra.postgres.primary_url, gateways[0], api_key)
    reviewers = ReviewClient(
        gateways, await review_keys(infra.postgres.primary_url, api_key) if config.reviews else {}, seed=config.seed
    )
    started = time.monotonic()
    try:
        # The load goes on until the duration has passed and the last fault has recovered.
        loading = asyncio.create_task(load.run(config.duration * 10))
        faults = asyncio.create_task(injector.run(plan, asyncio.get_running_loop().time()))
        poisoning = asyncio.create_task(poison.run())
        reviewing = asyncio.create_task(reviewers.run()) if config.reviews else None
        while not loading.done():
            await asyncio.wait({loading}, timeout=10)
            if faults.done() and time.monotonic() - started >= config.duration:
                load.stop()
            log(
                f"t={time.monotonic() - started:.0f}s accepted={len(load.stats.accepted)} "
                f"in_flight={load.in_flight} retries={load.stats.retries} decided={await _decided(pool)} "
                f"faults={sum(injector.counts.values())}"
                + (
                    f" reviews_claimed={reviewers.stats.claims} reviews_final={len(reviewers.stats.final)}"
                    if config.reviews
                    else ""
                )
            )
        await loading
        reviewers.stop()
        if reviewing is not None:
            await reviewing
        await faults
        poison.stop()
        await poisoning
        log(f"load finished; waiting for the pipeline to drain; {poison.stats.summary()}")
        tracked = list(load.stats.accepted.values())
        await wait_drained(pool, settings, tracked, within=config.drain_timeout, progress=log)
        verdict = await verify(pool, settings, gateways[0], api_key, load.stats)
        await poison.count_dead_letters(verdict.dead_letter_keys)
        reviewed = (
            await check_reviews(pool, [uuid.UUID(t.id) for t in tracked], reviewers.stats)
            if config.reviews
            else ReviewVerdict()
        )
        delivered = await hooks.verify(settings, load.stats, within=config.drain_timeout, progress=log)
    finally:
        await pool.close()
        hooks.stop()
    report = ChaosReport(
        config,
        verdict,
        load.stats,
        dict(injector.counts),
        time.monotonic() - started,
        poison.stats,
        delivered,
        reviewed,
        reviewers.stats,
    )
    for example in [*verdict.examples, *reviewed.examples, *reviewers.stats.examples, *delivered.examples]:
        log(f"problem: {example}")
    return report


async def _decided(pool: asyncpg.Pool) -> str:
    try:
        return str(
            await pool.fetchval(
                "SELECT count(*) FROM loan_applications WHERE status NOT IN ('pending', 'withdrawn')", timeout=5
            )
        )
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return "?"


async def _api_key(primary_url: str) -> str:
    conn = await asyncpg.connect(primary_url)
    try:
        return (await issue_key(conn, f"chaos-{os.getpid()}", scopes=("submit", "read"))).key
    finally:
        await conn.close()


def _fresh_state() -> Path:
    base = ROOT / ".fastloans"
    for old in base.glob("chaos-*"):
        pid = old.name.removeprefix("chaos-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old.resolve(), ignore_errors=True)
            if old.is_symlink():
                old.unlink()
    path = base / f"chaos-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(config: ChaosConfig, log: Callable[[str], None] = _say) -> ChaosReport:
    """Start a stack of its own, run `chaos` on it, and stop everything."""
    state = config.state_dir or _fresh_state()
    ports = Ports.free()
    infra = Infra(state, ports, durable=config.durable, partitions=6, kafka_nodes=config.kafka_nodes, kafka_heap="384m")
    fleet: Fleet | None = None
    try:
        log(
            f"starting the stack in {state} (Kafka nodes: {config.kafka_nodes}, "
            f"{config.instances} instance(s) of every service)"
        )
        infra.start()
        api_key = asyncio.run(_api_key(infra.postgres.primary_url))
        fleet = Fleet.on(infra, extra_env={"POLICY_FILE": shipped_policy_path()} if config.reviews else None)
        fleet.start_all(config.instances)
        return asyncio.run(chaos(config, infra, fleet, api_key, log))
    finally:
        log(f"stopping the stack (logs kept in {infra.log_dir})")
        if fleet is not None:
            fleet.stop_all()
        infra.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the summary line, exit 1 on any loss."""
    argv = sys.argv[1:] if argv is None else argv
    if "--failover" in argv:
        from tests.chaos import failover  # imported here: it imports this module

        return failover.main([arg for arg in argv if arg != "--failover"])
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--rate", type=float, default=100.0, help="submissions per second offered (default 100)")
    parser.add_argument("--instances", type=int, default=2, help="instances of every service (default 2)")
    parser.add_argument("--kafka-nodes", type=int, default=1, help="Kafka brokers (1 or 3)")
    parser.add_argument(
        "--faults", default=",".join(DEFAULT_FAULTS), help=f"comma-separated, from: {', '.join(ALL_FAULTS)}"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed at the end)")
    parser.add_argument(
        "--poison-interval", type=float, default=2.0, help="seconds between poison messages (default 2; 0: none)"
    )
    parser.add_argument(
        "--no-reviews", action="store_true", help="the seed policy and no review traffic (default: seed-with-review)"
    )
    args = parser.parse_args(argv)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    config = ChaosConfig(
        duration=args.duration,
        rate=args.rate,
        instances=args.instances,
        kafka_nodes=args.kafka_nodes,
        faults=faults,
        poison_interval=args.poison_interval,
        reviews=not args.no_reviews,
    )
    if args.seed is not None:
        config.seed = args.seed
    report = run(config)
    print(report.line(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
