"""`make soak`: the chaos soak. Not part of `make test`: it runs for minutes.

On a stack of its own (other ports, a temporary folder; the one `make stack` runs is left alone), 4 loaders write
operations for 5 minutes while the bridge is killed with -9 every 30 s and started again, the broker is restarted
once and PostgreSQL once; `consumers.store` runs throughout. Then it waits for the outbox to drain and the store
to catch up, and checks:

- the chaos happened: every kill, both outages (each service seen stopped, then back);
- the load happened: operations written, none refused by the database (batches lost with the connection during
  an outage are expected);
- every status change produced is on the topic exactly once (by event_id; a test-only trigger keeps a copy of
  every outbox row, the bridge deletes the originals);
- each (product, warehouse) pair's changes are in one partition, in the order they were produced, under its own
  key, with its CloudEvents id and type;
- each pair's events carry seq 1, 2, 3… in topic order, with their ce_sequence;
- `status_change_log` equals the topic, row for record;
- `status_change_count()` equals both;
- `python -m db verify` is clean;
- no bridge ended but by kill -9, and the store survived the outages without restarting.

One summary line per check; exit 1 when any fails. Logs of the bridges and the store: `.soak/` (kept).

    .venv/bin/python -m tests.soak [--minutes 5] [--loaders 4] [--rate 2000]
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bridge.events import StatusChanged
from db.errors import connection_lost, postgres_failed
from db.load import OperationGenerator, copy_batch, ensure_reference_data
from db.migrate import migrate
from tests.bridge_harness import (
    AUDIT,
    Bridge,
    Bridges,
    Produced,
    audited,
    exactly_once,
    in_order_per_pair,
    numbered_per_pair,
)
from tests.private_stack import REPO, Stack, private_stack
from tests.service_process import ServiceProcess
from tests.topic import read_topic

PRODUCTS, WAREHOUSES = 1000, 10  # 10,000 pairs: small stocks against a threshold of 10, so many status changes
BATCH = 50
TOPIC = "soak.status-changes"
BRIDGE_KILL_EVERY = 30.0
OUTAGE = {"kafka": 10.0, "postgres": 5.0}  # seconds each service stays down
CATCH_UP_TIMEOUT = 300.0


def say(line: str) -> None:
    print(line, flush=True)


@dataclass
class Loading:
    written: int = 0
    connection_losses: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # batches refused for another reason


async def loader(number: int, url: str, until: float, pause: float, loading: Loading) -> None:
    """Batches of receipts and shipments until `until`, reconnecting through outages. A batch whose commit was
    lost with the connection may have been written or not: the checks do not depend on it (they compare what the
    outbox produced with what reached Kafka), and the generator then keeps the smaller share of each pair."""
    generator = OperationGenerator(random.Random(number), PRODUCTS, WAREHOUSES)
    conn: asyncpg.Connection | None = None
    while time.monotonic() < until:
        payload, shares = generator.batch(BATCH)
        try:
            if conn is None:
                conn = await asyncpg.connect(url, timeout=5)
            await copy_batch(conn, "warehouse_operations", payload)
        except Exception as e:
            if connection_lost(e):
                loading.connection_losses += 1
                generator.unknown_outcome(shares)
                if conn is not None:
                    conn.terminate()
                    conn = None
                await asyncio.sleep(0.5)
            elif isinstance(e, asyncpg.PostgresError):  # the database refused the batch: the soak fails its load check
                loading.refused[f"{e.sqlstate}: {str(e).splitlines()[0][:80]}"] += 1
            else:
                raise
            continue
        generator.shares = shares
        loading.written += BATCH
        await asyncio.sleep(pause)
    if conn is not None:
        await conn.close()


async def stack_command(stack: Stack, *args: str) -> tuple[int, str]:
    """stack/stack.sh with the soak stack's settings: exit code and output. Cancelling it kills the command."""
    proc = await asyncio.create_subprocess_exec(
        "bash", str(REPO / "stack" / "stack.sh"), *args, env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and what it started (pg_ctl, java)
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


@dataclass
class Chaos:
    bridges: Bridges
    stack: Stack
    bridge: Bridge
    started: float
    kills: int = 0
    exited: list[str] = field(default_factory=list)  # bridges that ended without being killed
    outages: list[str] = field(default_factory=list)  # services seen stopped, then back

    def note(self, what: str) -> None:
        say(f"  {time.monotonic() - self.started:5.0f} s  {what}")

    async def kill_bridges(self, until: float) -> None:
        while time.monotonic() + BRIDGE_KILL_EVERY < until:
            await asyncio.sleep(BRIDGE_KILL_EVERY)
            if not self.bridge.running():
                self.exited.append(str(self.bridge.log))
                self.note(f"the bridge had exited by itself: see {self.bridge.log}")
            self.bridge.kill()
            self.kills += 1
            self.bridge = self.bridges().start()
            self.note(f"bridge killed with -9 ({self.kills}), a new one started")

    async def restart_services(self, duration: float) -> None:
        """Kafka at 35 % of the time, PostgreSQL at 65 % (or right after Kafka is back), one after the other."""
        for service, share, label in (("kafka", 0.35, "Kafka"), ("postgres", 0.65, "PostgreSQL")):
            await asyncio.sleep(max(0.0, self.started + share * duration - time.monotonic()))
            self.note(f"stopping {label}")
            code, out = await stack_command(self.stack, "stop", service)
            if code != 0:
                raise RuntimeError(f"stack.sh stop {service} failed: {out}")
            _, status = await stack_command(self.stack, "status")
            stopped = f"{label}: stopped" in status
            await asyncio.sleep(OUTAGE[service])
            code, out = await stack_command(self.stack, "start")
            if code != 0:
                raise RuntimeError(f"stack.sh start failed: {out}")
            if stopped:
                self.outages.append(label)
            self.note(f"{label} is back" + ("" if stopped else " (but it was not seen stopped)"))


async def report_progress(started: float, url: str, loading: Loading, chaos: Chaos) -> None:
    while True:
        await asyncio.sleep(15)
        try:
            conn = await asyncpg.connect(url, timeout=2)
            try:
                backlog = await conn.fetchval("SELECT count(*) FROM status_change_outbox")
            finally:
                await conn.close()
        except Exception as e:
            if not postgres_failed(e):
                raise
            backlog = "?"
        say(
            f"  {time.monotonic() - started:5.0f} s  {loading.written:,} operations written, outbox backlog "
            f"{backlog}, bridge kills {chaos.kills}"
        )


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], alive: Callable[[], bool], timeout: float
) -> bool:
    """Until `check()` is true; false when `alive()` is not, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if await check():
                return True
        except Exception as e:
            if not postgres_failed(e):
                raise
        await asyncio.sleep(1)
    say(f"  gave up waiting for {what}" + (f" after {timeout:.0f} s" if alive() else ": a process it needs exited"))
    return False


def quiet_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """asyncpg leaves a future with the lost connection's error behind when PostgreSQL stops mid-COPY; that the
    connection was lost is expected here, and the loader has already dealt with it."""
    if not isinstance(context.get("exception"), asyncpg.ConnectionDoesNotExistError):
        loop.default_exception_handler(context)


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, bool] = {}

    def __call__(self, name: str, ok: bool, detail: str) -> None:
        say(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        self.results[name] = ok

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.results.items() if not ok]


@dataclass
class Observed:
    """What the soak reads at the end: the outbox's copies, the topic, the event log, the counter."""

    produced: Produced
    records: list[Any]
    events: list[StatusChanged]
    log: dict[str, tuple[object, ...]]
    count: int


async def observe(url: str, bootstrap: str) -> Observed:
    db = await asyncpg.connect(url)
    try:
        produced = await audited(db)
        count = await db.fetchval("SELECT status_change_count()")
        log = {
            str(r["event_id"]): tuple(r.values())[1:]
            for r in await db.fetch(
                "SELECT event_id, kafka_partition, kafka_offset, occurred_at, product_id, warehouse_id,"
                " old_status::text, new_status::text, quantity, operation_id FROM status_change_log"
            )
        }
    finally:
        await db.close()
    records = await read_topic(bootstrap, TOPIC)
    return Observed(produced, records, [StatusChanged.model_validate_json(r.value) for r in records], log, count)


def check_stream(seen: Observed, checks: Checks) -> None:
    holds, detail = exactly_once(seen.produced, seen.events)
    checks("exactly once", holds and bool(seen.produced), detail)
    holds, detail = in_order_per_pair(seen.produced, seen.records, seen.events)
    checks("per-pair order", holds and bool(seen.records), detail)
    holds, detail = numbered_per_pair(seen.records, seen.events)
    checks("per-pair seq 1, 2, 3…", holds and bool(seen.records), detail)

    topic_rows = {
        str(e.event_id): (
            r.partition, r.offset, e.occurred_at, e.product_id, e.warehouse_id, e.old_status,
            e.new_status, e.quantity, e.operation_id,
        )
        for r, e in zip(seen.records, seen.events, strict=True)
    }  # fmt: skip
    differing = [i for i in topic_rows.keys() & seen.log.keys() if topic_rows[i] != seen.log[i]]
    checks(
        "event log = topic",
        bool(topic_rows) and seen.log == topic_rows,
        f"{len(seen.log):,} rows in status_change_log: {len(topic_rows.keys() - seen.log.keys())} of the topic "
        f"missing, {len(seen.log.keys() - topic_rows.keys())} not on the topic, {len(differing)} differing",
    )
    checks(
        "counter = topic = log",
        seen.count == len(seen.events) == len(seen.log),
        f"status_change_count() {seen.count:,}, topic {len(seen.events):,}, log {len(seen.log):,}",
    )


async def check(
    url: str, stack: Stack, store: ServiceProcess, chaos: Chaos, loading: Loading, minutes: float, checks: Checks
) -> None:
    expected_kills = int(minutes * 60 // BRIDGE_KILL_EVERY) - (minutes * 60 % BRIDGE_KILL_EVERY == 0)
    checks(
        "chaos happened",
        chaos.kills == expected_kills and chaos.outages == ["Kafka", "PostgreSQL"],
        f"bridge killed {chaos.kills} times (of {expected_kills}); seen stopped and back: "
        f"{', '.join(chaos.outages) or 'nothing'}",
    )
    checks(
        "load",
        loading.written > 0 and not loading.refused,
        f"{loading.written:,} operations written; {loading.connection_losses} batches lost with the connection "
        f"(outages); refused by the database: {dict(loading.refused) or 'none'}",
    )
    try:
        check_stream(await observe(url, stack.bootstrap), checks)
    except Exception as e:  # a record that does not parse, PostgreSQL or Kafka gone: a failure, reported as one
        checks("topic, log and counter read", False, f"{type(e).__name__}: {e}")

    try:
        verify = subprocess.run(
            [sys.executable, "-m", "db", "verify"],
            env={**stack.env, "DATABASE_URL": url}, cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        lines = (verify.stdout + verify.stderr).strip().splitlines()
        checks("db verify", verify.returncode == 0, " / ".join(lines[:1] + lines[-1:]))
    except subprocess.TimeoutExpired:
        checks("db verify", False, "did not finish within 600 s")
    ended = chaos.exited + [str(p.log) for p in (chaos.bridge, store) if not p.running()]
    checks(
        "services survived",
        not ended,
        f"exited by themselves: {', '.join(ended)}"
        if ended
        else "no bridge ended but by kill -9, consumers.store ran through both outages",
    )


async def soak(minutes: float, loaders: int, rate: float, logs: Path) -> int:
    duration = minutes * 60
    pause = loaders * BATCH / rate  # each loader's pause between batches (the batch's own time comes on top)
    asyncio.get_running_loop().set_exception_handler(quiet_lost_connections)
    checks = Checks()
    with private_stack() as stack:
        say(f"starting a stack of the soak's own (PostgreSQL :{stack.pgport}, Kafka :{stack.kafka_port})")
        stack.stack_sh("start")
        url = stack.database_url
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await conn.execute(AUDIT)
            await ensure_reference_data(conn, PRODUCTS, WAREHOUSES)
        finally:
            await conn.close()

        bridges = Bridges(url, stack.bootstrap, TOPIC, logs)
        store_env = {**bridges.env, "STORE_GROUP": "soak-store", "STORE_START": "earliest"}
        store = ServiceProcess(["consumers.store"], store_env, logs / "store.log", "STORE_METRICS_PORT").start()
        try:
            started = time.monotonic()
            chaos = Chaos(bridges, stack, bridges().start(), started)
            loading = Loading()
            say(
                f"soak: {loaders} loaders for {minutes:g} min at about {rate:,.0f} operations/s; the bridge killed "
                f"every {BRIDGE_KILL_EVERY:.0f} s; Kafka restarted at {0.35 * duration:.0f} s, PostgreSQL at "
                f"{0.65 * duration:.0f} s"
            )
            progress = asyncio.create_task(report_progress(started, url, loading, chaos))
            failures: list[BaseException] = []
            try:
                async with asyncio.TaskGroup() as tg:
                    for i in range(loaders):
                        tg.create_task(loader(i, url, started + duration, pause, loading))
                    tg.create_task(chaos.kill_bridges(started + duration))
                    tg.create_task(chaos.restart_services(duration))
            except* Exception as group:
                failures = list(group.exceptions)
            finally:
                progress.cancel()
            for e in failures:
                say(f"soak FAILED: the chaos itself failed: {type(e).__name__}: {e}")
            if failures:
                return 1
            say(f"load done: {loading.written:,} operations written")

            async def outbox_drained() -> bool:
                db = await asyncpg.connect(url)
                try:
                    return not await db.fetchval("SELECT count(*) FROM status_change_outbox")
                finally:
                    await db.close()

            async def store_caught_up() -> bool:
                db = await asyncpg.connect(url)
                try:
                    stored, produced = await db.fetchval(
                        "SELECT ((SELECT count(*) FROM status_change_log), (SELECT count(*) FROM outbox_audit))"
                    )
                finally:
                    await db.close()
                return bool(stored >= produced)

            await wait_until("the outbox to drain", outbox_drained, lambda: chaos.bridge.running(), CATCH_UP_TIMEOUT)
            await wait_until("the store to catch up", store_caught_up, store.running, CATCH_UP_TIMEOUT)
            say(f"drained {time.monotonic() - started - duration:.0f} s after the load ended; checking")
            await check(url, stack, store, chaos, loading, minutes, checks)
        finally:
            if store.running():
                try:
                    store.terminate()
                except subprocess.TimeoutExpired:
                    store.kill()
            try:
                await bridges.cleanup()
            except Exception as e:  # the result stands; say what was left behind
                say(f"  cleanup: {type(e).__name__}: {e}")
    passed = len(checks.results) - len(checks.failed)
    say(f"soak {'passed' if not checks.failed else 'FAILED'}: {passed} of {len(checks.results)} checks")
    return 1 if checks.failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the loaders write (default 5)")
    parser.add_argument("--loaders", type=int, default=4, help="parallel loaders (default 4)")
    parser.add_argument("--rate", type=float, default=2000.0, help="operations per second, all loaders (default 2000)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.loaders < 1 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive, --loaders at least 1")
    logs = REPO / ".soak" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True)
    say(f"logs: {logs}")
    sys.exit(asyncio.run(soak(args.minutes, args.loaders, args.rate, logs)))


if __name__ == "__main__":
    main()
