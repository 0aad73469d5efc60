"""`python -m db <command>`: operator commands for the database."""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from db.config import DatabaseSettings
from db.connect import connect, describe
from db.errors import DatabaseError
from db.migrate import MIGRATIONS_DIR, migrate, pending


class Settings(DatabaseSettings):
    """Settings of `python -m db`."""


async def run_migrate(settings: Settings, dry_run: bool, directory: Path) -> int:
    conn = await connect(settings.database_url)
    try:
        if dry_run:
            todo = await pending(conn, directory)
            print(f"{len(todo)} pending migration(s) for {describe(settings.database_url)}")
            for m in todo:
                print(f"  {m.name}")
            return 0
        applied = await migrate(conn, directory)
        for m in applied:
            print(f"applied {m.name}")
        print(f"database {describe(settings.database_url)} is up to date ({len(applied)} applied now)")
        return 0
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p_migrate = commands.add_parser("migrate", help="apply pending migrations from db/migrations/")
    p_migrate.add_argument("--dry-run", action="store_true", help="list pending migrations, change nothing")
    p_migrate.add_argument("--dir", type=Path, default=MIGRATIONS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = Settings()
    except ValidationError as e:
        print(f"error: invalid settings:\n{e}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            return asyncio.run(run_migrate(settings, args.dry_run, args.dir))
    except DatabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
