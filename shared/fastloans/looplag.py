"""Event-loop lag: how late a timer fires, which is how long everything else in the process waited.

A process whose loop is blocked (a long synchronous call, a garbage collection, starved of CPU) delays every
request and message it holds, and nothing else shows it. A task wakes every `INTERVAL` seconds and records
how much later than asked it woke: the worst of each `WINDOW` in a gauge (what a one-second timeline needs),
every wake in a histogram (what a dashboard's quantiles need), and each collector generation's pause time.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

INTERVAL = 0.05
WINDOW = 1.0
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

LOOP_LAG = Histogram(
    "fastloans_event_loop_lag_seconds",
    "How much later than asked the event loop ran a timer (sampled every 50 ms).",
    buckets=LAG_BUCKETS,
)
LOOP_LAG_MAX = Gauge(
    "fastloans_event_loop_lag_max_seconds",
    "The worst event-loop lag of the last one to two seconds.",
    multiprocess_mode="max",
)
GC_PAUSE = Counter(
    "fastloans_gc_pause_seconds_total",
    "Time spent in the garbage collector, by generation.",
    ["generation"],
)
for _generation in ("0", "1", "2"):
    GC_PAUSE.labels(_generation)  # present from the start: zero is not "no data"

_gc_started: list[float] = []
# Pause seconds per generation not yet added to GC_PAUSE. The collector's callback only adds to this list: a
# metric's lock taken inside a collection could be the one the interrupted code holds (prometheus-client's
# multiprocess values share one lock), which would hang the process. `measure_lag` moves them into the metric.
_gc_pending = [0.0, 0.0, 0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        generation = min(2, int(info.get("generation", 0)))
        _gc_pending[generation] += time.perf_counter() - _gc_started.pop()


def _flush_gc() -> None:
    for generation, seconds in enumerate(_gc_pending):
        if seconds:
            _gc_pending[generation] -= seconds
            GC_PAUSE.labels(str(generation)).inc(seconds)


def freeze_startup_heap() -> int:
    """Move every object alive now into the collector's permanent generation; return how many are frozen.

    Call it once a service has started. A full (generation 2) collection walks every tracked object, and in a
    started service nearly all of them were made by its imports and its start: modules, classes, functions, the
    app and its routes, the pydantic and SQLAlchemy models. They live as long as the process and are never
    garbage, yet each full collection walked them again: about 100 ms for the gateway's 120,000 on a slow
    core, a pause that stalled every request in flight (and, standing for three timer samples, made admission
    control shed a burst of submissions). Frozen, they are left out of every later collection.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def watch_gc() -> None:
    """Count the collector's pauses (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


class StandingLag:
    """The least lag of the last few timer samples: a queue that has stood, not a burst or a pause.

    The minimum is the signal CoDel uses for a packet queue, applied to the event loop: one slow callback or
    one collection raises a single sample, while a process with more work than CPU lags on every sample. It is
    taken over a number of samples, not a time window, so that a loop blocked for longer than any window (one
    sample, very late) is still a single sample, and a loop starved for good still shows on every one.
    """

    def __init__(self, samples: int = 3) -> None:
        self._samples: deque[float] = deque(maxlen=samples)

    def add(self, lag: float) -> None:
        """Record how late a timer fired, in seconds."""
        self._samples.append(lag)

    def value(self) -> float:
        """The standing lag in seconds (0 until the window is full)."""
        if len(self._samples) < (self._samples.maxlen or 1):
            return 0.0
        return min(self._samples)


#: This process's standing event-loop lag, fed by `measure_lag` (admission control reads it).
STANDING = StandingLag()


async def measure_lag(interval: float = INTERVAL, window: float = WINDOW) -> None:
    """Run for ever (cancel it to stop): record how late each timer fires."""
    watch_gc()
    # The gauge shows the worst of the current and the previous window: a spike stays visible for at least
    # one whole window, so a scrape every `window` seconds cannot miss it.
    previous, worst, window_ends = 0.0, 0.0, time.monotonic() + window
    while True:
        asked = time.monotonic() + interval
        await asyncio.sleep(interval)
        now = time.monotonic()
        lag = max(0.0, now - asked)
        LOOP_LAG.observe(lag)
        STANDING.add(lag)
        worst = max(worst, lag)
        LOOP_LAG_MAX.set(max(previous, worst))
        _flush_gc()
        if now >= window_ends:
            previous, worst, window_ends = worst, 0.0, now + window
