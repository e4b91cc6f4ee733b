"""A load phase second by second: POST latency beside what each component was doing at that second.

Sampled once a second while the phase runs (`Timeline.sample`), from the outside and without changing the
stack's configuration:

- PostgreSQL (`pg_stat_bgwriter`, `pg_stat_wal`, `pg_stat_activity`): checkpoints started, buffers they wrote,
  WAL bytes, whether the checkpointer is writing, autovacuum workers running, backends waiting on a lock or
  on WAL;
- the gateway (`/metrics` on its ops port): the worst event-loop lag of the last second, submissions in
  flight, collector pauses;
- the pipeline backlog (outbox and consumer lag) and the CPU of every component, from the runner's own
  samplers.

`rows()` joins them with the per-second p50/p99/max of the requests *due* in that second (open loop: the
latency of a request counts from when it should have been sent), so a slow second lines up with its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from bench.loadgen import Outcome

PG_SAMPLE = """
SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints,
       (SELECT buffers_checkpoint FROM pg_stat_bgwriter) AS checkpoint_buffers,
       (SELECT wal_bytes FROM pg_stat_wal)::float8 AS wal_bytes,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'checkpointer' AND wait_event IS DISTINCT FROM 'CheckpointerMain') AS checkpointing,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker') AS autovacuum,
       (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock') AS lock_waits,
       (SELECT count(*) FROM pg_stat_activity WHERE wait_event IN ('WALWrite', 'WALSync', 'WALInsert')) AS wal_waits
"""
GATEWAY_SERIES = {
    "loop_lag_max_ms": ("fastloans_event_loop_lag_max_seconds", 1000.0),
    "in_flight": ("fastloans_submissions_in_flight", 1.0),
    "gc_pause_ms_total": ("fastloans_gc_pause_seconds_total", 1000.0),
}
_SAMPLE_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (?P<value>\S+)")


def scrape(url: str, timeout: float = 0.5) -> dict[str, float]:
    """The gateway's series we follow, summed over labels (worker processes are already merged by it)."""
    wanted = {name: (key, scale) for key, (name, scale) in GATEWAY_SERIES.items()}
    found: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL of the stack
            text = response.read().decode()
    except OSError:
        return found
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match and match["name"] in wanted:
            key, scale = wanted[match["name"]]
            found[key] = found.get(key, 0.0) + float(match["value"]) * scale
    return found


@dataclass
class Timeline:
    """Samples of one phase, a second apart."""

    primary_url: str
    metrics_url: str | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    db: asyncpg.Connection | None = None

    async def start(self) -> None:
        """Connect to the primary."""
        self.db = await asyncpg.connect(self.primary_url)

    async def stop(self) -> None:
        """Disconnect."""
        if self.db is not None:
            await self.db.close()

    async def sample(self, extra: dict[str, Any] | None = None) -> None:
        """One sample now; `extra` holds what the runner measured itself (backlog, CPU)."""
        assert self.db is not None
        row: dict[str, Any] = {"at": time.time()}
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            row.update(dict(await self.db.fetchrow(PG_SAMPLE)))
        if self.metrics_url:
            row.update(await asyncio.to_thread(scrape, self.metrics_url))
        row.update(extra or {})
        self.samples.append(row)

    def rows(self, outcome: Outcome, start: float) -> list[dict[str, Any]]:
        """One row per second of the phase: the latency of the requests due then, beside the samples."""
        intended = np.frombuffer(outcome.intended, dtype=np.float64) if len(outcome.intended) else np.zeros(0)
        latency = np.frombuffer(outcome.latency, dtype=np.float64) if len(outcome.latency) else np.zeros(0)
        status = np.frombuffer(outcome.status, dtype=np.uint16) if len(outcome.status) else np.zeros(0)
        if intended.size == 0:
            return []
        second = np.floor(intended - start).astype(int)
        rows = []
        previous: dict[str, Any] | None = None
        for s in range(max(0, int(second.min())), int(second.max()) + 1):
            mask = second == s
            if not mask.any():
                continue
            values = latency[mask] * 1000
            row: dict[str, Any] = {
                "second": s,
                "requests": int(mask.sum()),
                "errors": int(((status[mask] < 200) | (status[mask] >= 300)).sum()),
                "p50_ms": round(float(np.percentile(values, 50)), 1),
                "p99_ms": round(float(np.percentile(values, 99)), 1),
                "max_ms": round(float(values.max()), 1),
            }
            sample = self._sample_at(start + s + 1)
            if sample is not None:
                row.update(_changes(sample, previous))
                previous = sample
            rows.append(row)
        return rows

    def _sample_at(self, at: float) -> dict[str, Any] | None:
        """The first sample taken at or after `at` (the end of that second)."""
        return next((s for s in self.samples if s["at"] >= at), self.samples[-1] if self.samples else None)


# Counters become per-second changes; the rest are levels.
_COUNTERS = ("checkpoints", "checkpoint_buffers", "wal_bytes", "gc_pause_ms_total")


def _changes(sample: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for key, value in sample.items():
        if key == "at" or value is None:
            continue
        if key in _COUNTERS:
            before = previous.get(key) if previous else None
            out[key.removesuffix("_total")] = round(float(value) - float(before), 1) if before is not None else 0.0
        else:
            out[key] = round(float(value), 2) if isinstance(value, float) else value
    return out


def worst_seconds(rows: list[dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """The seconds with the highest p99, with what was going on in each."""
    return sorted(rows, key=lambda r: -r["p99_ms"])[:top]


def plot(rows: list[dict[str, Any]], path: Any, title: str) -> None:
    """POST latency per second (p50, p99, max) with checkpoints and autovacuum marked, and the loop lag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    seconds = [r["second"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), dpi=110, sharex=True, height_ratios=(3, 1))
    for key, style in (("p50_ms", "-"), ("p99_ms", "-"), ("max_ms", ":")):
        top.plot(seconds, [r[key] for r in rows], style, label=key.removesuffix("_ms"), linewidth=1)
    for r in rows:
        if r.get("checkpoints"):
            top.axvline(r["second"], color="red", alpha=0.4, linewidth=0.8)
        if r.get("autovacuum"):
            top.axvspan(r["second"], r["second"] + 1, color="orange", alpha=0.15, linewidth=0)
    top.set_yscale("log")
    top.set_ylabel("POST latency (ms)")
    top.set_title(title + " (red: checkpoint started; orange: autovacuum running)")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    bottom.plot(seconds, [r.get("loop_lag_max_ms", 0) for r in rows], label="gateway loop lag max (ms)")
    bottom.plot(seconds, [r.get("in_flight", 0) for r in rows], label="submissions in flight")
    bottom.set_xlabel("second of the phase")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
