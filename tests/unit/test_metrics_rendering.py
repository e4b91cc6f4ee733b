"""A scrape does not stop the event loop: the exposition is written in a worker thread."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastloans import metrics

pytestmark = pytest.mark.unit


async def test_the_loop_keeps_running_while_a_scrape_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_render() -> bytes:
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:  # pure Python, as generate_latest is
            pass
        return b"# rendered\n"

    monkeypatch.setattr(metrics, "render_metrics", slow_render)
    ticks = 0
    rendering = True

    async def ticker() -> None:
        nonlocal ticks
        while rendering:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    body = await metrics.render_metrics_off_loop()
    rendering = False
    await task
    assert body == b"# rendered\n"
    # On the loop, not one tick could run until the render returned.
    assert ticks - started >= 5, f"the loop ran only {ticks - started} times during a 300 ms render"
