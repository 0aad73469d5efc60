"""`make bench-trigger-cost`: what the triggers cost per single-operation transaction, in one session.

A low-noise companion to the 8-client figure of `make bench-db` (which moves by ±0.04 between runs): one
session runs N receipt/shipment pairs, each operation its own transaction (`synchronous_commit=off`, so commit
waits for no disk), against the trigger-less copy and the real table, alternating; prints the median µs per
operation and the difference, which is the triggers' CPU cost per transaction.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

import asyncpg

from bench.db_bench import PLAIN, TRIGGERED, BenchDatabase
from db.config import LOCAL_DATABASE_URL, normalize_database_url

LOOP = """
DO $loop$
DECLARE p int; w int; q int;
BEGIN
    PERFORM setseed(0.5);
    FOR i IN 1..{pairs} LOOP
        p := 1 + floor(random() * 1000)::int;
        w := 1 + floor(random() * 10)::int;
        q := 1 + floor(random() * 10)::int;
        INSERT INTO {table} (product_id, warehouse_id, quantity, operation_type) VALUES (p, w, q, 'receipt');
        COMMIT;
        INSERT INTO {table} (product_id, warehouse_id, quantity, operation_type) VALUES (p, w, -q, 'shipment');
        COMMIT;
    END LOOP;
END
$loop$
"""


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pairs", type=int, default=4000, help="receipt/shipment pairs per run")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    cost: dict[str, list[float]] = {PLAIN: [], TRIGGERED: []}
    async with BenchDatabase(admin_url) as db:
        conn = await asyncpg.connect(db.url)
        try:
            await conn.execute("SET synchronous_commit = off")
            warm_changes = await conn.fetchval("SELECT count(*) FROM status_change_outbox")
            for run in range(args.repeat):
                for table in (PLAIN, TRIGGERED) if run % 2 == 0 else (TRIGGERED, PLAIN):
                    started = time.perf_counter()
                    await conn.execute(LOOP.format(pairs=args.pairs, table=table))
                    cost[table].append((time.perf_counter() - started) / (2 * args.pairs) * 1e6)
                print(f"  run {run + 1}: plain {cost[PLAIN][-1]:.1f} µs/op, triggers {cost[TRIGGERED][-1]:.1f} µs/op")
            changes = await conn.fetchval("SELECT count(*) FROM status_change_outbox") - warm_changes
        finally:
            await conn.close()
    plain, triggered = statistics.median(cost[PLAIN]), statistics.median(cost[TRIGGERED])
    operations = 2 * args.pairs * args.repeat
    print(
        f"median per single-operation transaction: plain {plain:.1f} µs, with triggers {triggered:.1f} µs, "
        f"triggers cost {triggered - plain:.1f} µs; {changes / operations:.0%} of operations changed a status"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
