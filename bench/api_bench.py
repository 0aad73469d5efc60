"""`make bench-api`: the API's overhead, its pagination and its write latency, against the local PostgreSQL (a
fresh database of 1M balances per run: 1,000 products at 1,000 warehouses, written straight into stock_balance).

- one balance: `GET /balances/product/{p}/warehouse/{w}` from 50 concurrent clients (autocannon, keep-alive), in
  req/s, against a bare Starlette + asyncpg endpoint running the same query (bench/bare_api.py), same pool size,
  same load tool, same run; runs alternate and the figure is the median ratio;
- pagination: the latency of the last page of `GET /balances` (100 rows) over that of the first, one client,
  requests alternating; medians;
- writes: `POST /operations` (a receipt to a random pair) from 20 concurrent clients: p50 and p99 latency.
The load tool is autocannon from the npm registry, pinned in bench/loadgen/ and installed by `make bench-api`.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from api.__main__ import make_key
from api.auth import Role
from api.pagination import encode
from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.load import ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.private_stack import free_port

REPO = Path(__file__).resolve().parents[1]
LOADGEN = REPO / "bench" / "loadgen" / "run.js"
PRODUCTS = WAREHOUSES = 1000
PAGE = 100
FILL = """
INSERT INTO stock_balance (product_id, warehouse_id, low_stock_threshold, quantity, status, previous_status)
SELECT p, w, 10, q, stock_status_for(q, 10), 'out_of_stock'
  FROM generate_series(1, $1) p, generate_series(1, $2) w, LATERAL (SELECT (p * 7 + w * 13) % 50 AS q) s
 ORDER BY p, w
"""


async def fill(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await ensure_reference_data(conn, PRODUCTS, WAREHOUSES)
        started = time.monotonic()
        await conn.execute(FILL, PRODUCTS, WAREHOUSES)
        await conn.execute("VACUUM ANALYZE stock_balance")
        print(f"  filled {PRODUCTS * WAREHOUSES:,} balances in {time.monotonic() - started:.0f} s")
    finally:
        await conn.close()


class Server:
    """`python -m <module>` serving on a free port; ready when `probe` answers 200."""

    def __init__(self, module: str, database_url: str, probe: str, headers: dict[str, str], **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **settings, "DATABASE_URL": database_url, "API_PORT": str(self.port),
               "API_HOST": "127.0.0.1", "API_METRICS_PORT": str(free_port())}  # fmt: skip
        self.proc = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO)
        try:
            self._wait_ready(module, probe, headers)
        except BaseException:
            self.proc.kill()
            raise

    def _wait_ready(self, module: str, probe: str, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + probe, headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{module} exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"{module} did not answer {probe} within 30 s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


def autocannon(refused_ok: bool = False, **config: Any) -> dict[str, Any]:
    """One load run (bench/loadgen/run.js with `config`); a non-2xx answer fails it unless `refused_ok`."""
    out = subprocess.run(["node", str(LOADGEN), json.dumps(config)], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if (result["non2xx"] and not refused_ok) or result["errors"] or result["timeouts"]:
        raise RuntimeError(f"the load run had failures: {result}")
    result["rate"] = result["requests"] / result["seconds"]
    return result


def pair_figure(api: Server, bare: Server, headers: dict[str, str], repeat: int, seconds: int) -> dict[str, Any]:
    path = "/balances/product/500/warehouse/500"
    for server in (bare, api):  # warm-up: connections made, statements prepared
        autocannon(url=server.url + path, connections=50, duration=3, headers=headers)
    runs = []
    for i in range(repeat):
        b = autocannon(url=bare.url + path, connections=50, duration=seconds, headers=headers)["rate"]
        a = autocannon(url=api.url + path, connections=50, duration=seconds, headers=headers)["rate"]
        runs.append((a, b))
        print(f"  one balance, run {i + 1}: API {a:,.0f} req/s, bare {b:,.0f} req/s: {a / b:.2f}")
    ratios = [a / b for a, b in runs]
    return {"ratio": statistics.median(ratios), "runs": ratios, "api_rps": statistics.median(a for a, _ in runs),
            "bare_rps": statistics.median(b for _, b in runs)}  # fmt: skip


def pages_figure(api: Server, headers: dict[str, str], samples: int) -> dict[str, Any]:
    first = f"/balances?limit={PAGE}"
    last = f"/balances?limit={PAGE}&cursor={encode('balances', (PRODUCTS, WAREHOUSES - PAGE))}"
    times: dict[str, list[float]] = {first: [], last: []}
    with httpx.Client(base_url=api.url, headers=headers) as client:
        rows = client.get(last).json()
        assert len(rows) == PAGE and rows[-1]["product_id"] == PRODUCTS and rows[-1]["warehouse_id"] == WAREHOUSES
        for _ in range(samples):
            for path in (first, last):
                started = time.perf_counter()
                r = client.get(path)
                times[path].append(time.perf_counter() - started)
                assert r.status_code == 200 and len(r.json()) == PAGE
    f, la = statistics.median(times[first]) * 1000, statistics.median(times[last]) * 1000
    print(f"  pages of {PAGE}: first {f:.2f} ms, last (row 1,000,000) {la:.2f} ms: {la / f:.2f}")
    return {"ratio": la / f, "first_ms": f, "last_ms": la, "samples": samples}


def operations_figure(api: Server, headers: dict[str, str], seconds: int) -> dict[str, Any]:
    r = autocannon(
        url=api.url + "/operations", connections=20, duration=seconds, headers=headers,
        operations={"products": PRODUCTS, "warehouses": WAREHOUSES},
    )  # fmt: skip
    lat = r["latency_ms"]
    print(f"  POST /operations, 20 clients: {r['rate']:,.0f}/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    return {"rate": r["rate"], "p50_ms": lat["p50"], "p99_ms": lat["p99"], "requests": r["requests"]}


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="alternating runs of the one-balance comparison")
    p.add_argument("--seconds", type=int, default=10, help="length of each load run")
    p.add_argument("--samples", type=int, default=300, help="requests per page in the pagination figure")
    args = p.parse_args()
    for name in ("repeat", "seconds", "samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    name = await create_database(admin_url, "wt_api_bench")
    url = with_database(admin_url, name)
    servers: list[Server] = []
    try:
        await fill(url)
        headers = {"Authorization": f"Bearer {await make_key(url, 'bench', Role.admin)}"}
        api = Server("api", url, "/readyz", headers)
        servers.append(api)
        bare = Server("bench.bare_api", url, "/balances/product/1/warehouse/1", headers)
        servers.append(bare)
        pair = pair_figure(api, bare, headers, args.repeat, args.seconds)
        pages = pages_figure(api, headers, args.samples)
        writes = operations_figure(api, headers, args.seconds)
    finally:
        for server in servers:
            server.stop()
        await drop_database(admin_url, name)
    print(
        "\n| figure | measured (median) | target |\n|---|---|---|\n"
        f"| one balance, 50 clients: API req/s ÷ bare Starlette + asyncpg | {pair['ratio']:.2f} "
        f"(runs {', '.join(f'{r:.2f}' for r in pair['runs'])}; {pair['api_rps']:,.0f} vs {pair['bare_rps']:,.0f} "
        "req/s) | ≥ 0.6 |\n"
        f"| last ÷ first page of /balances over 1M balances | {pages['ratio']:.2f} ({pages['last_ms']:.2f} vs "
        f"{pages['first_ms']:.2f} ms) | ≤ 1.5 |\n"
        f"| POST /operations, 20 clients | p50 {writes['p50_ms']} ms, p99 {writes['p99_ms']} ms "
        f"({writes['rate']:,.0f}/s) | reported |"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "api.json").write_text(json.dumps({"pair": pair, "pages": pages, "operations": writes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
