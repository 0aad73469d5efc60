"""The bridge through outages of Kafka and PostgreSQL, on a stack of this module's own (stopping the shared one
would break the other tests): it keeps running, resumes when the service is back, and the topic ends up
holding every change exactly once."""

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from db.load import ensure_reference_data
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.bridge_harness import AUDIT, Bridges, assert_published_exactly_once, drained, load, wait_for_log
from tests.cli import run_module
from tests.private_stack import REPO, Stack
from tests.topic import read_topic

pytestmark = pytest.mark.e2e


@pytest.fixture
async def outage_db(outage_stack: Stack) -> AsyncIterator[str]:
    name = await create_database(outage_stack.database_url, "wt_outage")
    url = with_database(outage_stack.database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(AUDIT)
        await ensure_reference_data(conn, 500, 10)
    finally:
        await conn.close()
    yield url
    await drop_database(outage_stack.database_url, name)


@pytest.fixture
async def bridges(outage_stack: Stack, outage_db: str, tmp_path: Path) -> AsyncIterator[Bridges]:
    made = Bridges(outage_db, outage_stack.bootstrap, "outage.status-changes", tmp_path)
    yield made
    await made.cleanup()


async def first_event_of(bootstrap: str, topic: str, key: bytes, timeout: float) -> float:
    """Seconds until an event with this key is on the topic (read_committed)."""
    started = time.monotonic()
    while key not in {r.key for r in await read_topic(bootstrap, topic)}:
        assert time.monotonic() - started < timeout, f"no event for {key!r} within {timeout} s"
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def test_kafka_stopped_for_15_s_mid_stream(outage_stack: Stack, outage_db: str, bridges: Bridges) -> None:
    bridge = bridges().start()
    await wait_for_log(bridge, "leader:")
    loading = asyncio.create_task(load(outage_db, loaders=2, operations=10_000, batch=100, pause=0.1))
    await asyncio.sleep(1.5)
    await asyncio.to_thread(outage_stack.stack_sh, "stop", "kafka")
    await asyncio.sleep(15)
    await asyncio.to_thread(outage_stack.stack_sh, "start")
    db = await asyncpg.connect(outage_db)
    try:
        # Kafka is back: a change made now is published within 10 s (the backlog of the outage goes first).
        await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (499, 9, 5)")
        resumed = await first_event_of(outage_stack.bootstrap, bridges.topic, b"499:9", timeout=60)
        assert resumed < 10, f"published again only {resumed:.1f} s after Kafka was back"
        await loading
        await drained(db, bridge.running)
        assert bridge.running(), "the bridge exited during the outage"
        assert await assert_published_exactly_once(db, outage_stack.bootstrap, bridges.topic) > 500
    finally:
        await db.close()
    # A line when Kafka went away (a few if the way it failed changed), not one per retry (ten a second).
    assert 1 <= bridge.output().count("Kafka unavailable") <= 3, bridge.output()
    assert bridge.terminate() == 0


async def test_postgresql_restarted_mid_stream(outage_stack: Stack, outage_db: str, bridges: Bridges) -> None:
    await load(outage_db, loaders=2, operations=20_000, batch=500, products=500)
    bridges.env["BRIDGE_BATCH_SIZE"] = "10"  # a slow drain, so the restart lands in the middle of it
    bridge = bridges().start()
    await wait_for_log(bridge, "leader:")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(outage_stack.stack_sh, "stop", "postgres")
    await asyncio.sleep(3)
    await asyncio.to_thread(outage_stack.stack_sh, "start")
    await load(outage_db, loaders=2, operations=2_000, batch=100, products=500)
    db = await asyncpg.connect(outage_db)
    try:
        await drained(db, bridge.running, timeout=120)
        assert bridge.running(), "the bridge exited during the restart"
        assert await assert_published_exactly_once(db, outage_stack.bootstrap, bridges.topic) > 1000
    finally:
        await db.close()
    assert 1 <= bridge.output().count("PostgreSQL unavailable") <= 3, bridge.output()
    assert bridge.terminate() == 0


async def test_the_load_script_rides_out_a_postgresql_restart(outage_stack: Stack, outage_db: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "db", "load", "--operations", "1000000", "--workers", "2", "--batch", "200",
        "--products", "500", "--quiet",
        env={**os.environ, "DATABASE_URL": outage_db}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    db = await asyncpg.connect(outage_db)
    try:
        while not await db.fetchval("SELECT count(*) > 50000 FROM warehouse_operations"):
            assert proc.returncode is None, "the load ended before the restart"
            await asyncio.sleep(0.1)
    finally:
        await db.close()
    await asyncio.to_thread(outage_stack.stack_sh, "stop", "postgres")
    await asyncio.sleep(3)
    await asyncio.to_thread(outage_stack.stack_sh, "start")
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "connection to PostgreSQL" in err.decode() and "lost; reconnecting" in err.decode()
    summary = out.decode()
    assert "connections lost and re-made: " in summary and "rejected operations: 0" in summary, summary
    written = int(re.search(r"operations written: ([\d,]+)", summary)[1].replace(",", ""))  # type: ignore[index]
    in_flight = int(re.search(r"; ([\d,]+) operations were in flight", summary)[1].replace(",", ""))  # type: ignore[index]
    assert written + in_flight == 1_000_000 and 0 < in_flight <= 2 * 200
    db = await asyncpg.connect(outage_db)
    try:
        stored = await db.fetchval("SELECT count(*) FROM warehouse_operations")
    finally:
        await db.close()
    assert written <= stored <= written + in_flight
    code, verified, _ = await run_module("db", outage_db, "verify")
    assert code == 0, verified
