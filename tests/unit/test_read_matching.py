"""A batch of reads by id: each read gets the row with its id only when that row is its own tenant's."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from fastloans_gateway.applications import matching

TENANT, OTHER = uuid.uuid4(), uuid.uuid4()
MINE, THEIRS, GONE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def read(tenant: uuid.UUID, application_id: uuid.UUID) -> Any:
    """What `matching` reads of a queued read (its future plays no part)."""
    return SimpleNamespace(tenant_id=tenant, application_id=application_id)


def test_each_read_gets_its_own_tenants_row_or_none() -> None:
    rows = [{"id": MINE, "tenant_id": TENANT}, {"id": THEIRS, "tenant_id": OTHER}]
    reads = [read(TENANT, MINE), read(TENANT, THEIRS), read(OTHER, THEIRS), read(OTHER, MINE), read(TENANT, GONE)]
    assert matching(reads, rows) == [rows[0], None, rows[1], None, None]  # type: ignore[arg-type]


def test_the_same_application_read_twice_gets_the_row_twice() -> None:
    rows = [{"id": MINE, "tenant_id": TENANT}]
    assert matching([read(TENANT, MINE), read(TENANT, MINE)], rows) == [rows[0], rows[0]]  # type: ignore[arg-type]
