"""Which database errors mean "PostgreSQL is not there right now" (restart, failover, overload), not a bad request.

An outage is answered with 503 and `Retry-After` by the gateway and retried
without end by the consumers; the connection that met it is not reused.
"""

from __future__ import annotations

import asyncpg

# SQLSTATE classes and codes a restart, a failover or an overloaded server produce.
_OUTAGE_SQLSTATE_CLASSES = ("08",)  # connection exception: refused, lost, does not exist
_OUTAGE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: terminating connection due to administrator command (fast or smart shutdown)
        "57P02",  # crash_shutdown: another server process crashed, every backend is reset
        "57P03",  # cannot_connect_now: the database system is starting up / shutting down / in recovery
        "25006",  # read_only_sql_transaction: this host is (now) a standby, the primary moved
        "53300",  # too_many_connections
        "53100",  # disk_full
        "58030",  # io_error
    }
)

# Client-side errors of asyncpg that mean the connection or the server is gone.
_CLIENT_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,  # "connection is closed", "the connection pool is closed"
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # no host is primary yet (failover in progress)
    asyncpg.InternalClientError,
    OSError,  # ConnectionRefusedError, ConnectionResetError, ...
    TimeoutError,
)
# ...except these, which no retry fixes: a wrong setting, a feature the client or the server lacks.
_CLIENT_MISTAKES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)


def is_database_outage(error: BaseException) -> bool:
    """Whether `error` (or what caused it) means PostgreSQL is unreachable, restarting or failing over."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage_itself(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            return all(is_database_outage(inner) for inner in current.exceptions)
        current = current.__cause__ or getattr(current, "orig", None)
    return False


def _is_outage_itself(error: BaseException) -> bool:
    if isinstance(error, _CLIENT_OUTAGES):
        return not isinstance(error, _CLIENT_MISTAKES)
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        return state in _OUTAGE_SQLSTATES or state.startswith(_OUTAGE_SQLSTATE_CLASSES)
    # SQLAlchemy's wrappers (DBAPIError and its subclasses) say so when they invalidated the connection.
    return bool(getattr(error, "connection_invalidated", False))
