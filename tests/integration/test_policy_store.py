"""Hot reload on real files: a changed valid file is picked up; an invalid one is refused and counted."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fastloans.policy import PolicyStore, load_default_policy, seed_policy_text

pytestmark = pytest.mark.integration

SEED = seed_policy_text()
FAILURES = "fastloans_policy_reload_failures_total"


def failures() -> float:
    return REGISTRY.get_sample_value(FAILURES) or 0.0


def info(name: str, version: str, content_hash: str) -> float | None:
    labels = {"name": name, "version": version, "hash": content_hash}
    return REGISTRY.get_sample_value("fastloans_policy_info", labels)


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds; fail after about 5 seconds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition did not come true")


def test_store_without_a_file_holds_the_seed_policy() -> None:
    store = PolicyStore(None)
    assert store.current is load_default_policy()
    assert store.reload() is False
    asyncio.run(asyncio.wait_for(store.watch(interval=0.01), 1))  # returns at once


def test_watch_swaps_in_a_changed_valid_file_and_keeps_it_on_an_invalid_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(SEED)
    store = PolicyStore(path)
    seed = store.current
    assert seed.version == "seed-1"
    assert info("seed", "seed-1", seed.content_hash) == 1

    async def scenario() -> None:
        watcher = asyncio.create_task(store.watch(interval=0.01))
        try:
            path.write_text(SEED.replace("version: seed-1", "version: seed-2"))
            await until(lambda: store.current.version == "seed-2")
            new = store.current
            assert info("seed", "seed-2", new.content_hash) == 1
            assert info("seed", "seed-1", seed.content_hash) is None

            before = failures()
            path.write_text(SEED.replace("version: seed-1", "version: seed-3").replace('"[600, 700)"', '"[650, 700)"'))
            await until(lambda: failures() == before + 1)
            await asyncio.sleep(0.05)  # further polls of the same bad file are not counted again
            assert failures() == before + 1
            assert store.current is new
        finally:
            watcher.cancel()

    with caplog.at_level(logging.ERROR, logger="fastloans.policy"):
        asyncio.run(scenario())
    assert any("no band covers [600, 650)" in record.getMessage() for record in caplog.records)


def test_configmap_style_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMaps as `policy.yaml -> ..data/policy.yaml` and swaps `..data`."""
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "policy.yaml").write_text(SEED.replace("version: seed-1", f"version: {version}"))
    os.symlink("v1", tmp_path / "..data")
    os.symlink("..data/policy.yaml", tmp_path / "policy.yaml")
    store = PolicyStore(tmp_path / "policy.yaml")
    assert store.current.version == "v1"
    os.symlink("v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert store.reload() is True
    assert store.current.version == "v2"


def test_a_layout_only_change_does_not_swap(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(SEED)
    store = PolicyStore(path)
    first = store.current
    path.write_text("# a comment only\n" + SEED)
    assert store.reload() is False
    assert store.current is first


def test_an_invalid_file_at_start_up_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("name: broken\n")
    with pytest.raises(ValueError, match=r"policy\.yaml:1: 'version' is a required property"):
        PolicyStore(path)


def test_a_vanished_file_keeps_the_policy_and_counts_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(SEED)
    store = PolicyStore(path)
    before = failures()
    path.unlink()
    assert store.reload() is False
    assert store.reload() is False
    assert failures() == before + 1
    assert store.current.version == "seed-1"
