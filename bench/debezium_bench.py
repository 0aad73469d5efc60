"""`make bench-debezium`: the bridge side by side with Debezium's PostgreSQL connector and its Outbox Event Router,
on the same outbox rows, the same broker, the same machine, in the same run. Not a test: a comparison.

A stack of its own (`PG_WAL_LEVEL=logical`, which logical decoding needs; other ports, so the `make stack` one
is left alone). Kafka Connect standalone at the broker's version and `io.debezium:debezium-connector-postgres`
are resolved from Maven Central once (bench/debezium/pom.xml, into .cache/). PostgreSQL 15's `pgoutput` does not
publish generated columns, so the router's key and payload are plain columns of the outbox, filled by a
row trigger in the bench's databases only (both sides run with it). Debezium's settings, as its documentation
advises for throughput and latency, are in CONNECTOR and WORKER below.

Figures, for both, each on a fresh database and topic: drain of a backlog (events/s from the records' own
timestamps); commit → consumer latency at a fixed rate (all changes, and those after the first 10 s; runs
alternating, as the drains, since this machine's noise moves a single run's p99 by tens of ms); peak
RSS and CPU seconds of the drain; duplicates and missing events after 3 kill -9 during a load.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.bridge_bench import (
    FILL,
    FILL_STATEMENT,
    PAIRS_PER_WRITER,
    REPO,
    WARM_S,
    WRITERS,
    BridgeProcess,
    Scratch,
    latency_run,
    latency_summary,
    topic_rate,
)
from common.kafka import end_offsets
from db.load import ensure_reference_data
from tests.bridge_harness import AUDIT, load
from tests.private_stack import free_port, private_stack
from tests.topic import create_topic, read_topic

DEBEZIUM_VERSION = "3.6.1.Final"
PARTITIONS = 6

# The router's columns, plain and filled by a trigger (bench databases only).
ROUTER_COLUMNS = """
ALTER TABLE status_change_outbox
    ADD COLUMN aggregate_type text NOT NULL DEFAULT 'status-changes',
    ADD COLUMN aggregate_id text,
    ADD COLUMN payload text;
CREATE FUNCTION bench_router_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.aggregate_id := NEW.product_id || ':' || NEW.warehouse_id;
    NEW.payload := json_build_object(
        'event_id', NEW.event_id, 'occurred_at', NEW.occurred_at, 'product_id', NEW.product_id,
        'warehouse_id', NEW.warehouse_id, 'old_status', NEW.old_status, 'new_status', NEW.new_status,
        'quantity', NEW.quantity, 'operation_id', NEW.operation_id)::text;
    RETURN NEW;
END $$;
CREATE TRIGGER bench_router_columns BEFORE INSERT ON status_change_outbox
    FOR EACH ROW EXECUTE FUNCTION bench_router_columns();
"""

WORKER = {
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.storage.StringConverter",
    "offset.flush.interval.ms": "1000",  # standalone's default is 60 s: a crash would replay a minute
    "producer.linger.ms": "5",
    "producer.batch.size": "262144",
}
CONNECTOR = {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "publication.autocreate.mode": "filtered",
    "table.include.list": "public.status_change_outbox",
    "snapshot.mode": "no_data",
    "tombstones.on.delete": "false",
    "topic.prefix": "bench",
    # Throughput and latency: larger batches and queue than the defaults (2048, 8192), and no 500 ms wait
    # between polls of the queue (the default poll.interval.ms).
    "max.batch.size": "20480",
    "max.queue.size": "81920",
    "poll.interval.ms": "5",
    "transforms": "outbox",
    "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
    "transforms.outbox.table.field.event.id": "event_id",
    "transforms.outbox.table.field.event.key": "aggregate_id",
    "transforms.outbox.table.field.event.payload": "payload",
    "transforms.outbox.route.by.field": "aggregate_type",
    "transforms.outbox.table.expand.json.payload": "false",
}


def kafka_version() -> str:
    for line in (REPO / "stack" / "versions.env").read_text().splitlines():
        if line.startswith("KAFKA_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("no KAFKA_VERSION in stack/versions.env")


def fetch_jars() -> Path:
    libs = REPO / ".cache" / f"debezium-{DEBEZIUM_VERSION}-connect-{kafka_version()}"
    if not (libs / ".complete").exists():
        print(
            f"fetching Kafka Connect {kafka_version()} and Debezium {DEBEZIUM_VERSION} from Maven Central into {libs}"
        )
        libs.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mvn", "-B", "-q", "-f", str(REPO / "bench" / "debezium" / "pom.xml"),
             f"-Dkafka.version={kafka_version()}", f"-Ddebezium.version={DEBEZIUM_VERSION}",
             "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
            check=True,
        )  # fmt: skip
        (libs / ".complete").touch()
    return libs


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connect:
    """Kafka Connect standalone running the connector on one database, routing to `topic`."""

    proc: subprocess.Popen[bytes]  # once started

    def __init__(self, libs: Path, folder: Path, scratch: Scratch, name: str) -> None:
        url = urlsplit(scratch.url)
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.libs, self.slot = folder, libs, name
        worker = {**WORKER, "bootstrap.servers": scratch.bootstrap, "listeners": f"http://127.0.0.1:{free_port()}",
                  "offset.storage.file.filename": str(folder / "offsets")}  # fmt: skip
        connector = {
            **CONNECTOR, "name": name, "slot.name": name, "publication.name": name,
            "database.hostname": url.hostname or "", "database.port": str(url.port),
            "database.user": url.username or "", "database.password": url.password or "",
            "database.dbname": url.path.strip("/"),
            "transforms.outbox.route.topic.replacement": scratch.topic,
        }  # fmt: skip
        for file, props in (("worker.properties", worker), ("connector.properties", connector)):
            (folder / file).write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (folder / "log4j2.properties").write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\nappender.out.type=Console\n"
            "appender.out.name=out\nappender.out.layout.type=PatternLayout\n"
            "appender.out.layout.pattern=%d %p %c: %m%n\n"
        )

    def start(self) -> "Connect":
        log = (self.folder / "connect.log").open("ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
             "-cp", f"{self.libs}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
             str(self.folder / "worker.properties"), str(self.folder / "connector.properties")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    async def streaming(self, url: str, timeout: float = 120) -> None:
        """Until the connector reads its replication slot."""
        deadline = time.monotonic() + timeout
        conn = await asyncpg.connect(url)
        try:
            while not await conn.fetchval(
                "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", self.slot
            ):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Kafka Connect is not streaming; see {self.folder / 'connect.log'}")
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        await asyncio.to_thread(self.proc.wait, 60)


async def prepared(scratch: Scratch, pairs: tuple[int, int], audit: bool = False) -> None:
    conn = await asyncpg.connect(scratch.url)
    try:
        await conn.execute(ROUTER_COLUMNS)
        if audit:
            await conn.execute(AUDIT)
        await ensure_reference_data(conn, *pairs)
    finally:
        await conn.close()
    await create_topic(scratch.bootstrap, scratch.topic, PARTITIONS)


async def backlog(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, rows, FILL_STATEMENT):
            await conn.execute(FILL, start, min(rows, start + FILL_STATEMENT))
    finally:
        await conn.close()


async def records_on(bootstrap: str, topic: str) -> int:
    return sum(end for _, end in (await end_offsets(bootstrap, topic)).values())


async def until_published(bootstrap: str, topic: str, count: int, alive: Any, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while await records_on(bootstrap, topic) < count:
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{topic}: fewer than {count} records")
        await asyncio.sleep(0.5)


# --- drain -----------------------------------------------------------------------------------------------------


async def bridge_drain(url: str, bootstrap: str, rows: int) -> dict[str, float]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (1000, 10))
        await backlog(scratch.url, rows)
        bridge = BridgeProcess(scratch)
        try:
            while (await bridge.published() or 0) < rows:
                if bridge.proc.poll() is not None:
                    raise RuntimeError("the bridge exited")
                await asyncio.sleep(0.5)
            figures = {"rss_mb": peak_rss_mb(bridge.proc.pid), "cpu_s": cpu_seconds(bridge.proc.pid)}
        finally:
            await bridge.stop()
        figures["events_s"] = await topic_rate(bootstrap, scratch.topic)
    return figures


async def debezium_drain(url: str, bootstrap: str, rows: int, libs: Path, folder: Path) -> dict[str, float]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (1000, 10))
        connect = Connect(libs, folder, scratch, f"bench_{scratch.name[-12:]}")
        connect.start()
        try:
            await connect.streaming(scratch.url)  # its slot and publication exist: the backlog is kept for it
            await connect.stop()
            await backlog(scratch.url, rows)
            started = time.monotonic()
            connect.start()
            await until_published(bootstrap, scratch.topic, rows, lambda: connect.proc.poll() is None)
            took = time.monotonic() - started
            print(f"    (Debezium: {rows:,} records {took:.1f} s after its start, its JVM's start included)")
            figures = {"rss_mb": peak_rss_mb(connect.proc.pid), "cpu_s": cpu_seconds(connect.proc.pid)}
        finally:
            await connect.stop()
            await drop_slot(scratch.url, connect.slot)
        figures["events_s"] = await topic_rate(bootstrap, scratch.topic)
    return figures


async def drop_slot(url: str, slot: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot
        )
    finally:
        await conn.close()


# --- latency ---------------------------------------------------------------------------------------------------


async def bridge_latency(url: str, bootstrap: str, rate: int, seconds: int) -> dict[str, Any]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (WRITERS * PAIRS_PER_WRITER, 1))
        bridge = BridgeProcess(scratch)
        try:
            while not await bridge.leading():
                await asyncio.sleep(0.1)
            return latency_summary(await latency_run(scratch.url, bootstrap, scratch.topic, rate, seconds), seconds)
        finally:
            await bridge.stop()


async def debezium_latency(
    url: str, bootstrap: str, rate: int, seconds: int, libs: Path, folder: Path
) -> dict[str, Any]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (WRITERS * PAIRS_PER_WRITER, 1))
        connect = Connect(libs, folder, scratch, f"bench_{scratch.name[-12:]}").start()
        try:
            await connect.streaming(scratch.url)
            return latency_summary(await latency_run(scratch.url, bootstrap, scratch.topic, rate, seconds), seconds)
        finally:
            await connect.stop()
            await drop_slot(scratch.url, connect.slot)


# --- kill -9 ---------------------------------------------------------------------------------------------------


def event_ids(records: list[Any]) -> list[str]:
    return [json.loads(r.value)["event_id"] for r in records]


async def bridge_kills(url: str, bootstrap: str, kills: int) -> dict[str, int]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (500, 10), audit=True)
        bridge = BridgeProcess(scratch)
        loading = asyncio.create_task(load(scratch.url, loaders=4, operations=40_000, batch=100, pause=0.2))
        for _ in range(kills):
            while not await bridge.leading():
                await asyncio.sleep(0.1)
            await asyncio.sleep(random.uniform(1, 3))
            bridge.proc.kill()
            bridge.proc.wait()
            bridge = BridgeProcess(scratch)
        await loading
        conn = await asyncpg.connect(scratch.url)
        try:
            while await conn.fetchval("SELECT count(*) FROM status_change_outbox"):
                await asyncio.sleep(0.5)
            produced = {str(r["event_id"]) for r in await conn.fetch("SELECT event_id FROM outbox_audit")}
        finally:
            await conn.close()
        await bridge.stop()
        return counted(produced, event_ids(await read_topic(bootstrap, scratch.topic)))


async def debezium_kills(url: str, bootstrap: str, kills: int, libs: Path, folder: Path) -> dict[str, int]:
    async with Scratch(url, bootstrap) as scratch:
        await prepared(scratch, (500, 10))
        connect = Connect(libs, folder, scratch, f"bench_{scratch.name[-12:]}").start()
        try:
            await connect.streaming(scratch.url)
            loading = asyncio.create_task(load(scratch.url, loaders=4, operations=40_000, batch=100, pause=0.2))
            for _ in range(kills):
                await asyncio.sleep(random.uniform(1, 3))
                await connect.stop(signal.SIGKILL)
                connect.start()
                await connect.streaming(scratch.url)
            await loading
            conn = await asyncpg.connect(scratch.url)
            try:  # Debezium does not delete: the outbox holds every change
                produced = {str(r["event_id"]) for r in await conn.fetch("SELECT event_id FROM status_change_outbox")}
            finally:
                await conn.close()
            await until_published(bootstrap, scratch.topic, len(produced), lambda: connect.proc.poll() is None, 120)
            await asyncio.sleep(3)  # anything still coming
        finally:
            await connect.stop()
            await drop_slot(scratch.url, connect.slot)
        return counted(produced, event_ids(await read_topic(bootstrap, scratch.topic)))


def counted(produced: set[str], on_topic: list[str]) -> dict[str, int]:
    return {"produced": len(produced), "records": len(on_topic), "duplicates": len(on_topic) - len(set(on_topic)),
            "missing": len(produced - set(on_topic))}  # fmt: skip


# --- main ------------------------------------------------------------------------------------------------------


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="drain runs of each, alternating")
    p.add_argument("--drain-rows", type=int, default=100_000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--latency-repeat", type=int, default=3, help="latency runs of each, alternating")
    p.add_argument("--kills", type=int, default=3)
    args = p.parse_args()
    libs = fetch_jars()
    results: dict[str, Any] = {"debezium": DEBEZIUM_VERSION, "connect": kafka_version(),
                               "connector": CONNECTOR, "worker": WORKER}  # fmt: skip
    os.environ["PG_WAL_LEVEL"] = "logical"
    with private_stack() as stack:
        stack.env["KAFKA_HEAP"] = "768m"  # as `make stack`'s broker (a private stack's default is smaller)
        made = stack.make("stack")
        if made.returncode != 0:
            raise RuntimeError(made.stdout + made.stderr)
        url, bootstrap = stack.database_url, stack.bootstrap
        folder = REPO / "bench" / "results" / "debezium"
        drains: dict[str, list[dict[str, float]]] = {"bridge": [], "debezium": []}
        for run in range(args.repeat):
            order = ["bridge", "debezium"] if run % 2 == 0 else ["debezium", "bridge"]
            for side in order:
                figures = await (bridge_drain(url, bootstrap, args.drain_rows) if side == "bridge"
                                 else debezium_drain(url, bootstrap, args.drain_rows, libs, folder))  # fmt: skip
                drains[side].append(figures)
                print(f"  drain run {run + 1}, {side}: {figures['events_s']:,.0f} events/s, "
                      f"peak RSS {figures['rss_mb']:.0f} MB, {figures['cpu_s']:.1f} CPU s")  # fmt: skip
        results["drain"] = drains
        latencies: dict[str, list[dict[str, Any]]] = {"bridge": [], "debezium": []}
        for run in range(args.latency_repeat):
            order = ["bridge", "debezium"] if run % 2 == 0 else ["debezium", "bridge"]
            for side in order:
                lat = await (bridge_latency(url, bootstrap, args.rate, args.seconds) if side == "bridge"
                             else debezium_latency(url, bootstrap, args.rate, args.seconds, libs, folder))  # fmt: skip
                latencies[side].append(lat)
                print(f"  latency run {run + 1}, {side}: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms;"
                      f" after {WARM_S:g} s: p50 {lat['warm_p50_ms']:.1f}, p99 {lat['warm_p99_ms']:.1f}")  # fmt: skip
        results["latency"] = latencies
        results["kills"] = {
            "bridge": await bridge_kills(url, bootstrap, args.kills),
            "debezium": await debezium_kills(url, bootstrap, args.kills, libs, folder),
        }
        for side, k in results["kills"].items():
            print(f"  {args.kills} kill -9, {side}: {k['produced']:,} changes, {k['records']:,} records,"
                  f" {k['duplicates']:,} duplicates, {k['missing']:,} missing")  # fmt: skip
    print(table(results, args))
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "debezium.json").write_text(json.dumps(results, indent=2))
    return 0


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    def median(side: str, name: str, of: str = "drain") -> float:
        values = sorted(float(run[name]) for run in results[of][side])
        return values[len(values) // 2]

    def latency(side: str, p50: str, p99: str) -> str:
        runs = ", ".join(f"{run[p99]:.1f}" for run in results["latency"][side])
        return f"{median(side, p50, 'latency'):.1f} / {median(side, p99, 'latency'):.1f} ms (p99s {runs})"

    kb, kd = results["kills"]["bridge"], results["kills"]["debezium"]
    rows = [
        f"| drain of a {args.drain_rows:,}-change backlog, events/s (median of {args.repeat}) | "
        f"{median('bridge', 'events_s'):,.0f} | {median('debezium', 'events_s'):,.0f} | bridge ÷ Debezium "
        f"{median('bridge', 'events_s') / median('debezium', 'events_s'):.2f} |",
        f"| commit → consumer latency at {args.rate:,}/s for {args.seconds} s, p50 / p99 (median of "
        f"{args.latency_repeat}) | {latency('bridge', 'p50_ms', 'p99_ms')} | "
        f"{latency('debezium', 'p50_ms', 'p99_ms')} | |",
        f"| same, after the first {WARM_S:g} s | {latency('bridge', 'warm_p50_ms', 'warm_p99_ms')} | "
        f"{latency('debezium', 'warm_p50_ms', 'warm_p99_ms')} | bridge ÷ Debezium warm p99 "
        f"{median('bridge', 'warm_p99_ms', 'latency') / median('debezium', 'warm_p99_ms', 'latency'):.2f} |",
        f"| peak RSS while draining | {median('bridge', 'rss_mb'):.0f} MB | {median('debezium', 'rss_mb'):.0f} MB | |",
        f"| CPU seconds for the drain | {median('bridge', 'cpu_s'):.1f} | {median('debezium', 'cpu_s'):.1f} | "
        "(Debezium's include its JVM start) |",
        f"| {args.kills} kill -9 during a load: duplicates / missing | {kb['duplicates']:,} / {kb['missing']:,} "
        f"(of {kb['produced']:,}) | {kd['duplicates']:,} / {kd['missing']:,} (of {kd['produced']:,}) | |",
    ]
    return "\n| figure | bridge | Debezium | |\n|---|---|---|---|\n" + "\n".join(rows)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
