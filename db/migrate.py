"""Apply the numbered SQL files of db/migrations/ once each, in order, each in its own transaction."""

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db.errors import MigrationChanged, MigrationError
from db.queries import queries
from db.sqlsplit import split_statements

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name} and {found[version].name} share version {version}")
        found[version] = Migration(version, path)
    return [found[v] for v in sorted(found)]


async def pending(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations not yet applied. Fails if an applied file was changed since."""
    q = queries("migrate")
    exists = await conn.fetchval(q["table_exists"])
    applied = {r["version"]: r for r in await conn.fetch(q["applied"])} if exists else {}
    todo = []
    for migration in discover(directory):
        record = applied.get(migration.version)
        if record is None:
            todo.append(migration)
        elif record["checksum"] != migration.checksum:
            raise MigrationChanged(
                f"{migration.name} was changed after it was applied (as {record['name']}); "
                "add a new migration instead of editing an applied one"
            )
    return todo


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply what is pending under an advisory lock; return what this run applied."""
    q = queries("migrate")
    await conn.execute(q["lock"])
    try:
        await conn.execute(q["create_schema_migrations"])
        todo = await pending(conn, directory)
        for migration in todo:
            await _apply(conn, migration)
            log.info("applied migration %s", migration.name)
        return todo
    finally:
        await conn.execute(q["unlock"])


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    statements = split_statements(migration.sql)
    async with conn.transaction():
        for number, statement in enumerate(statements, start=1):
            try:
                await conn.execute(statement.text)
            except asyncpg.PostgresError as e:
                first_line = statement.text.splitlines()[0][:120]
                raise MigrationError(
                    f"migration {migration.name} failed at statement {number} (line {statement.line}: "
                    f"{first_line}): {type(e).__name__}: {e}; nothing of {migration.name} was applied"
                ) from e
        await conn.execute(queries("migrate")["record"], migration.version, migration.name, migration.checksum)
