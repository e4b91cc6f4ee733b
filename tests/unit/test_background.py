"""Stopping background tasks."""

from __future__ import annotations

import asyncio

import pytest

from fastloans.background import cancel_all

pytestmark = pytest.mark.unit


async def test_cancel_all_ends_every_task_and_skips_none() -> None:
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    tasks = [asyncio.create_task(forever(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_all([tasks[0], None, tasks[1]])
    assert all(task.done() and task.cancelled() for task in tasks)
    assert sorted(cleaned) == ["a", "b"]


async def test_cancel_all_of_finished_tasks_is_a_no_op() -> None:
    async def done() -> int:
        return 1

    task = asyncio.create_task(done())
    await task
    await cancel_all([task])
    assert task.result() == 1
