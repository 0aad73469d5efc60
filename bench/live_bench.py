"""`make bench-live`: end to end, from an operation's commit to its status change at a Server-Sent Events client,
at a steady rate of status changes with many clients connected. Against the local stack: a fresh database and
topic per run, `python -m bridge` and `python -m api` as processes, the clients and the writers in this process.

Each operation is a receipt to a pair never stocked (out of stock → available: one status change each), from 8
connections at a fixed total rate; the time its INSERT returned is its commit time. Every client reads the
stream (`/status-changes/stream`); each event's latency is its arrival at a client minus its operation's commit.
Reported: p50 and p99 over every (client, event) delivery, and whether every client got every event.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from api.__main__ import make_key
from api.auth import Role
from bench.api_bench import Server
from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.load import ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.bridge_harness import Bridge

REPO = Path(__file__).resolve().parents[1]
WRITERS = 8
WAREHOUSES = 20
OPERATION = re.compile(rb'"operation_id":(\d+)')


async def client(url: str, key: str, arrivals: dict[int, list[float]], ready: asyncio.Event, closed: list[str]) -> None:
    """One SSE client: records when each event (by operation id) arrives."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=2**20)
    writer.write(
        f"GET /status-changes/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the stream answered {head[:60]!r}")
    ready.set()
    rest = b""
    try:
        while chunk := await reader.read(2**16):
            now = time.monotonic()
            complete, _, rest = (rest + chunk).rpartition(b"\n\n")  # events split across reads wait for their end
            for match in OPERATION.finditer(complete):
                arrivals.setdefault(int(match.group(1)), []).append(now)
            if b"event: closed" in complete:
                closed.append(complete[complete.index(b"event: closed") :].decode(errors="replace"))
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def write(url: str, rate: int, seconds: int, commits: dict[int, float]) -> None:
    """`rate` status changes per second for `seconds`, from WRITERS connections; commit time per operation id."""
    per_writer = rate / WRITERS

    async def writer(w: int) -> None:
        conn = await asyncpg.connect(url)
        try:
            start = time.monotonic()
            for i in range(int(per_writer * seconds)):
                await asyncio.sleep(max(0.0, start + i / per_writer - time.monotonic()))
                n = w + i * WRITERS
                operation = await conn.fetchval(
                    "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type) "
                    "VALUES ($1, $2, 20, 'receipt') RETURNING id",
                    1 + n // WAREHOUSES, 1 + n % WAREHOUSES,
                )  # fmt: skip
                commits[operation] = time.monotonic()
        finally:
            await conn.close()

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))


async def run(admin_url: str, bootstrap: str, rate: int, seconds: int, clients: int) -> dict[str, Any]:
    name = await create_database(admin_url, "wt_live_bench")
    url = with_database(admin_url, name)
    topic = f"bench.{uuid.uuid4().hex[:8]}.status-changes"
    operations = rate * seconds
    products = operations // WAREHOUSES + 1
    bridge: Bridge | None = None
    api: Server | None = None
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await ensure_reference_data(conn, products, WAREHOUSES)
        finally:
            await conn.close()
        key = await make_key(url, "bench", Role.viewer)
        env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic}
        bridge = Bridge(env, Path(f"/tmp/{name}-bridge.log")).start()
        api = Server("api", url, "/readyz", {}, KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic)
        arrivals: dict[int, list[float]] = {}
        closed: list[str] = []
        readies = [asyncio.Event() for _ in range(clients)]
        tasks = [asyncio.create_task(client(api.url, key, arrivals, r, closed)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(1)
        commits: dict[int, float] = {}
        started = time.monotonic()
        await write(url, rate, seconds, commits)
        elapsed = time.monotonic() - started
        await asyncio.sleep(3)  # the last events on their way
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if api is not None:
            api.stop()
        if bridge is not None and bridge.running():
            bridge.terminate()
        await drop_database(admin_url, name)
    latencies = [(t - commits[op]) * 1000 for op, times in arrivals.items() if op in commits for t in times]
    delivered = sum(len(arrivals.get(op, [])) for op in commits)
    q = statistics.quantiles(latencies, n=100)
    return {
        "rate": len(commits) / elapsed, "clients": clients, "events": len(commits), "expected": len(commits) * clients,
        "delivered": delivered, "dropped_clients": len(closed), "p50_ms": statistics.median(latencies),
        "p99_ms": q[98], "max_ms": max(latencies),
    }  # fmt: skip


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=500, help="status changes per second")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--clients", type=int, default=100)
    args = p.parse_args()
    for name in ("rate", "seconds", "clients"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    r = await run(admin_url, bootstrap, args.rate, args.seconds, args.clients)
    print(
        "\n| figure | measured |\n|---|---|\n"
        f"| commit → SSE client, {r['rate']:,.0f} status changes/s, {r['clients']} clients, {args.seconds} s "
        f"| p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms (max {r['max_ms']:.0f} ms); "
        f"{r['delivered']:,} of {r['expected']:,} deliveries, {r['dropped_clients']} clients dropped |"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "live.json").write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
