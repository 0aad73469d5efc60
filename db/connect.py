"""Opening connections, with errors that say what to do."""

from urllib.parse import urlsplit

import asyncpg

from db.errors import DatabaseError


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached."""


def describe(url: str) -> str:
    """host:port/database of a URL, without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as e:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe(url)}: {e} "
            "(is it running? for the local stack run `make stack`)"
        ) from e
