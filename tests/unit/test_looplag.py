"""The event-loop lag monitor records how late a timer fires: a blocked loop shows up in the window's worst."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from fastloans.background import cancel_all
from fastloans.looplag import GC_PAUSE, LOOP_LAG_MAX, measure_lag

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
