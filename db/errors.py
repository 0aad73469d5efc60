"""Errors of the db package. Driver errors are translated here, at the adapter."""


class DatabaseError(Exception):
    """A database operation of warehouse-tracker failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class MigrationError(DatabaseError):
    """A migration could not be applied; nothing of it was kept."""


class MigrationChanged(DatabaseError):
    """An already applied migration file was edited; add a new migration instead."""
