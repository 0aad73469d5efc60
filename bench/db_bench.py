"""`make bench-db`: the database core's write throughput as ratios against the trigger-less limit.

The baseline is `warehouse_operations_plain`, a copy of `warehouse_operations` (LIKE … INCLUDING ALL: same
columns, defaults, checks, indexes) without triggers, in the same database, loaded with the same pre-generated
data and batch size in the same run. Runs alternate between the two; each figure is the median of --repeat runs.
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.load import COPY_COLUMNS, OperationGenerator, copy_batch, ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database

REPO = Path(__file__).resolve().parents[1]
PLAIN = "warehouse_operations_plain"
TRIGGERED = "warehouse_operations"
PRODUCTS, WAREHOUSES = 1000, 10  # 10k keys


async def prepare_tables(conn: asyncpg.Connection) -> None:
    """Migrated schema, reference data, and both tables warmed with every key."""
    await migrate(conn)
    await ensure_reference_data(conn, PRODUCTS, WAREHOUSES)
    await conn.execute(f"CREATE TABLE {PLAIN} (LIKE {TRIGGERED} INCLUDING ALL)")
    # Every key starts with some stock, so runs measure steady state rather than first inserts.
    await stock_keys(conn, range(1, PRODUCTS + 1), lambda p, w: random.Random(p * 100 + w).randint(1, 25))


async def stock_keys(conn: asyncpg.Connection, products: range, quantity: Callable[[int, int], int]) -> None:
    """One receipt per key of the given products (every warehouse) into both tables, then fresh statistics."""
    receipts = "".join(
        f"{p}\t{w}\t{quantity(p, w)}\treceipt\n" for p in products for w in range(1, WAREHOUSES + 1)
    ).encode()
    for table in (PLAIN, TRIGGERED):
        await copy_batch(conn, table, receipts)
    await conn.execute("VACUUM ANALYZE")


async def checkpoint(conn: asyncpg.Connection) -> None:
    """A checkpoint before timing evens out the I/O between runs; a role without pg_checkpoint skips it."""
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass


class BenchDatabase:
    """A fresh database per run: migrated, reference data, both tables warmed with every key."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = ""
        self.url = ""

    async def __aenter__(self) -> "BenchDatabase":
        self.name = await create_database(self.admin_url, "wt_bench")
        self.url = with_database(self.admin_url, self.name)
        conn = await asyncpg.connect(self.url)
        try:
            await prepare_tables(conn)
            await checkpoint(conn)
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *_: object) -> None:
        await drop_database(self.admin_url, self.name)


def generate(workers: int, operations: int, batch: int, seed: int) -> list[list[bytes]]:
    """Per worker, its COPY payloads: made before timing, so Python never limits the measurement."""
    per_worker = operations // workers
    out = []
    for i in range(workers):
        gen = OperationGenerator(random.Random(seed * 1000 + i), PRODUCTS, WAREHOUSES)
        payloads = []
        for _ in range(per_worker // batch):
            payload, gen.shares = gen.batch(batch)
            payloads.append(payload)
        out.append(payloads)
    return out


async def copy_run(url: str, table: str, data: list[list[bytes]]) -> tuple[float, int]:
    """ops/s of COPYing every worker's payloads concurrently; deadlocks seen."""
    conns = [await asyncpg.connect(url) for _ in data]
    deadlocks = 0

    async def worker(conn: asyncpg.Connection, payloads: list[bytes]) -> None:
        nonlocal deadlocks
        for payload in payloads:
            while True:
                try:
                    await copy_batch(conn, table, payload)
                    break
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c, p) for c, p in zip(conns, data, strict=True)))
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    ops = sum(payload.count(b"\n") for payloads in data for payload in payloads)
    return ops / elapsed, deadlocks


async def copy_figure(admin_url: str, workers: int, operations: int, batch: int, repeat: int) -> dict[str, Any]:
    ratios, plain_rates, trig_rates, deadlocks = [], [], [], 0
    for run in range(repeat):
        data = generate(workers, operations, batch, seed=run)
        async with BenchDatabase(admin_url) as db:
            order = [PLAIN, TRIGGERED] if run % 2 == 0 else [TRIGGERED, PLAIN]
            rates = {}
            for table in order:
                rates[table], dl = await copy_run(db.url, table, data)
                deadlocks += dl
        plain_rates.append(rates[PLAIN])
        trig_rates.append(rates[TRIGGERED])
        ratios.append(rates[TRIGGERED] / rates[PLAIN])
        print(
            f"  copy {workers} loader(s) run {run + 1}: triggers {rates[TRIGGERED]:,.0f} ops/s, "
            f"plain {rates[PLAIN]:,.0f} ops/s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    return {
        "ratio": statistics.median(ratios),
        "triggers_ops_s": statistics.median(trig_rates),
        "plain_ops_s": statistics.median(plain_rates),
        "deadlocks": deadlocks,
        "runs": ratios,
    }


PGBENCH_SCRIPT = """\
\\set p random({first}, {last})
\\set w random(1, {warehouses})
\\set q random(1, 10)
INSERT INTO {table} ({columns}) VALUES (:p, :w, :q, 'receipt');
INSERT INTO {table} ({columns}) VALUES (:p, :w, -(:q)::int, 'shipment');
"""


def pg_bindir() -> Path:
    """The PostgreSQL server binaries: $PG_BINDIR, where Debian installs version 15, or `pg_config --bindir`."""
    pg_config = shutil.which("pg_config")
    from_pg_config = (
        subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip() if pg_config else ""
    )
    for candidate in (os.environ.get("PG_BINDIR", ""), "/usr/lib/postgresql/15/bin", from_pg_config):
        if candidate and Path(candidate, "postgres").exists():
            return Path(candidate)
    raise SystemExit("PostgreSQL 15 server binaries not found: set PG_BINDIR")


def pgbench_bin() -> str:
    return str(pg_bindir() / "pgbench")


def pgbench_run(url: str, table: str, clients: int, seconds: int, first_product: int = 1) -> float:
    """Single-operation transactions per second (each script run is two autocommitted INSERTs) on the keys of
    products first_product .. first_product + PRODUCTS - 1."""
    script = PGBENCH_SCRIPT.format(
        first=first_product, last=first_product + PRODUCTS - 1, warehouses=WAREHOUSES, table=table,
        columns=", ".join(COPY_COLUMNS),
    )  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(
            [pgbench_bin(), "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds),
             "-f", f.name, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    if not match:
        raise RuntimeError(f"pgbench output not understood:\n{out.stdout}\n{out.stderr}")
    return float(match.group(1)) * 2


# The advisory lock an idle bridge holds while it listens (see notify_status_change in the migrations).
BRIDGE_LISTENING_LOCK = 7735218433629061301
SINGLE_CASES = {
    "plain": "trigger-less table",
    "busy": "triggers, bridge busy or absent: no wake-ups needed",
    "idle": "triggers, a bridge idle and listening: every change notifies",
    "quiet": "triggers, NOTIFY switched off",
    "calm": "triggers, stock far above every threshold: no status changes",
}
# The calm case's keys: products after the busy ones, each stocked with far more than any threshold.
CALM_FIRST_PRODUCT, CALM_STOCK = PRODUCTS + 1, 100_000


async def add_calm_keys(conn: asyncpg.Connection) -> None:
    await ensure_reference_data(conn, 2 * PRODUCTS, WAREHOUSES)
    await stock_keys(conn, range(CALM_FIRST_PRODUCT, CALM_FIRST_PRODUCT + PRODUCTS), lambda p, w: CALM_STOCK)
    await checkpoint(conn)


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


async def single_figure(admin_url: str, clients: int, seconds: int, rounds: int, repeat: int) -> dict[str, Any]:
    """Single-operation txn/s per case and its ratio to the trigger-less table.

    This machine's throughput drifts by ±30 % within seconds (commit flushes on a shared disk), so each run is
    many short rounds; a round runs every case once, back to back, in alternating order, and yields one ratio
    per case against the trigger-less segment of the same round. A run's figure is the median of its rounds;
    the reported figure is the median of the runs.
    """
    rates: dict[str, list[float]] = {case: [] for case in SINGLE_CASES}
    ratios: dict[str, list[float]] = {case: [] for case in SINGLE_CASES if case != "plain"}
    round_ratios: dict[str, list[float]] = {case: [] for case in ratios}
    for run in range(repeat):
        async with BenchDatabase(admin_url) as db:
            conn = await asyncpg.connect(db.url)
            await add_calm_keys(conn)
            warm_ops = await conn.fetchval("SELECT max(id) FROM warehouse_operations")
            warm_events = await conn.fetchval("SELECT coalesce(max(id), 0) FROM status_change_outbox")
            segments: dict[str, list[float]] = {case: [] for case in SINGLE_CASES}
            run_ratios: dict[str, list[float]] = {case: [] for case in ratios}
            for round_ in range(rounds):
                order = list(SINGLE_CASES) if (run + round_) % 2 == 0 else list(reversed(SINGLE_CASES))
                for case in order:
                    enable = "DISABLE" if case == "quiet" else "ENABLE"
                    await conn.execute(f"ALTER TABLE status_change_outbox {enable} TRIGGER notify_status_change")
                    if case == "idle":  # this session plays a bridge that listens and never wakes up
                        await conn.execute("SELECT pg_advisory_lock($1)", BRIDGE_LISTENING_LOCK)
                    table = PLAIN if case == "plain" else TRIGGERED
                    first = CALM_FIRST_PRODUCT if case == "calm" else 1
                    segments[case].append(await asyncio.to_thread(pgbench_run, db.url, table, clients, seconds, first))
                    if case == "idle":
                        await conn.execute("SELECT pg_advisory_unlock($1)", BRIDGE_LISTENING_LOCK)
                for case in ratios:
                    run_ratios[case].append(segments[case][-1] / segments["plain"][-1])
            share = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM status_change_outbox WHERE id > $3 AND product_id < $1)::float"
                "     / (SELECT count(*) FROM warehouse_operations WHERE id > $2 AND product_id < $1) AS busy,"
                "       (SELECT count(*) FROM status_change_outbox WHERE id > $3 AND product_id >= $1)::float"
                "     / (SELECT count(*) FROM warehouse_operations WHERE id > $2 AND product_id >= $1) AS calm",
                CALM_FIRST_PRODUCT, warm_ops, warm_events,
            )  # fmt: skip
            assert share is not None  # a SELECT without FROM returns one row
            await conn.close()
        for case in SINGLE_CASES:
            rates[case].append(statistics.median(segments[case]))
        for case in ratios:
            ratios[case].append(statistics.median(run_ratios[case]))
            round_ratios[case].extend(run_ratios[case])
        print(
            f"  single-op run {run + 1}: median of {rounds} rounds: "
            + ", ".join(f"{case} {rates[case][-1]:,.0f} txn/s" for case in SINGLE_CASES)
            + "; ratio to trigger-less: "
            + ", ".join(f"{case} {ratios[case][-1]:.3f}" for case in ratios)
            + f"; operations that changed a status: busy keys {share['busy']:.0%}, calm keys {share['calm']:.0%}",
            flush=True,
        )
    return {
        "txn_s": {case: statistics.median(r) for case, r in rates.items()},
        "ratio": {case: statistics.median(r) for case, r in ratios.items()},
        "runs": ratios,
        "round_quartiles": {case: quartiles(r) for case, r in round_ratios.items()},
    }


def run_load(url: str, operations: int, seed: int) -> tuple[float, float]:
    """Wall seconds and peak memory (MB) of one `python -m db load`, as its summary reports it (the process's
    own; the rusage a parent sees for a child also counts the parent's image the child was forked from)."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "db", "load", "--operations", str(operations), "--workers", "4", "--quiet",
         "--seed", str(seed)],
        env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"db load failed:\n{out.stdout}{out.stderr}")
    match = re.search(r"^peak memory: (\d+) MB$", out.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"db load's summary has no peak memory line:\n{out.stdout}")
    return wall, float(match.group(1))


async def load_script_figure(admin_url: str, operations: int, repeat: int) -> dict[str, Any]:
    walls, rss = [], []
    for run in range(repeat):
        async with BenchDatabase(admin_url) as db:
            wall, peak = await asyncio.to_thread(run_load, db.url, operations, run)
        walls.append(wall)
        rss.append(peak)
        print(f"  db load run {run + 1}: {wall:.1f} s, peak RSS {peak:.0f} MB", flush=True)
    return {"wall_s": statistics.median(walls), "peak_rss_mb": max(rss), "operations": operations}


# How each figure reads in docs/benchmarks.md's table.
TABLE_ROWS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "copy_4_loaders": lambda r: [
        f"| COPY batches of 1000, 4 loaders, 10k keys: ratio to trigger-less | {r['ratio']:.2f} "
        f"({r['triggers_ops_s']:,.0f} vs {r['plain_ops_s']:,.0f} ops/s), {r['deadlocks']} deadlocks "
        "| ≥ 0.25, 0 deadlocks |"
    ],
    "copy_1_loader": lambda r: [
        f"| same, 1 loader | {r['ratio']:.2f} ({r['triggers_ops_s']:,.0f} vs {r['plain_ops_s']:,.0f} ops/s) | ≥ 0.25 |"
    ],
    "single_op_8_clients": lambda r: [
        f"| single-operation transactions, 8 clients, {SINGLE_CASES[case]}: ratio to trigger-less "
        f"| {r['ratio'][case]:.2f} (runs {', '.join(f'{x:.2f}' for x in r['runs'][case])}; rounds' quartiles "
        f"{r['round_quartiles'][case][0]:.2f} to {r['round_quartiles'][case][1]:.2f}; "
        f"{r['txn_s'][case]:,.0f} vs {r['txn_s']['plain']:,.0f} txn/s) "
        f"| {'≥ 0.70' if case == 'busy' else 'reported'} |"
        for case in ("busy", "idle", "quiet", "calm")
    ],
    "load_script": lambda r: [
        f"| python -m db load --operations {r['operations']:,} --workers 4 | {r['wall_s']:.1f} s wall, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB | RSS < 200 MB |"
    ],
}


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--operations", type=int, default=800_000, help="operations per COPY run (4 loaders; half for 1)")
    p.add_argument("--single-seconds", type=int, default=3, help="seconds per pgbench segment")
    p.add_argument("--single-rounds", type=int, default=8, help="rounds of segments per single-operation run")
    p.add_argument("--load-operations", type=int, default=500_000)
    p.add_argument("--only", choices=["copy4", "copy1", "single", "load"], action="append")
    args = p.parse_args()
    for name in ("repeat", "operations", "single_seconds", "single_rounds", "load_operations"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    only = set(args.only or ["copy4", "copy1", "single", "load"])

    results: dict[str, dict[str, Any]] = {}
    if "copy4" in only:
        results["copy_4_loaders"] = await copy_figure(admin_url, 4, args.operations, 1000, args.repeat)
    if "copy1" in only:
        results["copy_1_loader"] = await copy_figure(admin_url, 1, args.operations // 2, 1000, args.repeat)
    if "single" in only:
        results["single_op_8_clients"] = await single_figure(
            admin_url, 8, args.single_seconds, args.single_rounds, args.repeat
        )
    if "load" in only:
        results["load_script"] = await load_script_figure(admin_url, args.load_operations, args.repeat)

    print("\n| figure | measured (median) | target |\n|---|---|---|")
    for key, result in results.items():
        for row in TABLE_ROWS[key](result):
            print(row)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "db.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
