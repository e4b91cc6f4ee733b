"""Every error PostgreSQL, asyncpg or SQLAlchemy can raise during a restart or a failover is an outage (503 +
Retry-After at the gateway, retried by the consumers); errors of the request itself are not.

The exceptions are constructed here, as the drivers raise them; nothing connects.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from fastloans.db.engines import sqlalchemy_url
from fastloans.db.outages import is_database_outage
from fastloans.kafka import is_transient
from fastloans.settings import Settings
from fastloans_gateway.api.errors import error_response


def _caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


OUTAGES: dict[str, BaseException] = {
    # The server refuses new sessions while it starts, stops or recovers.
    "CannotConnectNowError": asyncpg.CannotConnectNowError("the database system is shutting down"),
    # A fast shutdown (restart, pg_ctl stop -m fast) ends every session.
    "AdminShutdownError": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    # Another backend crashed (or was SIGKILLed) and the postmaster resets them all.
    "CrashShutdownError": asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
    # The socket went away under a query.
    "ConnectionDoesNotExistError": asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
    "ConnectionFailureError": asyncpg.exceptions.ConnectionFailureError("connection failure"),
    "PostgresConnectionError": asyncpg.PostgresConnectionError("connection exception"),
    "ClientCannotConnectError": asyncpg.exceptions.ClientCannotConnectError("cannot connect"),
    # Using a connection that asyncpg already knows is closed.
    "InterfaceError": asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    # A multi-host URL where no host is the primary yet (between the primary's death and the promotion).
    "TargetServerAttributeNotMatched": asyncpg.exceptions.TargetServerAttributeNotMatched(
        'None of the hosts match the target attribute requirement <SessionAttribute.read_write: "read-write">'
    ),
    # A write on a host that is a standby now (the old primary came back demoted).
    "ReadOnlySQLTransactionError": asyncpg.exceptions.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"
    ),
    "TooManyConnectionsError": asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    "DiskFullError": asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"),
    # The host is down (refused), unreachable, or the connection was reset.
    "ConnectionRefusedError": ConnectionRefusedError(111, "Connection refused"),
    "ConnectionResetError": ConnectionResetError(104, "Connection reset by peer"),
    "OSError": OSError(113, "No route to host"),
    # Connecting or the pool's checkout took too long.
    "TimeoutError": TimeoutError("no database connection free within 30 s"),
    # SQLAlchemy's wrappers: the connection was invalidated, or the driver's error inside is an outage.
    "DBAPIError(connection_invalidated)": sa_exc.DBAPIError(
        "SELECT 1", None, Exception("closed"), connection_invalidated=True
    ),
    "InterfaceError(sqlalchemy)": sa_exc.InterfaceError(
        "SELECT 1", None, asyncpg.InterfaceError("connection is closed")
    ),
    "OperationalError(orig CannotConnectNow)": sa_exc.OperationalError(
        "SELECT 1", None, asyncpg.CannotConnectNowError("starting up")
    ),
    # An outage raised on through another exception, and a group of them.
    "RuntimeError from AdminShutdownError": _caused(
        RuntimeError("batch failed"), asyncpg.AdminShutdownError("terminating")
    ),
    "ExceptionGroup of outages": ExceptionGroup(
        "both", [ConnectionResetError(104, "reset"), asyncpg.CannotConnectNowError("starting up")]
    ),
}

NOT_OUTAGES: dict[str, BaseException] = {
    "UniqueViolationError": asyncpg.UniqueViolationError("duplicate key value"),
    "DataError": asyncpg.exceptions.DataError("invalid input syntax"),
    "ClientConfigurationError": asyncpg.exceptions.ClientConfigurationError("bad sslmode"),
    "SyntaxError (SQL)": asyncpg.PostgresSyntaxError("syntax error at or near"),
    "RuntimeError": RuntimeError("a bug"),
    "DBAPIError (still valid)": sa_exc.DBAPIError("SELECT 1", None, Exception("bad"), connection_invalidated=False),
    "ExceptionGroup with a bug": ExceptionGroup("mixed", [ConnectionResetError(104, "reset"), ValueError("bug")]),
}


@pytest.mark.parametrize("name", list(OUTAGES))
def test_a_restart_or_failover_error_is_an_outage_answered_503_with_retry_after(name: str) -> None:
    error = OUTAGES[name]
    assert is_database_outage(error)
    assert is_transient(error)  # the consumers retry it without end instead of dead-lettering the message
    response = error_response(error, "/api/v1/loan_applications")  # type: ignore[arg-type]
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("name", list(NOT_OUTAGES))
def test_an_error_of_the_request_or_the_code_is_not_an_outage(name: str) -> None:
    error = NOT_OUTAGES[name]
    assert not is_database_outage(error)
    assert error_response(error, "/api/v1/loan_applications").status_code == 500  # type: ignore[arg-type]


def test_a_multi_host_url_reaches_asyncpg_as_given_and_sqlalchemy_as_host_parameters() -> None:
    url = "postgresql://app@10.0.0.1:5432,10.0.0.2:5433/loans?target_session_attrs=read-write"
    settings = Settings(
        database_url=url,
        database_read_url=url.replace("read-write", "prefer-standby"),
        database_password="s3cr/t",  # type: ignore[arg-type]  # noqa: S106 - a made-up test value
        kafka_bootstrap_servers="k:9092",
    )
    assert settings.primary_dsn() == url.replace("app@", "app:s3cr%2Ft@")
    assert settings.replica_dsn().endswith("@10.0.0.1:5432,10.0.0.2:5433/loans?target_session_attrs=prefer-standby")
    assert sqlalchemy_url(url) == (
        "postgresql+asyncpg://app@/loans?target_session_attrs=read-write&host=10.0.0.1%3A5432&host=10.0.0.2%3A5433"
    )
    assert sqlalchemy_url("postgresql://app@db:5432/loans") == "postgresql+asyncpg://app@db:5432/loans"
