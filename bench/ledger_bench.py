"""`make bench-ledger`: reading the ledger and writing documents, against the local PostgreSQL.

- reads: a fresh database whose ledger holds `--rows` operations (10M by default: 1,000 products at 20
  warehouses over a year, receipts and shipments with some transfers, adjustments and API writes, inserted straight
  into warehouse_operations with its triggers off: the balances do not matter here). For each filter of
  `GET /operations`, the route's own query (api/routes/ledger.py) for a first page and for a page from the middle
  of the filter's rows, 100 rows each, timed alone from a warm cache: medians of 30 in ms; then again with the
  optional pair index of docs/operations.md;
- documents: `POST /documents` of 1,000-line documents from 4 concurrent clients through a running API
  (`python -m api`), in lines/s, against `python -m db load` COPYing as many operations with 4 workers; each on
  a fresh database, alternating; the figure is the median ratio.
"""

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from api.__main__ import make_key
from api.auth import Role
from api.routes.ledger import ledger_query, start_after
from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.load import ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.private_stack import free_port

REPO = Path(__file__).resolve().parents[1]
PRODUCTS, WAREHOUSES = 1000, 20
START = datetime(2026, 1, 1, tzinfo=UTC)
# Rows straight into the ledger: every 50th an adjustment, every 100th a transfer leg pair's out leg (its in leg is
# the next row), every 20th made through the API by one of 5 keys; one year, in id order.
FILL = """
INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id, actor,
                                  api_key_id, created_at)
SELECT 1 + (hashint8(g) & 1023) % $2, w, q, t, x,
       CASE WHEN g % 20 = 0 THEN 'key ' || (g / 20 % 5) ELSE 'night import' END,
       CASE WHEN g % 20 = 0 THEN g / 20 % 5 + 1 END, $4::timestamptz + (g * $5::float8 / $1) * interval '1 second'
  FROM generate_series($6::bigint, $7::bigint) g,
       LATERAL (SELECT 1 + (hashint8(g * 31) & 1023) % $3 AS w0) w0,
       LATERAL (SELECT CASE WHEN g % 100 IN (0, 1) THEN 'transfer_' || CASE WHEN g % 100 = 0 THEN 'out' ELSE 'in' END
                            WHEN g % 50 = 7 THEN 'adjustment'
                            WHEN g % 2 = 0 THEN 'receipt' ELSE 'shipment' END::operation_type AS t) t,
       LATERAL (SELECT CASE WHEN t.t = 'transfer_in' THEN 1 + w0 % $3 ELSE w0 END AS w,
                       CASE WHEN t.t IN ('receipt', 'transfer_in') THEN 5 WHEN t.t = 'adjustment' THEN -1 ELSE -3 END
                           AS q,
                       CASE WHEN t.t::text LIKE 'transfer%' THEN md5((g - g % 100)::text)::uuid END AS x) v
"""
CHUNK = 1_000_000
PAIR_INDEX = """CREATE INDEX CONCURRENTLY IF NOT EXISTS warehouse_operations_pair
    ON warehouse_operations (product_id, warehouse_id, created_at, id)"""
DOCUMENT_LINES = 1000


async def scratch(admin_url: str) -> tuple[str, str]:
    name = await create_database(admin_url, "wt_bench_ledger")
    return name, with_database(admin_url, name)


async def filled(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await ensure_reference_data(conn, PRODUCTS, WAREHOUSES)
        await conn.execute("ALTER TABLE warehouse_operations DISABLE TRIGGER USER")  # the ledger alone
        year = 365 * 24 * 3600.0
        started = time.monotonic()
        for first in range(1, rows + 1, CHUNK):
            last = min(rows, first + CHUNK - 1)
            await conn.execute(FILL, rows, PRODUCTS, WAREHOUSES, START, year, first, last)
            print(f"  ledger: {last:,} of {rows:,} operations ({time.monotonic() - started:.0f} s)", flush=True)
        await conn.execute("VACUUM ANALYZE warehouse_operations")
    finally:
        await conn.close()


def cases(rows: int) -> dict[str, dict[str, Any]]:
    middle = START + timedelta(days=182)
    return {
        "none": {},
        "product": {"product_id": 500},
        "product and warehouse": {"product_id": 500, "warehouse_id": 7},
        "warehouse": {"warehouse_id": 7},
        "operation_type adjustment": {"operation_type": ["adjustment"]},
        "transfer_id": {"transfer_id": None},  # filled with a real one below
        "actor (an API key's name)": {"actor": "key 3"},
        "api_key_id": {"api_key_id": 4},
        "since…until (one day)": {"since": middle, "until": middle + timedelta(days=1)},
        "warehouse, since…until (one week)": {"warehouse_id": 7, "since": middle, "until": middle + timedelta(days=7)},
    }


async def timed_page(conn: asyncpg.Connection, filters: dict[str, Any], after: tuple[datetime, int]) -> float:
    sql, values = ledger_query(filters)
    started = time.perf_counter()
    await conn.fetch(sql, *after, 101, *values)
    return (time.perf_counter() - started) * 1000


async def read_figures(url: str, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    conn = await asyncpg.connect(url)
    try:
        transfer = await conn.fetchval(
            "SELECT transfer_id FROM warehouse_operations WHERE id = $1", (rows // 200) * 100
        )
        out = {}
        for name, filters in cases(rows).items():
            if "transfer_id" in filters:
                filters = {"transfer_id": transfer}
            sql, values = ledger_query(filters)
            sql = sql.rstrip().rstrip(";")
            newest = start_after(None, filters.get("until"))  # the first page, as the route starts it
            # The middle of the filter's rows: where a client paging from the newest is halfway through.
            count = await conn.fetchval(f"SELECT count(*) FROM ({sql}) x", *newest, 2**62, *values)
            middle = await conn.fetchrow(
                f"SELECT created_at, operation_id FROM ({sql.replace('LIMIT $3', 'OFFSET $3 LIMIT 1')}) x",
                *newest, count // 2, *values,
            )  # fmt: skip
            figures = {}
            for where, after in (("first page", newest), ("middle", tuple(middle) if middle else newest)):
                for _ in range(3):
                    await timed_page(conn, filters, after)  # warm
                figures[where] = statistics.median([await timed_page(conn, filters, after) for _ in range(repeat)])
            figures["rows"] = count
            out[name] = figures
            print(f"  {name}: {count:,} rows; first page {figures['first page']:.2f} ms, "
                  f"middle {figures['middle']:.2f} ms", flush=True)  # fmt: skip
        return out
    finally:
        await conn.close()


class ApiProcess:
    def __init__(self, url: str) -> None:
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "API_PORT": str(self.port), "API_HOST": "127.0.0.1",
               "API_METRICS_PORT": str(free_port())}  # fmt: skip
        self.proc = subprocess.Popen([sys.executable, "-m", "api"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    await client.get(f"http://127.0.0.1:{self.port}/healthz")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        raise RuntimeError("the API did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def document(rng: random.Random) -> dict[str, Any]:
    def line() -> dict[str, Any]:
        product, warehouse = rng.randint(1, PRODUCTS), rng.randint(1, WAREHOUSES)
        return {"operation_type": "receipt", "product_id": product, "warehouse_id": warehouse, "quantity": 5}

    return {"lines": [line() for _ in range(DOCUMENT_LINES)]}


async def documents_rate(admin_url: str, lines: int) -> float:
    name, url = await scratch(admin_url)
    api = None
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await ensure_reference_data(conn, PRODUCTS, WAREHOUSES)
        await conn.close()
        key = await make_key(url, "bench", Role.operator)
        api = ApiProcess(url)
        await api.ready()
        rng = random.Random(1)
        bodies = [document(rng) for _ in range(lines // DOCUMENT_LINES)]
        queue = list(bodies)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}", timeout=120,
                                         headers={"Authorization": f"Bearer {key}"}) as http:  # fmt: skip
                while queue:
                    r = await http.post("/documents", json=queue.pop())
                    if r.status_code != 201:
                        raise RuntimeError(f"POST /documents: {r.status_code} {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(4)))
        return len(bodies) * DOCUMENT_LINES / (time.perf_counter() - started)
    finally:
        if api is not None:
            api.stop()
        await drop_database(admin_url, name)


async def copy_rate(admin_url: str, operations: int) -> float:
    name, url = await scratch(admin_url)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        started = time.perf_counter()
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "db", "load", "--operations", str(operations), "--workers", "4", "--quiet"],
            env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"db load failed:\n{out.stdout}{out.stderr}")
        return operations / (time.perf_counter() - started)
    finally:
        await drop_database(admin_url, name)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="operations in the ledger read")
    p.add_argument("--repeat", type=int, default=30, help="timings of each page")
    p.add_argument("--document-lines", type=int, default=200_000, help="lines per documents run")
    p.add_argument("--runs", type=int, default=3, help="documents and COPY runs, alternating")
    p.add_argument("--only", choices=["reads", "documents"], action="append")
    args = p.parse_args()
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    only = set(args.only or ["reads", "documents"])
    rows_out: list[str] = []
    if "reads" in only:
        name, url = await scratch(admin_url)
        try:
            await filled(url, args.rows)
            reads = await read_figures(url, args.rows, args.repeat)
            conn = await asyncpg.connect(url)
            try:  # the optional index of docs/operations.md, "Reading the ledger"
                await conn.execute(PAIR_INDEX)
                await conn.execute("ANALYZE warehouse_operations")
            finally:
                await conn.close()
            print("  with the optional pair index:", flush=True)
            indexed = await read_figures(url, args.rows, args.repeat)
        finally:
            await drop_database(admin_url, name)
        for case, f in reads.items():
            g = indexed[case]
            rows_out.append(f"| `GET /operations`, {case} ({f['rows']:,.0f} rows) | {f['first page']:.2f} / "
                            f"{f['middle']:.2f} ms | {g['first page']:.2f} / {g['middle']:.2f} ms |")  # fmt: skip
    if "documents" in only:
        ratios, docs, copies = [], [], []
        for run in range(args.runs):
            order = ["documents", "copy"] if run % 2 == 0 else ["copy", "documents"]
            rates = {}
            for side in order:
                rates[side] = await (documents_rate(admin_url, args.document_lines) if side == "documents"
                                     else copy_rate(admin_url, args.document_lines))  # fmt: skip
            docs.append(rates["documents"])
            copies.append(rates["copy"])
            ratios.append(rates["documents"] / rates["copy"])
            print(f"  run {run + 1}: documents {rates['documents']:,.0f} lines/s, db load {rates['copy']:,.0f} "
                  f"ops/s, ratio {ratios[-1]:.2f}", flush=True)  # fmt: skip
        rows_out.append(
            f"| `POST /documents` of {DOCUMENT_LINES:,} lines, 4 clients ÷ `db load` COPY, 4 workers | "
            f"**{statistics.median(ratios):.2f}** (runs {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"{statistics.median(docs):,.0f} lines/s vs {statistics.median(copies):,.0f} ops/s) | ≥ 0.3 |"
        )
    print("\n| figure | first page / middle (ms), or ratio | with the pair index, or target |\n|---|---|---|")
    print("\n".join(rows_out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
