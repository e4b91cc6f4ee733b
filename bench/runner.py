"""The benchmark's phases: calibration, throughput ceilings, fixed rates, reads, and the sustained-rate search."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import Generator, Job, Outcome, merge, start_noop_server
from bench.monitor import Monitor
from bench.probes import Backlog, Probe, decision_seconds, wait_drained
from bench.target import Target
from bench.timeline import Timeline, worst_seconds
from bench.workload import accepted_ids, get_requests, noop_requests, post_requests
from fastloans import services as registry
from fastloans_dev.devstack.system import free_port

# Every service of the registry (the components named after them are Python processes).
PYTHON_SERVICES = tuple(service.short for service in registry.SERVICES)
# The latency SLO a sustained rate must keep to count as `sustained_within_slo_per_s` (issue: the tail).
SLO_POST_P99_MS = 50.0
SLO_DECISION_P99_MS = 500.0
# A second of the hold whose POST p99 passes this counts as a stall.
STALL_P99_MS = 250.0
# Applications of a hold whose decision latency is read back (all of them at 1,000/s for 300 s is 300,000).
DECISION_SAMPLE = 20_000


@dataclass
class Plan:
    """Durations, rates and sizes of one run."""

    rates: list[int]
    fixed_seconds: float
    warmup_seconds: float
    warmup_rate: int
    ceiling_seconds: float
    get_seconds: float
    get_rate: int
    probe_seconds: float
    sustain_seconds: float
    search_start: int
    search_step: int
    search_max: int
    generators: int
    connections: int
    ceiling_connections: int
    drain_timeout: float
    profile_rate: int | None = None
    overload_seconds: float = 120.0
    idempotency_keys: bool = False


@dataclass
class PhaseResult:
    """What one phase measured."""

    name: str
    kind: str
    mode: str
    target_rate: float | None
    seconds: float
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    latency_ms: dict[str, float]
    send_lag_p99_ms: float
    statuses: dict[str, int]
    cpu_percent: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    decision_ms: dict[str, float] | None = None
    backlog: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] | None = None
    # Requests with no answer, by why (the generator's exception names).
    no_answer_causes: dict[str, int] = field(default_factory=dict)
    # Requests sent again on a new connection after no answer on a reused one, by the first failure's cause.
    retried: dict[str, int] = field(default_factory=dict)


def percentiles(values: np.ndarray, *, scale: float = 1000.0) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and mean (milliseconds by default); empty input gives an empty dict."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {}
    qs = np.percentile(values, [50, 90, 99, 99.9]) * scale
    return {
        "p50": round(float(qs[0]), 2),
        "p90": round(float(qs[1]), 2),
        "p99": round(float(qs[2]), 2),
        "p99.9": round(float(qs[3]), 2),
        "max": round(float(values.max() * scale), 2),
        "mean": round(float(values.mean() * scale), 2),
        "count": int(values.size),
    }


def backlog_trend(samples: list[Backlog], *, warmup: float = 0.2) -> dict[str, Any]:
    """Start, end and peak backlog, its slope (items per second) after the warm-up, and decisions per second."""
    if len(samples) < 2:
        return {}
    start, end = samples[0].at, samples[-1].at
    steady = [s for s in samples if s.at >= start + warmup * (end - start)] or samples
    times = np.array([s.at for s in steady])
    totals = np.array([s.total for s in steady], dtype=float)
    slope = float(np.polyfit(times - times[0], totals, 1)[0]) if len(steady) >= 3 else 0.0
    span = steady[-1].at - steady[0].at
    decided = (steady[-1].recorded - steady[0].recorded) / span if span > 0 else 0.0
    return {
        "start": samples[0].total,
        "end": samples[-1].total,
        "peak": max(s.total for s in samples),
        "slope_per_s": round(slope, 2),
        "decided_per_s": round(decided, 1),
        "outbox_end": samples[-1].outbox,
        "lag_end": samples[-1].lag,
        "series": [(round(s.at - start, 1), s.total) for s in samples],
    }


def is_flat(trend: dict[str, Any], rate: float, seconds: float) -> bool:
    """Backlog not growing: it grows by less than half a second of arrivals over the steady window,
    ends below two seconds of arrivals, and decisions keep up with submissions."""
    if not trend:
        return False
    growth = trend["slope_per_s"] * seconds * 0.8
    return (
        growth <= max(0.5 * rate, 100) and trend["end"] <= max(2 * rate, 500) and trend["decided_per_s"] >= 0.95 * rate
    )


class Runner:
    """Runs the phases against one target, sampling processes and backlog throughout."""

    def __init__(self, target: Target, keys: list[str], plan: Plan, results_dir: Path) -> None:
        self.target = target
        self.keys = keys
        self.plan = plan
        self.results_dir = results_dir
        self.monitor = Monitor(target.component_ports)
        self.probe = Probe(target.primary_url, target.kafka)
        self.phases: list[PhaseResult] = []
        self.accepted: list[uuid.UUID] = []
        self.seed = 0
        self.started = time.time()
        self.profiles: dict[str, Any] = {}

    # -- one phase ---------------------------------------------------------

    async def phase(
        self,
        name: str,
        kind: str,
        requests: list[bytes],
        *,
        rate: float | None,
        seconds: float,
        connections: int,
        host: tuple[str, int] | None = None,
        generators: int | None = None,
        timeline: Timeline | None = None,
    ) -> tuple[PhaseResult, Outcome, list[Backlog]]:
        """Drive one load phase and measure it (second by second too, with a `timeline`)."""
        count = generators or (self.plan.generators if rate is None or rate > 300 else 1)
        host_name, port = host or self.target.address
        start_at = time.time() + 1.5
        gens = [
            Generator(
                Job(
                    host=host_name,
                    port=port,
                    requests=requests[i::count] or requests,
                    duration=seconds,
                    rate=rate / count if rate else None,
                    connections=max(1, connections // count),
                    start_at=start_at,
                    phase_offset=i / count,
                    keep_ids=kind == "post",
                )
            )
            for i in range(count)
        ]
        for gen in gens:
            gen.start()
            if gen.pid:
                self.monitor.add("load generator", gen.pid)
        backlog: list[Backlog] = []
        profiled = self.plan.profile_rate is not None and (
            name == f"post@{self.plan.profile_rate}/s" or name == f"GET@{self.plan.get_rate}/s"
        )
        profilers = self._start_profilers(name, seconds) if profiled else []
        last_print = 0.0
        while not all(g.finished for g in gens):
            await asyncio.sleep(1.0)
            now = time.time()
            self.monitor.sample(now)
            for gen in gens:
                gen.poll()
            if kind == "post":
                backlog.append(await self.probe.sample())
            if timeline is not None:
                await timeline.sample(self._now(backlog))
            if now - last_print >= (1.0 if sys.stderr.isatty() else 5.0):
                last_print = now
                self._progress(name, rate, seconds, now - start_at, gens, backlog)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        outcome = merge([g.join() for g in gens])
        self.monitor.sample(time.time())
        self._finish_profilers(profilers)
        result = self._summarise(
            name, kind, "closed" if rate is None else "open", rate, seconds, outcome, start_at, time.time()
        )
        if backlog:
            result.backlog = backlog_trend(backlog)
        if timeline is not None:
            result.timeline = timeline.rows(outcome, start_at)
        self.phases.append(result)
        return result, outcome, backlog

    def _now(self, backlog: list[Backlog]) -> dict[str, Any]:
        """What the runner itself knows of this second: the backlog and each component's CPU."""
        now: dict[str, Any] = {"backlog": backlog[-1].total if backlog else None}
        for name, usage in self.monitor.usage.items():
            if usage.samples:
                now[f"cpu_{name.replace(' ', '_').replace('-', '_')}"] = round(usage.samples[-1][1], 1)
        return now

    def _progress(
        self,
        name: str,
        rate: float | None,
        seconds: float,
        elapsed: float,
        gens: list[Generator],
        backlog: list[Backlog],
    ) -> None:
        done = sum(g.done for g in gens)
        errors = sum(g.errors for g in gens)
        queued = f"  backlog {backlog[-1].total}" if backlog else ""
        line = (
            f"[bench] {name:<22} {min(max(elapsed, 0), seconds):5.0f}/{seconds:.0f}s  "
            f"answered {done:>7}  errors {errors:>5}{queued}"
        )
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line.ljust(100))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _summarise(
        self,
        name: str,
        kind: str,
        mode: str,
        rate: float | None,
        seconds: float,
        outcome: Outcome,
        start: float,
        end: float,
    ) -> PhaseResult:
        status = np.frombuffer(outcome.status, dtype=np.uint16) if len(outcome.status) else np.zeros(0)
        latency = np.frombuffer(outcome.latency, dtype=np.float64) if len(outcome.latency) else np.zeros(0)
        ok = (status >= 200) & (status < 300)
        statuses: dict[str, int] = {}
        for code, n in zip(*np.unique(status, return_counts=True), strict=True):
            statuses[str(int(code)) if code else "no answer"] = int(n)
        lag = np.frombuffer(outcome.send_lag, dtype=np.float64) if len(outcome.send_lag) else np.zeros(0)
        cpu = {comp: round(self.monitor.cpu_percent(comp, start, end), 1) for comp in self.monitor.usage}
        # CPU per answered request: comparable between runs even when other work shares the machine.
        per_request = {
            comp: round(1000 * self.monitor.cpu_seconds(comp, start, end) / max(1, int(ok.sum())), 3)
            for comp in self.monitor.usage
        }
        return PhaseResult(
            name=name,
            kind=kind,
            mode=mode,
            target_rate=rate,
            seconds=seconds,
            sent=int(status.size),
            ok=int(ok.sum()),
            errors=int(status.size - ok.sum()),
            achieved_rps=round(float(ok.sum()) / seconds, 1),
            # Failed and timed-out requests count with the time they took to fail: no survivor bias.
            latency_ms=percentiles(latency),
            send_lag_p99_ms=percentiles(lag).get("p99", 0.0),
            statuses=statuses,
            cpu_percent=cpu,
            cpu_ms_per_request=per_request,
            no_answer_causes=dict(outcome.causes),
            retried=dict(outcome.retried),
        )

    # -- profiles ------------------------------------------------------------

    def _start_profilers(self, phase: str, seconds: float) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        folder = self.results_dir / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        started = []
        for component in PYTHON_SERVICES:
            roots = self.monitor.roots.get(component)
            if not roots:
                continue
            out = folder / f"{phase.split('/')[0].replace('@', '-at-')}-{component}.txt"
            argv = [
                spy,
                "record",
                "--format",
                "raw",
                "--subprocesses",
                "--nonblocking",
                "-r",
                "50",
                "-d",
                str(int(seconds) + 1),
                "-p",
                str(roots[0].pid),
                "-o",
                str(out),
            ]
            if phase.startswith("GET") and component != "gateway":
                continue
            started.append(
                (component, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
            )
        return started

    def _finish_profilers(self, profilers: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
        for _component, proc, out in profilers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                self.profiles[out.stem] = summarise_profile(out)

    # -- the benchmark -------------------------------------------------------

    def _posts(self, count: int) -> list[bytes]:
        self.seed += 1
        return post_requests(
            self.target.host, self.keys, max(1, count), seed=self.seed, idempotency_keys=self.plan.idempotency_keys
        )

    async def drain(self) -> bool:
        """Wait until the pipeline has nothing queued."""
        return await wait_drained(self.probe, within=self.plan.drain_timeout)

    async def calibrate(self) -> PhaseResult:
        """The generator's own ceiling, against a trivial server in another process."""
        port = free_port()
        server = start_noop_server(port)
        try:
            await asyncio.sleep(1.0)
            result, _, _ = await self.phase(
                "generator ceiling",
                "noop",
                noop_requests(f"127.0.0.1:{port}"),
                rate=None,
                seconds=self.plan.ceiling_seconds,
                connections=self.plan.ceiling_connections,
                host=("127.0.0.1", port),
            )
        finally:
            server.terminate()
            server.join(5)
        return result

    async def warm_up(self) -> PhaseResult:
        """POSTs at a moderate rate before anything is measured.

        A new stack is cold: Kafka's JVM spends its first minutes compiling its hot paths (the
        JIT compiler threads took half of the broker's CPU in the first phases of a cold run),
        and PostgreSQL's caches and the services' prepared statements are empty. The phase is
        reported like the others but feeds no headline figure; its applications are audited.
        """
        seconds, rate = self.plan.warmup_seconds, self.plan.warmup_rate
        result, outcome, _ = await self.phase(
            "warm-up",
            "post",
            self._posts(int(rate * seconds)),
            rate=rate,
            seconds=seconds,
            connections=self.plan.connections,
        )
        self.accepted += accepted_ids(outcome)
        await self.drain()
        return result

    async def ceilings(self) -> tuple[PhaseResult, PhaseResult]:
        """Closed-loop throughput of the gateway's no-op endpoint and of POST."""
        noop, _, _ = await self.phase(
            "noop ceiling",
            "noop",
            noop_requests(self.target.host),
            rate=None,
            seconds=self.plan.ceiling_seconds,
            connections=self.plan.ceiling_connections,
        )
        post, outcome, _ = await self.phase(
            "POST ceiling",
            "post",
            self._posts(int(self.plan.ceiling_seconds * 3000)),
            rate=None,
            seconds=self.plan.ceiling_seconds,
            connections=self.plan.ceiling_connections,
        )
        self.accepted += accepted_ids(outcome)
        await self.drain()
        return noop, post

    async def _post_phase(self, label: str, rate: int, seconds: float) -> tuple[PhaseResult, Outcome]:
        """POST new applications at `rate` per second for `seconds` on the plan's connections."""
        result, outcome, _ = await self.phase(
            label,
            "post",
            self._posts(int(rate * seconds)),
            rate=rate,
            seconds=seconds,
            connections=self.plan.connections,
        )
        return result, outcome

    async def fixed_rate(self, rate: int) -> PhaseResult:
        """POST at `rate` per second; accept latency, then submission-to-decision latency once drained."""
        seconds = self.plan.fixed_seconds
        result, outcome = await self._post_phase(f"post@{rate}/s", rate, seconds)
        ids = accepted_ids(outcome)
        self.accepted += ids
        await self.drain()
        decided = await decision_seconds(self.target.primary_url, ids)
        result.decision_ms = percentiles(np.array(decided, dtype=float))
        result.decision_ms["undecided"] = len(ids) - len(decided)
        return result

    async def reads(self) -> tuple[PhaseResult, PhaseResult]:
        """GET by id (served by the replica): closed-loop ceiling, then open loop at the target rate."""
        ids = list(self.accepted[-20_000:])
        random.Random(7).shuffle(ids)  # noqa: S311 - a reproducible order, not a secret
        requests = get_requests(self.target.host, self.keys, ids or [uuid.uuid4()])
        ceiling, _, _ = await self.phase(
            "GET ceiling",
            "get",
            requests,
            rate=None,
            seconds=self.plan.ceiling_seconds,
            connections=self.plan.ceiling_connections,
        )
        at_rate, _, _ = await self.phase(
            f"GET@{self.plan.get_rate}/s",
            "get",
            requests,
            rate=self.plan.get_rate,
            seconds=self.plan.get_seconds,
            connections=self.plan.connections,
        )
        return ceiling, at_rate

    async def sustained(self) -> dict[str, Any]:
        """Step the rate up in short probes while the backlog stays flat, then hold the best for the full time."""
        plan = self.plan
        probes: list[dict[str, Any]] = []
        best, rate = 0, plan.search_start
        while rate <= plan.search_max and await self._probe(rate, probes):
            best, rate = rate, rate + plan.search_step
        rate = plan.search_start - plan.search_step
        while best == 0 and rate > 0:
            # Not even the starting rate held: step down until one does.
            if await self._probe(rate, probes):
                best = rate
            rate -= plan.search_step
        held: dict[str, Any] = {"rate": 0, "decided_per_s": 0.0, "flat": False}
        within: dict[str, Any] = {}
        holds: list[dict[str, Any]] = []
        candidate = best
        # Down from the best probe: the first hold with a flat backlog is the sustained rate; holding on down
        # (a few more steps at most) finds the first one that also keeps the latency SLO.
        while candidate > 0 and len(holds) < 3 + (2 if held["flat"] else 0) and not within:
            hold = await self._hold(candidate)
            holds.append(hold)
            if hold["flat"] and not held["flat"]:
                held = hold
            if hold["flat"] and hold["within_slo"]:
                within = hold
            if not hold["flat"] and held["flat"]:
                break
            candidate -= plan.search_step
        return {
            "probes": probes,
            "held": held,
            "within_slo": within or {"rate": 0, "within_slo": False},
            "holds": [{k: v for k, v in h.items() if k != "timeline"} for h in holds],
        }

    async def _hold(self, rate: int) -> dict[str, Any]:
        """The full-length hold at `rate`: backlog trend, POST and decision latency, and a per-second timeline."""
        plan = self.plan
        timeline = Timeline(self.target.primary_url, self.target.metrics_url)
        await timeline.start()
        try:
            result, outcome, _ = await self.phase(
                f"sustain@{rate}/s",
                "post",
                self._posts(int(rate * plan.sustain_seconds)),
                rate=rate,
                seconds=plan.sustain_seconds,
                connections=plan.connections,
                timeline=timeline,
            )
        finally:
            await timeline.stop()
        ids = accepted_ids(outcome)
        self.accepted += ids
        trend = result.backlog or {}
        flat = is_flat(trend, rate, plan.sustain_seconds) and result.errors <= result.sent * 0.001
        await self.drain()
        sample = random.Random(rate).sample(ids, min(len(ids), DECISION_SAMPLE))  # noqa: S311 - not a secret
        result.decision_ms = percentiles(np.array(await decision_seconds(self.target.primary_url, sample), dtype=float))
        post_p99 = result.latency_ms.get("p99", math.inf)
        decision_p99 = result.decision_ms.get("p99", math.inf)
        rows = result.timeline or []
        return {
            "rate": rate,
            "seconds": plan.sustain_seconds,
            "flat": flat,
            "within_slo": flat and post_p99 <= SLO_POST_P99_MS and decision_p99 <= SLO_DECISION_P99_MS,
            "decided_per_s": trend.get("decided_per_s", 0.0),
            "backlog": _without_series(trend),
            "post_latency_ms": result.latency_ms,
            "decision_ms": result.decision_ms,
            "seconds_over_250ms_p99": sum(1 for r in rows if r["p99_ms"] > STALL_P99_MS),
            "worst_seconds": worst_seconds(rows),
            "timeline": rows,
        }

    async def _probe(self, rate: int, probes: list[dict[str, Any]]) -> bool:
        """One short step of the search; True if the backlog stayed flat."""
        seconds = self.plan.probe_seconds
        result, outcome = await self._post_phase(f"probe@{rate}/s", rate, seconds)
        self.accepted += accepted_ids(outcome)
        flat = is_flat(result.backlog or {}, rate, seconds) and result.errors <= result.sent * 0.001
        probes.append({"rate": rate, "flat": flat, "backlog": _without_series(result.backlog)})
        await self.drain()
        return flat

    def usage(self) -> dict[str, dict[str, float]]:
        """CPU seconds, average CPU and peak RSS of each component over the run."""
        elapsed = max(1.0, time.time() - self.started)
        return {
            name: {
                "cpu_seconds": round(u.cpu_seconds, 1),
                "cpu_percent_avg": round(100 * u.cpu_seconds / elapsed, 1),
                "peak_rss_mb": round(u.peak_rss_mb, 1),
                "peak_process_rss_mb": round(u.peak_process_rss_mb, 1),
                "processes_max": u.processes,
            }
            for name, u in self.monitor.usage.items()
        }


def _without_series(trend: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (trend or {}).items() if k != "series"}


def summarise_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Where a service spent its samples: the functions most often on the stack and most often at its top."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        total += count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    return (
        {"samples": total, "self_percent": ranked(own), "inclusive_percent": ranked(inclusive), "raw": path.name}
        if total
        else {"samples": 0}
    )


def phase_dicts(phases: list[PhaseResult]) -> list[dict[str, Any]]:
    """Phase results as plain dicts for the JSON report."""
    return [asdict(p) for p in phases]


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is zero."""
    return round(numerator / denominator, 3) if denominator and not math.isnan(denominator) else None
