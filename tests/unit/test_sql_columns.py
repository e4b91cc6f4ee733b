"""Hand-written SQL names only columns the models declare (shared/fastloans/db/schema.py)."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from fastloans.db.schema import metadata
from fastloans_gateway import applications, outbox, ratelimit, webhook_endpoints
from fastloans_gateway.applications import COLUMNS, SUBMIT_COLUMNS
from fastloans_recorder import service as recorder
from fastloans_webhooks import sender
from fastloans_webhooks import service as webhooks

# INSERT INTO table [AS alias] (column, ...)
INSERT_LIST = re.compile(r"INSERT INTO (\w+)(?: AS \w+)? \(([^)]*)\)")
# SELECT column, ... FROM table (plain column names only)
SELECT_LIST = re.compile(r"SELECT ([\w, ]+?) FROM (\w+)")
# unnest(...) AS t(column, ...): the names the arrays take before a SELECT * feeds them to an INSERT
UNNEST_ALIAS = re.compile(r"\)\s+AS t\(([^)]*)\)", re.DOTALL)
MODULES = (applications, outbox, ratelimit, recorder, webhook_endpoints, sender, webhooks)


def _names(listing: str) -> list[str]:
    return [name.strip() for name in listing.split(",")]


def _columns(table: str) -> set[str]:
    return set(metadata.tables[table].columns.keys())


def _statements(module: ModuleType, pattern: re.Pattern[str] = INSERT_LIST) -> list[tuple[str, str]]:
    return [(name, value) for name, value in vars(module).items() if isinstance(value, str) and pattern.search(value)]


def test_the_gateway_column_lists_are_columns_of_loan_applications() -> None:
    columns = _columns("loan_applications")
    assert set(_names(COLUMNS)) <= columns
    assert set(SUBMIT_COLUMNS) <= columns
    assert set(_names(outbox.COLUMNS)) <= _columns("outbox")


def test_the_submit_arrays_are_the_columns_the_insert_reads() -> None:
    aliases = UNNEST_ALIAS.search(applications.SUBMIT)
    assert aliases is not None
    assert _names(aliases.group(1)) == list(SUBMIT_COLUMNS)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_insert_lists_columns_of_its_table(module: ModuleType) -> None:
    statements = _statements(module)
    assert statements, f"no INSERT found in {module.__name__}"
    for name, sql in statements:
        for table, listing in INSERT_LIST.findall(sql):
            unknown = set(_names(listing)) - _columns(table)
            assert not unknown, f"{module.__name__}.{name} inserts into {table} columns it lacks: {unknown}"


def test_plain_selects_name_columns_of_their_table() -> None:
    statements = [(module, name, sql) for module in MODULES for name, sql in _statements(module, SELECT_LIST)]
    assert {name for _, name, _ in statements} >= {"LOCK_BATCH", "READ_KEYS"}  # the relay's batch, the key replay
    for module, name, sql in statements:
        for listing, table in SELECT_LIST.findall(sql):
            unknown = set(_names(listing)) - _columns(table)
            assert not unknown, f"{module.__name__}.{name} selects from {table} columns it lacks: {unknown}"


def test_the_recorder_feeds_its_insert_in_column_order() -> None:
    aliases = UNNEST_ALIAS.search(recorder.RECORD_BATCH)
    inserted = INSERT_LIST.search(recorder.RECORD_BATCH)
    assert aliases is not None and inserted is not None
    # SELECT * maps the arrays to the INSERT's columns by position, so the two lists must match name for name.
    assert _names(aliases.group(1)) == _names(inserted.group(2))
