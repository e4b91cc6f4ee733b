"""`make bench` / `python -m bench`: open-loop benchmark of the whole pipeline; writes bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.checks import audit
from bench.counteroffer import measure as counteroffer_cost
from bench.overload import overload, overload_rate
from bench.ratelimit import measure as rate_limit_cost
from bench.report import verdicts, write
from bench.runner import PYTHON_SERVICES, Plan, Runner, phase_dicts, ratio
from bench.target import Target, bench_keys, running_stack, start_stack, state_root
from bench.webhooks import log_line, webhook_cost
from fastloans_dev.devstack.system import log

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (BENCH_ARGS in `make bench`)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases (about two minutes) for development")
    parser.add_argument("--rates", default="250,500,1000", help="fixed POST rates per second (comma-separated)")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        help="POSTs at --warmup-rate before measuring, so every JIT and cache is warm "
        "(default 60; 20 with --quick; 0 skips it)",
    )
    parser.add_argument("--warmup-rate", type=int, default=300, help="rate of the warm-up phase")
    parser.add_argument("--fixed-seconds", type=float, help="length of each fixed-rate phase (default 60)")
    parser.add_argument("--sustain-seconds", type=float, help="length of the sustained run (default 300)")
    parser.add_argument("--probe-seconds", type=float, help="length of each search step (default 30)")
    parser.add_argument("--search-start", type=int, default=500, help="first rate of the sustained-rate search")
    parser.add_argument("--search-step", type=int, default=250, help="rate step of the search")
    parser.add_argument("--search-max", type=int, default=4000, help="highest rate the search tries")
    parser.add_argument("--get-rate", type=int, default=2500, help="open-loop rate of the GET-by-id phase")
    parser.add_argument(
        "--overload-rate", type=int, default=None, help="rate of the overload phase (default: twice the sustained rate)"
    )
    parser.add_argument("--overload-seconds", type=float, help="length of the overload phase (default 120)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes for high rates")
    parser.add_argument("--connections", type=int, default=128, help="most connections open in open-loop phases")
    parser.add_argument(
        "--ceiling-connections", type=int, default=32, help="clients in the closed-loop throughput phases"
    )
    parser.add_argument("--keys", type=int, default=32, help="API keys to spread the load over")
    parser.add_argument("--new-stack", action="store_true", help="start a stack even if `make up` is running")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="start the benchmark's stack with fsync off, as the test stacks run (not durable)",
    )
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="give every POST its own Idempotency-Key (and let the generator send one again after no answer); "
        "the gateway's batches then claim the keys in the transaction that stores the rows",
    )
    parser.add_argument("--web-concurrency", type=int, default=None, help="gateway worker processes (own stack)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the services of the benchmark's own stack",
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=500,
        default=None,
        metavar="RATE",
        help="record py-spy profiles of every service during the fixed-rate phase at RATE (500)",
    )
    parser.add_argument(
        "--skip", default="", help="phases to leave out: ceilings,fixed,webhooks,reads,sustained,overload,ratelimit"
    )
    parser.add_argument("--output", type=Path, default=None, help="results folder (default bench/results)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Durations from --quick or the full defaults, overridden by explicit options."""
    quick = args.quick
    return Plan(
        rates=[int(r) for r in args.rates.split(",") if r.strip()],
        fixed_seconds=args.fixed_seconds or (10 if quick else 60),
        warmup_seconds=(20 if quick else 60) if args.warmup_seconds is None else args.warmup_seconds,
        warmup_rate=args.warmup_rate,
        ceiling_seconds=5 if quick else 15,
        get_seconds=8 if quick else 30,
        get_rate=args.get_rate,
        probe_seconds=args.probe_seconds or (8 if quick else 30),
        sustain_seconds=args.sustain_seconds or (20 if quick else 300),
        search_start=args.search_start,
        search_step=args.search_step,
        search_max=args.search_max,
        generators=max(1, args.generators),
        connections=args.connections,
        ceiling_connections=args.ceiling_connections,
        drain_timeout=60 if quick else 180,
        overload_seconds=args.overload_seconds or (20 if quick else 120),
        profile_rate=args.profile,
        idempotency_keys=args.idempotency_keys,
    )


def commit() -> str:
    """The checked-out commit, with `-dirty` when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _remove_state(path: Path) -> None:
    pg = path / "pg"
    if pg.is_symlink():
        shutil.rmtree(pg.resolve(), ignore_errors=True)
        pg.unlink()
    shutil.rmtree(path, ignore_errors=True)


def _fresh_state(root: Path) -> Path:
    """An empty state folder for this run's own stack, `bench-<pid>`: two runs at once never share one.

    The folders of finished runs are removed (a run keeps its own afterwards, for its logs).
    """
    for old in root.glob("bench-*"):
        pid = old.name.removeprefix("bench-")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            _remove_state(old)
    path = root / f"bench-{os.getpid()}"
    _remove_state(path)
    path.mkdir(parents=True)
    return path


def choose_target(args: argparse.Namespace) -> Target:
    """The running `make up` stack, or a new one in `.fastloans/bench-<pid>/`."""
    root = state_root()
    if not args.new_stack:
        reused = running_stack(root)
        if reused is not None:
            log(f"using the running stack at {reused.api_url}")
            return reused
    extra = dict(item.split("=", 1) for item in args.env)
    if args.web_concurrency:
        extra["WEB_CONCURRENCY"] = str(args.web_concurrency)
    log("starting a stack for the benchmark (PostgreSQL pair, Kafka, services)")
    return start_stack(_fresh_state(root), durable=not args.no_fsync, extra_env=extra)


async def run(args: argparse.Namespace, target: Target, plan: Plan, folder: Path) -> dict[str, Any]:
    """Every phase, then the audit; returns the results document."""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    keys = await asyncio.to_thread(bench_keys, target.primary_url, args.keys)
    runner = Runner(target, keys, plan, folder)
    await runner.probe.start()
    runner.monitor.sample(time.time())
    headline: dict[str, Any] = {}
    try:
        calibration = await runner.calibrate()
        headline["generator_ceiling_rps"] = calibration.achieved_rps
        if plan.warmup_seconds > 0:
            await runner.warm_up()
        if "ceilings" not in skip:
            noop, post = await runner.ceilings()
            headline["noop_rps"] = noop.achieved_rps
            headline["post_rps"] = post.achieved_rps
            headline["post_to_noop_ratio"] = ratio(post.achieved_rps, noop.achieved_rps) if noop.ok else None
        if "fixed" not in skip:
            for rate in plan.rates:
                result = await runner.fixed_rate(rate)
                if rate == 500:
                    headline["post_p99_ms_at_500"] = result.latency_ms.get("p99")
                    headline["decision_p50_ms_at_500"] = (result.decision_ms or {}).get("p50")
                    headline["decision_p99_ms_at_500"] = (result.decision_ms or {}).get("p99")
        if "webhooks" not in skip:
            log("webhooks: POSTs at 500/s with the benchmark tenant's endpoint disabled, then enabled")
            headline["webhooks"] = await webhook_cost(runner, rate=500, rounds=2 if args.quick else 3)
            log_line(headline["webhooks"])
        if "reads" not in skip:
            ceiling, at_rate = await runner.reads()
            headline["get_rps"] = ceiling.achieved_rps
            headline["get_p99_ms"] = at_rate.latency_ms.get("p99")
            headline["get_achieved_rps_at_target"] = at_rate.achieved_rps
        sustained: dict[str, Any] = {}
        if "sustained" not in skip:
            sustained = await runner.sustained()
            held = sustained["held"]
            headline["sustained_decisions_per_s"] = held["decided_per_s"] if held.get("flat") else 0.0
            headline["sustained_rate"] = held["rate"] if held.get("flat") else 0
            within = sustained["within_slo"]
            headline["sustained_within_slo_per_s"] = within.get("decided_per_s", 0.0) if within["within_slo"] else 0.0
            headline["hold_seconds_over_250ms_p99"] = held.get("seconds_over_250ms_p99")
        if "overload" not in skip:
            rate = args.overload_rate or overload_rate(sustained, plan.rates)
            headline["overload"] = await overload(runner, rate, plan.overload_seconds)
            headline["overload_failed"] = headline["overload"]["failed"]
        runner.monitor.sample(time.time())
        log(f"auditing {len(runner.accepted):,} accepted applications")
        checked = await audit(target.primary_url, runner.accepted, wait_seconds=plan.drain_timeout)
        if "ratelimit" not in skip:
            log("measuring the per-tenant rate limiter (admission CPU, sync statement)")
            headline["rate_limit"] = await rate_limit_cost(target.primary_url)
        if "counteroffer" not in skip:
            log("measuring the counteroffer's CPU cost per decision in the approval service (bench.counteroffer)")
            headline["counteroffer"] = await asyncio.to_thread(counteroffer_cost)
    finally:
        await runner.probe.stop()
    usage = runner.usage()
    services = [u["peak_process_rss_mb"] for name, u in usage.items() if name in PYTHON_SERVICES]
    results: dict[str, Any] = {
        "quick": args.quick,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ"),
        "commit": commit(),
        "sustained_decisions_per_s": headline.get("sustained_decisions_per_s"),
        "decision_p50_ms_at_500": headline.get("decision_p50_ms_at_500"),
        "decision_p99_ms_at_500": headline.get("decision_p99_ms_at_500"),
        "post_p99_ms_at_500": headline.get("post_p99_ms_at_500"),
        "get_rps": headline.get("get_rps"),
        "get_p99_ms": headline.get("get_p99_ms"),
        "post_to_noop_ratio": headline.get("post_to_noop_ratio"),
        "max_rss_mb": max(services) if services else None,
        "lost": checked.lost,
        "duplicates": checked.duplicates,
        **{k: v for k, v in headline.items() if k not in ("sustained_decisions_per_s",)},
        "accepted": checked.accepted,
        "decided": checked.decided,
        "lost_examples": checked.lost_examples,
        "sustained": sustained,
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "system": platform.platform(terse=True),
        },
        "stack": {
            "reused": target.reused,
            "durable": not args.no_fsync if not target.reused else None,
            "web_concurrency": int(target.environment.get("WEB_CONCURRENCY", 1)) if not target.reused else None,
            "environment": {k: v for k, v in target.environment.items() if k != "FASTLOANS_STATE_DIR"},
        },
        "plan": plan.__dict__,
        "phases": phase_dicts(runner.phases),
        "usage": usage,
        "profiles": runner.profiles,
    }
    results["targets"] = verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    args = parse_args(argv)
    plan = make_plan(args)
    folder = args.output or (RESULTS / "quick" if args.quick else RESULTS)
    load_before = os.getloadavg()
    target = choose_target(args)
    try:
        results = asyncio.run(run(args, target, plan, folder))
    finally:
        if not target.reused:
            log("stopping the benchmark's stack")
            target.stop()
    results["machine"]["load_before"] = [round(x, 2) for x in load_before]
    dated = write(results, folder)
    for item in results["targets"].values():
        status = "ok  " if item["met"] else "MISS"
        print(
            f"{status} {item['label']:<42} {item['value']!s:>10}  target {item['target']}"
            f"{'  (' + item['miss'] + ')' if item['miss'] else ''}"
        )
    print(f"\nwrote {dated.relative_to(ROOT) if dated.is_relative_to(ROOT) else dated} and latest.{{json,md,png}}")
    return 0 if results["lost"] == 0 and results["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
