"""The schema once: the migrations build exactly the tables the SQLAlchemy models declare."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from fastloans.db.engines import sqlalchemy_url
from fastloans.db.schema import STATUSES, metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(context, metadata)


async def test_migrations_and_models_agree(migrated_db) -> None:
    """Alembic's autogenerate comparison finds nothing between the migrated database and the models."""
    engine = create_async_engine(sqlalchemy_url(migrated_db.primary_url))
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_check_constraints_and_unlogged_tables_agree(migrated_db) -> None:
    """What autogenerate does not compare: CHECK constraints by name and which tables are UNLOGGED."""
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        checks = await conn.fetch(
            "SELECT rel.relname AS table_name, con.conname AS name FROM pg_constraint con "
            "JOIN pg_class rel ON rel.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = rel.relnamespace "
            "WHERE con.contype = 'c' AND ns.nspname = 'public'"
        )
        unlogged = await conn.fetch(
            "SELECT relname FROM pg_class JOIN pg_namespace ns ON ns.oid = relnamespace "
            "WHERE relkind = 'r' AND relpersistence = 'u' AND ns.nspname = 'public'"
        )
    finally:
        await conn.close()
    declared_checks = {
        (table.name, constraint.name)
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    assert {(row["table_name"], row["name"]) for row in checks} == declared_checks
    declared_unlogged = {table.name for table in metadata.tables.values() if "UNLOGGED" in table._prefixes}
    assert {row["relname"] for row in unlogged} == declared_unlogged


async def test_the_status_check_admits_exactly_the_declared_statuses(migrated_db) -> None:
    """The migration spells the status list out; the models take it from `STATUSES`."""
    conn = await asyncpg.connect(migrated_db.primary_url)
    try:
        definition = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'loan_applications_status'"
        )
    finally:
        await conn.close()
    assert set(re.findall(r"'(\w+)'", definition)) == set(STATUSES)
