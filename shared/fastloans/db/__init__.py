"""PostgreSQL access: the schema, a primary engine for writes and a replica engine for reads."""

from fastloans.db.engines import Database, asyncpg_connect, json_value, listen_forever
from fastloans.db.schema import metadata

__all__ = ["Database", "asyncpg_connect", "json_value", "listen_forever", "metadata"]
