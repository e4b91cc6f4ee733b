"""The event-loop lag monitor records how late a timer fires: a blocked loop shows up in the window's worst."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from fastloans.background import cancel_all
from fastloans.looplag import GC_PAUSE, LOOP_LAG_MAX, STANDING, StandingLag, freeze_startup_heap, measure_lag

pytestmark = pytest.mark.unit


async def test_a_blocked_loop_is_recorded_as_the_windows_worst_lag() -> None:
    task = asyncio.create_task(measure_lag(interval=0.01, window=0.05))
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.5)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.03)
        assert LOOP_LAG_MAX._value.get() >= 0.45
        await asyncio.sleep(0.3)  # two quiet windows replace it
        assert LOOP_LAG_MAX._value.get() < 0.4
    finally:
        await cancel_all([task])


async def test_collections_are_timed_by_generation() -> None:
    task = asyncio.create_task(measure_lag())
    try:
        await asyncio.sleep(0)
        before = GC_PAUSE.labels("2")._value.get()
        gc.collect()
        await asyncio.sleep(0.1)  # the next timer moves the pause into the metric
        assert GC_PAUSE.labels("2")._value.get() > before
    finally:
        await cancel_all([task])


def test_standing_lag_is_the_least_of_the_last_samples_and_ignores_a_single_spike() -> None:
    standing = StandingLag(samples=3)
    standing.add(0.3)
    standing.add(0.3)
    assert standing.value() == 0.0  # not yet a window's worth
    for lag in (0.001, 2.0, 0.002):  # one blocked callback (two seconds) among quick ones
        standing.add(lag)
    assert standing.value() == 0.001
    for lag in (0.15, 0.16, 0.17):  # busy on every sample
        standing.add(lag)
    assert standing.value() == pytest.approx(0.15)
    standing.add(0.001)  # the queue is gone as soon as one sample is quick
    assert standing.value() == 0.001


async def test_a_loop_with_more_work_than_time_shows_a_standing_lag() -> None:
    """Callbacks that keep the loop busy (as requests do a CPU-starved process) make every timer late."""
    busy = True

    def work() -> None:
        time.sleep(0.02)  # a callback that takes CPU time is the point
        if busy:
            asyncio.get_running_loop().call_soon(work)

    task = asyncio.create_task(measure_lag(interval=0.01, window=0.05))
    try:
        await asyncio.sleep(0.2)
        assert STANDING.value() < 0.015
        for _ in range(4):  # four chains of work: a timer waits behind all of them
            asyncio.get_running_loop().call_soon(work)
        await asyncio.sleep(1.5)  # three samples, each about 0.1-0.2 s late
        assert STANDING.value() >= 0.04
        busy = False
        await asyncio.sleep(1.0)
        assert STANDING.value() < 0.015
    finally:
        busy = False
        await cancel_all([task])


class _Startup:
    """An object made at start-up, in a reference cycle so that only the collector could free it."""

    def __init__(self) -> None:
        self.me = self


def test_the_startup_heap_is_frozen_out_of_later_collections() -> None:
    made_at_start = _Startup()
    try:
        frozen = freeze_startup_heap()
        assert frozen >= 1 and gc.get_freeze_count() == frozen
        made_later = _Startup()
        tracked = {id(o) for o in gc.get_objects()}
        assert id(made_at_start) not in tracked, "a start-up object is still walked by every full collection"
        assert id(made_later) in tracked, "objects made after the start must still be collected"
    finally:
        gc.unfreeze()
    assert id(made_at_start) in {id(o) for o in gc.get_objects()}
