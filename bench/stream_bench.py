"""`make bench-stream`: the stream tools at scale, against the local stack (a fresh database and fresh topics).

A database of N pairs (default 1,000,000: 100,000 products x 10 warehouses), each with a balance and a published
state (written straight into stock_balance and status_change_published, so it takes seconds); a bridge; then:
- `python -m bridge snapshot`: the time until every pair's state is on the current-state topic, and the
  bridge's peak RSS meanwhile;
- `python -m bridge verify`: its time and its peak RSS (it must find no discrepancy).
The figures are absolute (seconds, MB): the tools have no same-run baseline to compare with; memory is the
target (the verifier's RSS ≤ 300 MB at 1M pairs).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import asyncpg

from bench.bridge_bench import REPO, BridgeProcess, Scratch
from db.config import LOCAL_DATABASE_URL, normalize_database_url


async def fill(url: str, products: int, warehouses: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO products (id, name) OVERRIDING SYSTEM VALUE SELECT g, 'p' || g FROM generate_series(1, $1) g",
            products,
        )
        await conn.execute(
            "INSERT INTO warehouses (id, name) OVERRIDING SYSTEM VALUE"
            " SELECT g, 'w' || g FROM generate_series(1, $1) g",
            warehouses,
        )
        await conn.execute(
            "INSERT INTO stock_balance (product_id, warehouse_id, low_stock_threshold, quantity, status)"
            " SELECT p, w, 10, (p * 7 + w * 13) % 50, stock_status_for((p * 7 + w * 13) % 50, 10)"
            "   FROM generate_series(1, $1) p, generate_series(1, $2) w",
            products, warehouses,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO status_change_published"
            "       (product_id, warehouse_id, seq, status, quantity, changed_at, event_id)"
            " SELECT product_id, warehouse_id, 1 + (product_id + warehouse_id) % 20, status, quantity, now(),"
            "        gen_random_uuid() FROM stock_balance"
        )
        for table in ("stock_balance", "status_change_published"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


# Runs `python -m bridge …` in a process that reports its own peak RSS (ru_maxrss, KB) on stderr as it exits.
MEASURED = (
    "import atexit, resource, runpy, sys\n"
    "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "atexit.register(lambda: sys.stderr.write(f'peak-rss-kb {peak()}\\n'))\n"
    "sys.argv = ['python -m bridge', *sys.argv[1:]]\n"
    "runpy.run_module('bridge', run_name='__main__')\n"
)


def run_tool(env: dict[str, str], *args: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """A `python -m bridge …` run: its wall time, its peak RSS (MB) and its result."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", MEASURED, *args], env=env, cwd=REPO, capture_output=True, text=True)
    took = time.monotonic() - started
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak-rss-kb ")]
    return took, int(peak[-1].split()[1]) / 1024 if peak else float("nan"), result


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--products", type=int, default=100_000)
    p.add_argument("--warehouses", type=int, default=10)
    args = p.parse_args()
    if args.products < 1 or args.warehouses < 1:
        p.error("--products and --warehouses must be at least 1")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    pairs = args.products * args.warehouses
    results: dict[str, Any] = {"pairs": pairs}
    async with Scratch(admin_url, bootstrap) as scratch:
        print(f"filling {pairs:,} pairs")
        await fill(scratch.url, args.products, args.warehouses)
        env = {**os.environ, "DATABASE_URL": scratch.url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "KAFKA_TOPIC": scratch.topic}  # fmt: skip
        bridge = BridgeProcess(scratch)
        try:
            while not await bridge.leading():
                await asyncio.sleep(0.2)
            took, _, result = await asyncio.to_thread(run_tool, env, "snapshot")
            if result.returncode != 0:
                raise RuntimeError(f"snapshot failed: {result.stderr}")
            results["snapshot"] = {
                "seconds": took,
                "pairs_per_s": pairs / took,
                "bridge_peak_rss_mb": bridge.peak_rss_mb(),
            }
            print(
                f"  snapshot: {took:.1f} s ({pairs / took:,.0f} pairs/s), bridge peak RSS {bridge.peak_rss_mb():.0f} MB"
            )
        finally:
            await bridge.stop()
        took, rss, result = await asyncio.to_thread(run_tool, env, "verify")
        if result.returncode != 0:
            raise RuntimeError(f"verify exited {result.returncode}: {result.stdout}{result.stderr[-2000:]}")
        results["verify"] = {"seconds": took, "peak_rss_mb": rss, "summary": result.stdout.strip().splitlines()}
        print(f"  verify: {took:.1f} s, peak RSS {rss:.0f} MB: {result.stdout.strip().splitlines()[-1]}")
    s, v = results["snapshot"], results["verify"]
    print(
        "\n| figure | measured | target |\n|---|---|---|\n"
        f"| `python -m bridge snapshot` of {pairs:,} pairs, a bridge leading | {s['seconds']:.1f} s "
        f"({s['pairs_per_s']:,.0f} pairs/s); bridge peak RSS {s['bridge_peak_rss_mb']:.0f} MB | reported |\n"
        f"| `python -m bridge verify` (state topic) of {pairs:,} pairs | {v['seconds']:.1f} s, peak RSS "
        f"{v['peak_rss_mb']:.0f} MB | RSS ≤ 300 MB |"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "stream.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
