"""`make bench-bridge`: the bridge's drain rate against a bare transactional producer, its end-to-end latency, and
its memory, all against the local stack (a fresh database and fresh topics per run).

- drain: a backlog of N outbox rows, published by `python -m bridge`, against a bare aiokafka transactional
  producer sending the same messages (each event's key, value and headers, and each batch's pair states on the
  current-state topic) in transactions of the same size to the same broker, in the same run; both rates are read
  from the records' timestamps on the event topic (first to last);
  runs alternate and the figure is the median ratio;
- latency: single-operation transactions that each change a status, at a fixed rate, with the bridge running;
  a read_committed consumer in the same process takes the time from each operation's commit (when the INSERT
  returned) to its event's arrival;
- memory: the bridge's peak RSS (VmHWM) while it drains a backlog of 1M rows.
The backlogs are written straight into the outbox (the bridge reads nothing else), so they take seconds.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.events import StatusChanged
from bridge.sending import STATE_HEADERS
from common.settings import stock_status_topic_of
from db.config import LOCAL_DATABASE_URL, normalize_database_url
from db.load import ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.private_stack import free_port
from tests.topic import read_topic

REPO = Path(__file__).resolve().parents[1]
BATCH = 1000
PARTITIONS = 6
WARM_UP = b"warm-up"
# The backlog, made by real operations (an event's cause is read from its operation): each of 1,000 products x 10
# warehouses alternately gets 5 and loses them, so every operation changes a status; 100,000 a statement.
FILL_STATEMENT = 100_000
FILL = """
INSERT INTO warehouse_operations (product_id, warehouse_id, quantity)
SELECT 1 + g % 1000, 1 + (g / 1000) % 10, CASE WHEN (g / 10000) % 2 = 0 THEN 5 ELSE -5 END
  FROM generate_series($1::bigint, $2::bigint - 1) g
"""


class Scratch:
    """A fresh migrated database and a fresh topic name; dropped and deleted afterwards."""

    def __init__(self, admin_url: str, bootstrap: str) -> None:
        self.admin_url, self.bootstrap = admin_url, bootstrap
        self.topic = f"bench.{uuid.uuid4().hex[:8]}.status-changes"
        self.name = self.url = ""

    async def __aenter__(self) -> "Scratch":
        self.name = await create_database(self.admin_url, "wt_bridge_bench")
        self.url = with_database(self.admin_url, self.name)
        conn = await asyncpg.connect(self.url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *_: object) -> None:
        await drop_database(self.admin_url, self.name)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([self.topic, f"{self.topic}.bridge-state", stock_status_topic_of(self.topic)])
        except Exception as e:  # a topic never created
            print(f"  (deleting topics: {type(e).__name__})")
        finally:
            await admin.close()

    async def fill(self, rows: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await ensure_reference_data(conn, 1000, 10)
            for start in range(0, rows, FILL_STATEMENT):
                await conn.execute(FILL, start, min(rows, start + FILL_STATEMENT))
        finally:
            await conn.close()


class BridgeProcess:
    def __init__(self, scratch: Scratch) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": scratch.url,
            "KAFKA_BOOTSTRAP_SERVERS": scratch.bootstrap,
            "KAFKA_TOPIC": scratch.topic,
            "BRIDGE_METRICS_PORT": str(self.port),
            "BRIDGE_BATCH_SIZE": str(BATCH),
        }
        self.client = httpx.AsyncClient()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def published(self) -> float | None:
        try:
            text = (await self.client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.TransportError:
            return None  # not serving yet
        for line in text.splitlines():
            if line.startswith("warehouse_bridge_events_published_total "):
                return float(line.split()[1])
        return None

    async def leading(self) -> bool:
        try:
            return bool((await self.client.get(f"http://127.0.0.1:{self.port}/readyz")).json()["role"] == "leader")
        except httpx.TransportError:
            return False  # not serving yet

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    async def stop(self) -> None:
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 20)
        await self.client.aclose()


async def topic_rate(bootstrap: str, topic: str) -> float:
    """Events per second on a topic, from its records' own timestamps (set by the producer as it appends each
    record): the same clock for the bridge and the bare producer, and no polling in the way."""
    stamps: list[int] = [r.timestamp for r in await read_topic(bootstrap, topic) if r.value != WARM_UP]
    return (len(stamps) - 1) / ((max(stamps) - min(stamps)) / 1000)


async def bridge_drain(admin_url: str, bootstrap: str, rows: int, rate: bool = True) -> tuple[float, float]:
    """events/s of the bridge draining `rows` outbox rows, and its peak RSS in MB."""
    async with Scratch(admin_url, bootstrap) as scratch:
        await scratch.fill(rows)
        bridge = BridgeProcess(scratch)
        try:
            deadline = time.monotonic() + 1800
            while (count := await bridge.published()) != rows:
                if bridge.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the bridge did not drain {rows} rows (published {count})")
                await asyncio.sleep(0.5)  # sparse polling: the bench shares the 2 cores with the bridge
            rss = bridge.peak_rss_mb()
        finally:
            await bridge.stop()
        return (await topic_rate(bootstrap, scratch.topic) if rate else 0.0), rss


async def bare_producer(admin_url: str, bootstrap: str, rows: int) -> float:
    """events/s of a bare transactional producer sending the same messages in transactions of BATCH."""
    async with Scratch(admin_url, bootstrap) as scratch:
        await scratch.fill(rows)
        conn = await asyncpg.connect(scratch.url)
        try:
            rows_sent = await conn.fetch("SELECT value FROM status_change_batch(0, $1)", rows)
        finally:
            await conn.close()
        events = [StatusChanged.model_validate_json(r["value"]) for r in rows_sent]
        messages = [(e.key, e.value(), e.headers("/warehouse-tracker/bridge")) for e in events]
        states = stock_status_topic_of(scratch.topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(scratch.topic, PARTITIONS, 1),
                    NewTopic(states, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"}),
                ]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=f"bench-{uuid.uuid4()}", enable_idempotence=True
        )
        await producer.start()
        try:
            # Warm up outside the timing: right after creation a partition may have no leader yet (retries).
            await producer.begin_transaction()
            for topic in (scratch.topic, states):
                for partition in await producer.partitions_for(topic):
                    await producer.send(topic, WARM_UP, key=WARM_UP, partition=partition)
            await producer.commit_transaction()
            for i in range(0, len(messages), BATCH):
                await producer.begin_transaction()
                for key, value, headers in messages[i : i + BATCH]:
                    await producer.send(scratch.topic, value, key=key, headers=headers)
                for key, state in latest_states(events[i : i + BATCH]).items():
                    await producer.send(states, state, key=key, headers=STATE_HEADERS)
                await producer.commit_transaction()
        finally:
            await producer.stop()
        return await topic_rate(bootstrap, scratch.topic)


def latest_states(events: list[StatusChanged]) -> dict[bytes, bytes]:
    """The current-state record of each pair, after the last of its events in `events`."""
    return {e.key: e.state_after().value() for e in events}


async def drain_figure(admin_url: str, bootstrap: str, rows: int, repeat: int) -> dict[str, Any]:
    ratios, bridge_rates, bare_rates = [], [], []
    for run in range(repeat):
        if run % 2 == 0:
            bare = await bare_producer(admin_url, bootstrap, rows)
            rate, _ = await bridge_drain(admin_url, bootstrap, rows)
        else:
            rate, _ = await bridge_drain(admin_url, bootstrap, rows)
            bare = await bare_producer(admin_url, bootstrap, rows)
        ratios.append(rate / bare)
        bridge_rates.append(rate)
        bare_rates.append(bare)
        print(f"  drain run {run + 1}: bridge {rate:,.0f} events/s, bare producer {bare:,.0f}, ratio {ratios[-1]:.2f}")
    return {
        "ratio": statistics.median(ratios),
        "runs": ratios,
        "bridge_events_s": statistics.median(bridge_rates),
        "bare_events_s": statistics.median(bare_rates),
        "rows": rows,
    }


WRITERS, PAIRS_PER_WRITER = 8, 100
WARM_S = 10.0  # "warmed up": latencies of the changes made after this long


async def latency_run(url: str, bootstrap: str, topic: str, rate: int, seconds: int) -> list[tuple[float, float]]:
    """Single-operation transactions at `rate` for `seconds` on a database with WRITERS x PAIRS_PER_WRITER pairs
    (products 1… at warehouse 1), each flipping its pair's status (5 in, 5 out, …), while a read_committed
    consumer of `topic` (its values carry `operation_id`) times each from its commit. Returns (seconds since the
    start, latency in ms) per change, in commit order."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="latest"
    )
    committed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)  # from the end as it is now
        done = asyncio.Event()

        async def consume() -> None:
            while not done.is_set():
                for messages in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for m in messages:
                        arrived[json.loads(m.value)["operation_id"]] = now

        async def write(w: int, start: float) -> None:
            c = await asyncpg.connect(url)
            try:
                n = 0
                while (due := start + n * WRITERS / rate) < start + seconds:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    product = 1 + w * PAIRS_PER_WRITER + (n % PAIRS_PER_WRITER)
                    quantity = 5 if (n // PAIRS_PER_WRITER) % 2 == 0 else -5
                    op = await c.fetchval(
                        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) "
                        "VALUES ($1, 1, $2) RETURNING id",
                        product, quantity,
                    )  # fmt: skip
                    committed[op] = time.perf_counter()
                    n += 1
            finally:
                await c.close()

        consuming = asyncio.create_task(consume())
        start = time.perf_counter() + 0.5
        await asyncio.gather(*(write(w, start + w / rate) for w in range(WRITERS)))
        deadline = time.monotonic() + 60
        while len(arrived) < len(committed) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        done.set()
        await consuming
    finally:
        await consumer.stop()
    missing = [op for op in committed if op not in arrived]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(committed)} events never arrived")
    return sorted((t - start, (arrived[op] - t) * 1000) for op, t in committed.items())


def latency_summary(samples: list[tuple[float, float]], seconds: int) -> dict[str, Any]:
    """p50 and p99 of all the changes, and of those after the first WARM_S seconds."""

    def quantiles(latencies: list[float]) -> tuple[float, float]:
        return statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]

    p50, p99 = quantiles([ms for _, ms in samples])
    warm50, warm99 = quantiles([ms for at, ms in samples if at >= WARM_S])
    return {"p50_ms": p50, "p99_ms": p99, "warm_p50_ms": warm50, "warm_p99_ms": warm99,
            "rate": len(samples) / seconds, "events": len(samples), "seconds": seconds}  # fmt: skip


async def latency_figure(admin_url: str, bootstrap: str, rate: int, seconds: int) -> dict[str, Any]:
    async with Scratch(admin_url, bootstrap) as scratch:
        conn = await asyncpg.connect(scratch.url)
        await ensure_reference_data(conn, WRITERS * PAIRS_PER_WRITER, 1)
        await conn.close()
        bridge = BridgeProcess(scratch)
        try:
            while not await bridge.leading():  # the leader has created the topic
                await asyncio.sleep(0.1)
            result = latency_summary(await latency_run(scratch.url, bootstrap, scratch.topic, rate, seconds), seconds)
        finally:
            await bridge.stop()
    print(
        f"  latency: {result['events']:,} changes at {result['rate']:,.0f}/s: "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
        f"(after the first {WARM_S:g} s: p50 {result['warm_p50_ms']:.1f} ms, p99 {result['warm_p99_ms']:.1f} ms)"
    )
    return result


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--drain-rows", type=int, default=100_000)
    p.add_argument("--rss-rows", type=int, default=1_000_000)
    p.add_argument("--rate", type=int, default=1000, help="status changes per second in the latency run")
    p.add_argument("--seconds", type=int, default=60, help="length of the latency run")
    p.add_argument("--only", choices=["drain", "latency", "rss"], action="append")
    args = p.parse_args()
    for name in ("repeat", "drain_rows", "rss_rows", "rate", "seconds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    admin_url = normalize_database_url(os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    only = set(args.only or ["drain", "latency", "rss"])
    rows: list[str] = []
    results: dict[str, Any] = {}
    if "drain" in only:
        d = results["drain"] = await drain_figure(admin_url, bootstrap, args.drain_rows, args.repeat)
        rows.append(
            f"| drain of a {d['rows']:,}-event backlog: events/s ÷ a bare transactional producer | {d['ratio']:.2f} "
            f"(runs {', '.join(f'{r:.2f}' for r in d['runs'])}; {d['bridge_events_s']:,.0f} vs "
            f"{d['bare_events_s']:,.0f} events/s) | ≥ 0.8 |"
        )
    if "latency" in only:
        lat = results["latency"] = await latency_figure(admin_url, bootstrap, args.rate, args.seconds)
        rows.append(
            f"| commit → consumer latency, {lat['rate']:,.0f} status changes/s for {lat['seconds']} s "
            f"| p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms | p50 ≤ 20 ms, p99 ≤ 50 ms |"
        )
    if "rss" in only:
        _, rss = await bridge_drain(admin_url, bootstrap, args.rss_rows, rate=False)
        results["rss"] = {"rows": args.rss_rows, "peak_rss_mb": rss}
        rows.append(f"| bridge peak RSS while draining {args.rss_rows:,} events | {rss:.0f} MB | ≤ 150 MB |")
    print("\n| figure | measured (median) | target |\n|---|---|---|\n" + "\n".join(rows))
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bridge.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
