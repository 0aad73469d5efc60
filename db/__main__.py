"""`python -m db <command>`: commands for the database (migrate, verify, load, schema)."""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from common import logs
from db.config import DatabaseSettings
from db.connect import connect, describe
from db.errors import DatabaseError
from db.load import load, peak_memory_mb
from db.migrate import MIGRATIONS_DIR, migrate, pending
from db.schema import SCHEMA_FILE, current_schema
from db.verify import broken_transfers, differences, summary

SHOWN_DIFFERENCES = 50


class Settings(DatabaseSettings):
    """Settings of `python -m db`."""


async def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    conn = await connect(settings.database_url)
    try:
        if args.dry_run:
            todo = await pending(conn, args.dir)
            print(f"{len(todo)} pending migration(s) for {describe(settings.database_url)}")
            for m in todo:
                print(f"  {m.name}")
            return 0
        applied = await migrate(conn, args.dir)
        for m in applied:
            print(f"applied {m.name}")
        print(f"database {describe(settings.database_url)} is up to date ({len(applied)} applied now)")
        return 0
    finally:
        await conn.close()


async def run_verify(settings: Settings, args: argparse.Namespace) -> int:
    conn = await connect(settings.database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot for all checks
            found = await differences(conn)
            transfers = await broken_transfers(conn)
            totals = await summary(conn)
    finally:
        await conn.close()
    print(
        f"checked {totals['pairs']:,} balances against {totals['operations']:,} operations "
        f"({totals['status_changes']:,} status changes counted)"
    )
    for label, problems in (("DIFFERENCE", found), ("BROKEN TRANSFER", transfers)):
        for problem in problems[:SHOWN_DIFFERENCES]:
            print(f"  {label} {problem.describe()}")
        if len(problems) > SHOWN_DIFFERENCES:
            print(f"  … and {len(problems) - SHOWN_DIFFERENCES} more")
    if not found and not transfers:
        print("consistent: every balance and status matches the ledger, every transfer's legs match")
        return 0
    print(f"{len(found)} difference(s), {len(transfers)} broken transfer(s)")
    return 1


async def run_load(settings: Settings, args: argparse.Namespace) -> int:
    stats, elapsed, changes = await load(
        settings.database_url,
        operations=args.operations,
        workers=args.workers,
        products=args.products,
        warehouses=args.warehouses,
        batch_size=args.batch,
        seed=args.seed,
        show_progress=not args.quiet,
    )
    rate = stats.written / elapsed if elapsed > 0 else 0.0
    print(f"operations written: {stats.written:,} in {elapsed:.1f} s ({rate:,.0f} ops/s, {args.workers} workers)")
    print(f"status changes produced: {changes:,} (counted by the database during the run, all writers)")
    if stats.connection_losses:
        print(
            f"connections lost and re-made: {stats.connection_losses}; {stats.unknown:,} operations were in flight "
            "then (committed or not: `python -m db verify` checks the result either way)"
        )
    print(f"rejected operations: {stats.rejected_total:,}")
    for reason, count in stats.rejected.most_common():
        print(f"  {count:,} {reason}")
    retries = sum(stats.retries.values())
    print(f"retried batches: {retries}" + "".join(f", {n} {why}" for why, n in stats.retries.items()))
    print(f"peak memory: {peak_memory_mb():.0f} MB")
    return 1 if stats.rejected_total else 0


async def run_schema(settings: Settings, args: argparse.Namespace) -> int:
    wanted = await current_schema(settings.database_url)
    if args.check:
        if SCHEMA_FILE.read_text(encoding="utf-8") != wanted:
            print(f"{SCHEMA_FILE} is stale: run `python -m db schema` (or `make docs`) and commit it", file=sys.stderr)
            return 1
        print(f"{SCHEMA_FILE} is the schema the migrations make")
        return 0
    SCHEMA_FILE.write_text(wanted, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    m = commands.add_parser("migrate", help="apply pending migrations from db/migrations/")
    m.add_argument("--dry-run", action="store_true", help="list pending migrations, change nothing")
    m.add_argument("--dir", type=Path, default=MIGRATIONS_DIR, help=argparse.SUPPRESS)
    m.set_defaults(run=run_migrate)
    v = commands.add_parser(
        "verify", help="recompute balances and statuses from the operations, check transfers; exit 1 on a difference"
    )
    v.set_defaults(run=run_verify)
    ld = commands.add_parser("load", help="write random operations with COPY, in parallel (the load script)")
    ld.add_argument("--operations", type=positive, default=500_000, help="operations to write (500000)")
    ld.add_argument("--workers", type=positive, default=4, help="parallel connections (4)")
    ld.add_argument("--products", type=positive, default=1000, help="products 1..N, created if missing (1000)")
    ld.add_argument("--warehouses", type=positive, default=10, help="warehouses 1..N, created if missing (10)")
    ld.add_argument("--batch", type=positive, default=1000, help="operations per COPY and transaction (1000)")
    ld.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable load")
    ld.add_argument("--quiet", action="store_true", help="no progress bar")
    ld.set_defaults(run=run_load)
    sc = commands.add_parser(
        "schema", help="rewrite db/schema.sql, the schema after every migration (on a throw-away database)"
    )
    sc.add_argument("--check", action="store_true", help="change nothing; exit 1 when db/schema.sql is stale")
    sc.set_defaults(run=run_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"error: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logs.setup(settings.log_format, logging.WARNING)
    try:
        code: int = asyncio.run(args.run(settings, args))
        return code
    except DatabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every committed batch is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
