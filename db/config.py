"""Settings shared by every process that talks to PostgreSQL."""

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, model_validator

from common.settings import ProcessSettings

LOCAL_DATABASE_URL = "postgresql://warehouse:warehouse@127.0.0.1:5432/warehouse"
_LOCAL_PASSWORD = "warehouse"


def normalize_database_url(url: str) -> str:
    """Accept `postgresql://`, `postgres://` and SQLAlchemy's `postgresql+asyncpg://`; return `postgresql://`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise ValueError(
            "must look like postgresql://user:password@host:port/database "
            f"(postgresql+asyncpg:// is accepted too), got scheme {scheme!r}"
        )
    normalized = "postgresql://" + rest
    parts = urlsplit(normalized)
    if not parts.hostname:
        raise ValueError("names no host")
    if parts.path.strip("/") == "":
        raise ValueError("names no database (…/warehouse at the end)")
    return normalized


DatabaseUrl = Annotated[str, AfterValidator(normalize_database_url)]


class DatabaseSettings(ProcessSettings):
    """The settings of every process that talks to PostgreSQL: where it is, and whether this is local development."""

    environment: Literal["local", "production"] = "local"
    """`local` allows the local stack's well-known credentials; `production` refuses them."""
    database_url: DatabaseUrl = LOCAL_DATABASE_URL
    """PostgreSQL to use. The SQLAlchemy form postgresql+asyncpg://… is accepted."""

    @model_validator(mode="after")
    def _no_local_secrets_in_production(self) -> "DatabaseSettings":
        if self.environment != "local" and urlsplit(self.database_url).password == _LOCAL_PASSWORD:
            raise ValueError(
                "DATABASE_URL must carry a real password when ENVIRONMENT is not 'local' "
                "(the local stack's default credentials are refused)"
            )
        return self
