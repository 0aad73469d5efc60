"""Opening connections, with errors that say what to do."""

from urllib.parse import urlsplit

import asyncpg

from db.errors import DatabaseError, postgres_failed


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached."""


def describe(url: str) -> str:
    """host:port/database of a URL, without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url)
    except Exception as e:
        if not postgres_failed(e):
            raise
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe(url)}: {e} "
            "(is it running? for the local stack run `make stack`)"
        ) from e
