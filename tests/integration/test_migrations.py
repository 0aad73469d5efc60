"""`python -m db migrate`: once each, in order, safe when run twice at once, all-or-nothing per file; and
db/schema.sql, the schema they make."""

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from db.migrate import discover
from db.schema import SCHEMA_FILE, dump
from tests.cli import run_module

pytestmark = pytest.mark.integration


async def run_db_cli(database_url: str, *args: str) -> tuple[int, str, str]:
    return await run_module("db", database_url, *args)


async def applied_versions(database_url: str) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


async def test_two_concurrent_runs_apply_each_file_once_and_a_rerun_is_a_no_op(
    empty_database_url: str,
) -> None:
    files = [m.name for m in discover()]
    assert files, "the project has migrations"

    code, out, _ = await run_db_cli(empty_database_url, "migrate", "--dry-run")
    assert code == 0
    assert all(name in out for name in files)

    (code1, out1, err1), (code2, out2, err2) = await asyncio.gather(
        run_db_cli(empty_database_url, "migrate"), run_db_cli(empty_database_url, "migrate")
    )
    assert (code1, code2) == (0, 0), err1 + err2
    for name in files:
        assert (out1 + out2).count(f"applied {name}") == 1
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]

    code, out, _ = await run_db_cli(empty_database_url, "migrate")
    assert code == 0 and "(0 applied now)" in out
    code, out, _ = await run_db_cli(empty_database_url, "migrate", "--dry-run")
    assert code == 0 and out.startswith("0 pending")


async def test_a_failing_migration_leaves_nothing_and_names_file_and_statement(
    empty_database_url: str, tmp_path: Path
) -> None:
    for m in discover():
        shutil.copy(m.path, tmp_path)
    (tmp_path / "9000_broken.sql").write_text(
        "CREATE TABLE broken_probe (id int);\n"
        "INSERT INTO broken_probe VALUES (1);\n"
        "-- the next statement fails at run time\n"
        "SELECT 1 / 0;\n"
    )

    code, _, err = await run_db_cli(empty_database_url, "migrate", "--dir", str(tmp_path))

    assert code == 1
    assert "9000_broken.sql" in err and "statement 3" in err and "line 4" in err
    assert "DivisionByZeroError" in err
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('broken_probe')") is None
    finally:
        await conn.close()
    # The good migrations before it were applied, each in its own transaction.
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]


async def test_an_applied_migration_that_was_edited_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_probe (id int);\n")
    assert (await run_db_cli(empty_database_url, "migrate", "--dir", str(tmp_path)))[0] == 0

    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_probe (id bigint);\n")
    code, _, err = await run_db_cli(empty_database_url, "migrate", "--dir", str(tmp_path))

    assert code == 1 and "0001_first.sql was changed after it was applied" in err


async def test_an_unreachable_database_gives_one_clear_line() -> None:
    code, _, err = await run_db_cli("postgresql://warehouse:warehouse@127.0.0.1:1/warehouse", "migrate")
    assert code == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/warehouse" in err and "make stack" in err
    assert "Traceback" not in err


async def test_db_schema_sql_is_the_schema_the_migrations_make(database_url: str, db: asyncpg.Connection) -> None:
    assert await dump(database_url) == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "db/schema.sql is stale: run `make docs` and commit it"
    )
    # …and it goes stale when the schema changes.
    await db.execute("CREATE TABLE schema_drift (id bigint PRIMARY KEY)")
    drifted = await dump(database_url)
    assert "CREATE TABLE public.schema_drift" in drifted and drifted != SCHEMA_FILE.read_text(encoding="utf-8")


async def test_db_schema_check_says_whether_the_file_is_current(database_url: str) -> None:
    code, out, err = await run_db_cli(database_url, "schema", "--check")
    assert code == 0 and "is the schema the migrations make" in out, out + err
