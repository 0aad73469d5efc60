"""Errors of the db package, and what driver errors mean: every process asks `connection_lost`,
`postgres_failed`, `refused_value` and `retry_reason` here, rather than keeping a list of its own. Driver errors
are translated at the adapter."""

import asyncpg


class DatabaseError(Exception):
    """A database operation of warehouse-tracker failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class MigrationError(DatabaseError):
    """A migration could not be applied; nothing of it was kept."""


class MigrationChanged(DatabaseError):
    """An already applied migration file was edited; add a new migration instead."""


_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # connection failures and losses (class 08)
    asyncpg.CannotConnectNowError,  # starting up (57P03)
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    # asyncpg's protocol state left broken by a connection lost mid-operation (seen when PostgreSQL restarts
    # during a drain): the connection must be made anew.
    asyncpg.InternalClientError,
)

# asyncpg's words for a connection (or pool) that is gone; its other bare InterfaceErrors are misuse, a bug.
_CLOSED = ("connection is closed", "pool is closing", "pool is closed")

# SQLSTATEs (and classes) after which the same statement, tried again, may succeed.
RETRIABLE_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}
RETRIABLE_CLASSES = {"08": "connection exception", "53": "insufficient resources"}


def connection_lost(e: BaseException) -> bool:
    """PostgreSQL is out of reach, shutting down, or this connection to it is gone: a new connection may succeed."""
    return isinstance(e, _LOST) or (type(e) is asyncpg.InterfaceError and str(e).startswith(_CLOSED))


def lost_because(e: BaseException) -> str:
    """Why PostgreSQL is out of reach, in words for a person (no exception class names): for a `connection_lost`
    error."""
    if isinstance(e, asyncpg.CannotConnectNowError):
        return "it is starting up"
    if isinstance(e, asyncpg.AdminShutdownError | asyncpg.CrashShutdownError):
        return "it is shutting down"
    if isinstance(e, TimeoutError):
        return "no answer in time"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError):
        return (e.strerror or str(e) or "network error").lower()
    if isinstance(e, asyncpg.PostgresConnectionError):
        return f"the connection failed: {e}"
    return "the connection was lost"


def postgres_failed(e: BaseException) -> bool:
    """Any failure of PostgreSQL's or of its driver's: out of reach, the connection lost, a statement refused."""
    return connection_lost(e) or isinstance(e, asyncpg.PostgresError | asyncpg.InterfaceError)


def refused_value(e: BaseException) -> bool:
    """The statement's data is refused, and will be again: a data exception (class 22), an integrity violation
    (class 23), or a value the driver cannot send (out of range for its type, say)."""
    if isinstance(e, asyncpg.PostgresError):
        return (getattr(e, "sqlstate", None) or "")[:2] in ("22", "23")
    return isinstance(e, asyncpg.InterfaceError) and isinstance(e, ValueError)  # asyncpg's client-side DataError


def retry_reason(e: BaseException) -> str | None:
    """Why the statement that raised `e` may succeed if tried again ("deadlock", "connection lost"…), or None."""
    if connection_lost(e):
        return "connection lost"
    sqlstate = getattr(e, "sqlstate", None) or ""
    return RETRIABLE_SQLSTATES.get(sqlstate) or RETRIABLE_CLASSES.get(sqlstate[:2])
