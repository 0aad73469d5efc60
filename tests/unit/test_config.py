import pytest
from pydantic import ValidationError

from db.config import DatabaseSettings


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p@db:5432/warehouse_db",
        "postgresql+asyncpg://u:p@db:5432/warehouse_db",
        "postgres://u:p@db:5432/warehouse_db",
    ],
)
def test_database_url_accepts_plain_and_sqlalchemy_forms(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    assert DatabaseSettings().database_url == "postgresql://u:p@db:5432/warehouse_db"


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("mysql://u:p@db/warehouse", "scheme 'mysql'"),
        ("postgresql://u:p@db:5432", "names no database"),
        ("warehouse", "must look like postgresql://"),
    ],
)
def test_a_bad_database_url_says_what_is_wrong(given: str, complaint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    with pytest.raises(ValidationError, match=complaint):
        DatabaseSettings()


def test_the_local_default_password_is_refused_outside_local_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="real password"):
        DatabaseSettings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://warehouse:s3cret@db/warehouse")
    assert DatabaseSettings().environment == "production"


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    settings = DatabaseSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://warehouse:warehouse@127.0.0.1:5432/warehouse"
