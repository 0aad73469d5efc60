"""`make bench-auth-flood`: what a flood of made-up API keys costs the requests of a good key.

One API process over a fresh database. A good client (one connection, keep-alive) asks for one balance again
and again with a valid key; its median latency is measured alone ("idle") and while a flood runs: 241 requests/s,
each with a made-up `wt_…` key of its own, from the same address (autocannon, bench/loadgen/, 10 connections).
Phases alternate, idle then flood, `--repeat` times; the figure is the median of the flood ÷ idle ratios
(target ≤ 2). The flood's answers are counted by status: 401 until the address's failed-authentication limit
(API_AUTH_FAILURES_PER_MINUTE) is spent, 429 after, neither costing a query.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

import asyncpg
import httpx

from api.__main__ import make_key
from api.auth import Role
from bench.api_bench import REPO, Server, autocannon
from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database

FLOOD_RATE = 241  # the rate the probe measured at
PATH = "/balances/product/1/warehouse/1"


async def prepare(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO products (name) VALUES ('p'); INSERT INTO warehouses (name) VALUES ('w');"
            "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)"
            " VALUES (1, 1, 100, 'receipt')"
        )
    finally:
        await conn.close()
    return await make_key(url, "bench", Role.viewer)


def good_latencies(url: str, key: str, seconds: float) -> list[float]:
    """One client's request latencies (s) for `seconds`, one request at a time."""
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = client.get(PATH)
            times.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise RuntimeError(f"the good key got {r.status_code}: {r.text}")
    return times


def flood(url: str, seconds: int, rate: int, result: dict[str, Any]) -> None:
    result.update(
        autocannon(refused_ok=True, url=url + PATH, connections=10, duration=seconds, rate=rate, badKeys=True)
    )


def phase(api: Server, key: str, seconds: int, rate: int | None) -> tuple[float, dict[str, Any]]:
    """The good client's median latency (ms) over one phase, and the flood's result (no flood, and {}: rate None)."""
    result: dict[str, Any] = {}
    flooding = threading.Thread(target=flood, args=(api.url, seconds + 2, rate, result)) if rate is not None else None
    if flooding:
        flooding.start()
        time.sleep(1)  # the flood at its rate before measuring
    median = statistics.median(good_latencies(api.url, key, seconds)) * 1000
    if flooding:
        flooding.join()
    return median, result


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="idle/flood pairs of phases")
    p.add_argument("--seconds", type=int, default=10, help="length of each phase")
    p.add_argument("--rate", type=int, default=FLOOD_RATE, help="the flood's requests/s; 0: as fast as it goes")
    args = p.parse_args()
    if args.repeat < 1 or args.seconds < 1 or args.rate < 0:
        p.error("--repeat and --seconds must be at least 1, --rate at least 0")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    name = await create_database(admin_url, "wt_auth_flood")
    url = with_database(admin_url, name)
    api = None
    try:
        key = await prepare(url)
        api = Server("api", url, "/readyz", {})
        good_latencies(api.url, key, 2)  # warm-up
        ratios, idle, flooded = [], [], []
        statuses: dict[str, int] = {}
        for i in range(args.repeat):
            alone, _ = phase(api, key, args.seconds, None)
            under, result = phase(api, key, args.seconds, args.rate)
            idle.append(alone)
            flooded.append(under)
            ratios.append(under / alone)
            for code, count in result.get("statuses", {}).items():
                statuses[code] = statuses.get(code, 0) + count
            rate = result["requests"] / result["seconds"]
            print(
                f"  run {i + 1}: idle {alone:.2f} ms, under {rate:.0f} bad keys/s {under:.2f} ms: {under / alone:.2f}"
            )
    finally:
        if api:
            api.stop()
        await drop_database(admin_url, name)
    figure = {"rate": args.rate, "ratio": statistics.median(ratios), "runs": ratios, "idle_ms": statistics.median(idle),
              "flood_ms": statistics.median(flooded), "flood_statuses": statuses}  # fmt: skip
    print(
        "\n| figure | measured (median) | target |\n|---|---|---|\n"
        f"| good key's latency under {args.rate or 'as many as it can'} made-up keys/s ÷ idle | {figure['ratio']:.2f} "
        f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; {figure['flood_ms']:.2f} vs {figure['idle_ms']:.2f} ms) "
        f"| ≤ 2 |\n| the flood's answers | {', '.join(f'{c}: {n:,}' for c, n in sorted(statuses.items()))} | |"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "auth_flood.json").write_text(json.dumps(figure, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
