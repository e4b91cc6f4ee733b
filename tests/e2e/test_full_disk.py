"""A full disk under load: the primary's relation files live on a small tmpfs, a file fills it while clients
submit. While it is full a submission is answered 503 with Retry-After (never another 5xx), nothing accepted is
lost, and the stack recovers by itself once the space is freed.

The stack is this test's own (PostgreSQL pair, Kafka, one instance of each service). Only `base/` (the tables
and indexes) moves to the tmpfs: the WAL stays on the ordinary disk, as a production layout with a separate WAL
volume has it, so a full data volume makes PostgreSQL refuse to extend a table (SQLSTATE 53100) rather than
stop. Mounting needs root; without it the test is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENCY_KEY_HEADER
from fastloans.tenants import issue_key
from fastloans_dev.devstack.stack import Infra, Ports
from tests.chaos.fleet import Fleet
from tests.e2e.test_pipeline import APPROVED

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root")

HEADROOM_MB = 24  # space left on the small filesystem beyond what the fresh database takes
RATE = 25  # submissions per second offered throughout
FULL_SECONDS = 8.0  # how long the disk stays full once the first refusal is seen


def _du_mb(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _move_base_to_tmpfs(data_dir: Path, mount: Path, owner: os.stat_result) -> None:
    """Put `data_dir/base` on a tmpfs with HEADROOM_MB of room left, linked from where it was."""
    size = _du_mb(data_dir / "base") + HEADROOM_MB
    mount.mkdir(parents=True)
    options = f"size={size}m,uid={owner.st_uid},gid={owner.st_gid},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "fastloans-full-disk", str(mount)], check=True)
    shutil.copytree(data_dir / "base", mount / "base", symlinks=True, copy_function=shutil.copy2)
    for path in [mount / "base", *(mount / "base").rglob("*")]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    shutil.rmtree(data_dir / "base")
    (data_dir / "base").symlink_to(mount / "base")


def fill(path: Path) -> int:
    """Write `path` until the filesystem has no room left; returns the bytes written."""
    chunk = b"\0" * (1 << 20)
    written = 0
    with open(path, "wb", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    # A last few kilobytes in smaller pieces, so that not even one more page fits.
    with open(path, "ab", buffering=0) as out:
        for size in (65536, 4096, 512):
            while True:
                try:
                    written += out.write(b"\0" * size)
                except OSError:
                    break
    return written


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Infra, Fleet, Path]]:
    """A stack of its own whose primary keeps its tables on a small tmpfs."""
    state = Path(__file__).resolve().parents[2] / ".fastloans" / f"full-disk-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    infra = Infra(state, Ports.free(), durable=False, partitions=3, kafka_heap="384m")
    mount = state / "small"
    fleet: Fleet | None = None
    try:
        infra.start()
        primary = infra.postgres.primary
        primary.stop()
        _move_base_to_tmpfs(primary.data_dir, mount, primary.data_dir.stat())
        primary.start()
        infra.postgres.wait_streaming()
        fleet = Fleet.on(infra)
        fleet.start_all(1)
        yield infra, fleet, mount
    finally:
        if fleet is not None:
            fleet.stop_all()
        infra.stop()
        subprocess.run(["umount", "--lazy", str(mount)], check=False, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


class Load:
    """Submissions at RATE per second, each retried with its Idempotency-Key after a 503 (as clients should)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.statuses: Counter[int] = Counter()
        self.refusals: list[httpx.Response] = []
        self.accepted: set[str] = set()
        self.last_accepted_at = 0.0
        self.stopping = False
        self.inflight: set[asyncio.Task[None]] = set()

    async def one(self) -> None:
        key = str(uuid.uuid4())
        while True:
            response = await self.client.post(APPLICATIONS_PATH, json=APPROVED, headers={IDEMPOTENCY_KEY_HEADER: key})
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.add(response.json()["id"])
                self.last_accepted_at = time.monotonic()
                return
            if response.status_code != 503:
                return
            self.refusals.append(response)
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def run(self) -> None:
        while not self.stopping:
            task = asyncio.create_task(self.one())
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
            await asyncio.sleep(1 / RATE)

    async def finish(self) -> None:
        self.stopping = True
        await asyncio.gather(*self.inflight)


async def wait_for(check: Callable[[], Awaitable[bool] | bool], within: float, what: str) -> float:
    """Poll `check` (plain or async) every 0.1 s until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not await _holds(check):
        if time.monotonic() - started > within:
            pytest.fail(f"{what}: not within {within:.0f}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_full_disk_answers_503_loses_nothing_and_recovers_by_itself(
    stack: tuple[Infra, Fleet, Path],
) -> None:
    infra, fleet, mount = stack
    db = await asyncpg.connect(infra.postgres.primary_url)
    try:
        key = (await issue_key(db, "full-disk", scopes=("submit", "read"))).key
        async with httpx.AsyncClient(
            base_url=fleet.url("gateway"), headers={"Authorization": f"Bearer {key}"}, timeout=20
        ) as client:
            load = Load(client)
            runner = asyncio.create_task(load.run())
            await wait_for(lambda: len(load.accepted) >= 20, 60, "the first submissions")

            filler = mount / "filler"
            filled = await asyncio.to_thread(fill, filler)
            refused_after = await wait_for(lambda: bool(load.refusals), 60, "a refusal once the disk is full")
            await asyncio.sleep(FULL_SECONDS)
            accepted_while_full = len(load.accepted)

            freed_at = time.monotonic()
            filler.unlink()
            await wait_for(lambda: load.last_accepted_at > freed_at, 60, "a 202 after the space was freed")
            recovered = time.monotonic() - freed_at
            await asyncio.sleep(2)
            await load.finish()
            await runner

        accepted = list(load.accepted)

        async def all_decided() -> bool:
            count = await db.fetchval(
                "SELECT count(*) FROM loan_decisions WHERE application_id = ANY($1::uuid[])", accepted
            )
            return bool(count >= len(accepted))

        drained = await wait_for(all_decided, 120, "every accepted application decided")
        duplicated = await db.fetchval(
            "SELECT count(*) FROM (SELECT application_id FROM loan_decisions WHERE application_id = ANY($1::uuid[]) "
            "GROUP BY application_id, revision HAVING count(*) > 1) d",
            accepted,
        )
        undecided = await db.fetchval(
            "SELECT count(*) FROM loan_applications WHERE id = ANY($1::uuid[]) AND status = 'pending'", accepted
        )
    finally:
        await db.close()

    print(
        f"full disk: {filled / 2**20:.1f} MiB filler, first 503 after {refused_after:.1f}s, "
        f"{len(load.refusals)} refusals, {accepted_while_full} accepted by the end of the full period, "
        f"202 again {recovered:.1f}s after freeing, all {len(accepted)} decided {drained:.1f}s later; "
        f"statuses {dict(load.statuses)}"
    )
    assert set(load.statuses) <= {202, 503}, load.statuses
    for response in load.refusals:
        assert response.headers.get("retry-after"), response.headers
        assert response.headers["content-type"] == "application/problem+json"
    assert duplicated == 0 and undecided == 0


async def _holds(check: Callable[[], Awaitable[bool] | bool]) -> bool:
    result = check()
    return bool(await result) if inspect.isawaitable(result) else bool(result)
