"""The bridge as a real process between real PostgreSQL and real Kafka: every status change on the topic exactly
once, in order per pair, whatever happens to the bridge. A test-only trigger copies every outbox row into
`outbox_audit` before the bridge deletes it, so the topic can be compared with what was produced."""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bridge.events import EVENT_TYPE, StatusChanged
from db.load import OperationGenerator, copy_batch, ensure_reference_data
from tests.topic import read_topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AUDIT = """
CREATE TABLE outbox_audit (outbox_id bigint PRIMARY KEY, event_id uuid NOT NULL UNIQUE, pair text NOT NULL);
CREATE FUNCTION audit_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_audit SELECT id, event_id, product_id || ':' || warehouse_id FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_outbox AFTER INSERT ON status_change_outbox REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_outbox();
"""


class Bridge:
    """`python -m bridge` in a process of its own, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Bridge":
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge"], env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def audited_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await conn.execute(AUDIT)
    await ensure_reference_data(conn, 500, 10)
    yield conn
    await conn.close()


@pytest.fixture
async def bridges(
    database_url: str, kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Bridge]]:
    """Makes bridges for this test's database and topic; kills what is left and deletes the topics after."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic_name,
        "BRIDGE_POLL_INTERVAL": "0.5",
    }
    made: list[Bridge] = []

    def make() -> Bridge:
        made.append(Bridge(env, tmp_path / f"bridge-{len(made)}.log"))
        return made[-1]

    yield make
    for bridge in made:
        if bridge.running():
            bridge.kill()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic_name, f"{topic_name}.bridge-state"])
    finally:
        await admin.close()


async def load(url: str, loaders: int, operations: int, batch: int, pause: float = 0.0, products: int = 50) -> None:
    """`operations` receipts and shipments over `products` products x 5 warehouses, COPYed by parallel loaders
    with `pause` seconds between batches."""

    async def loader(i: int) -> None:
        conn = await asyncpg.connect(url)
        gen = OperationGenerator(random.Random(i), products, 5)
        try:
            for _ in range(operations // loaders // batch):
                payload, gen.shares = gen.batch(batch)
                await copy_batch(conn, "warehouse_operations", payload)
                await asyncio.sleep(pause)
        finally:
            await conn.close()

    await asyncio.gather(*(loader(i) for i in range(loaders)))


async def drained(db: asyncpg.Connection, bridge_alive: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await db.fetchval("SELECT count(*) FROM status_change_outbox"):
        assert bridge_alive(), "the bridge exited"
        assert time.monotonic() < deadline, "the outbox was not drained"
        await asyncio.sleep(0.2)


async def assert_published_exactly_once(db: asyncpg.Connection, bootstrap: str, topic: str) -> int:
    """Every produced change on the topic once, with its contract, in outbox order per pair; returns the count."""
    produced = {str(r["event_id"]): (r["outbox_id"], r["pair"]) for r in await db.fetch("SELECT * FROM outbox_audit")}
    records = await read_topic(bootstrap, topic)
    on_topic = [json.loads(r.value)["event_id"] for r in records]
    assert len(on_topic) == len(set(on_topic)), "an event is on the topic more than once"
    assert set(on_topic) == set(produced), "the topic and the outbox hold different events"

    order: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for record in records:
        event = StatusChanged.model_validate_json(record.value)
        headers = dict(record.headers)
        assert headers["ce_id"].decode() == str(event.event_id)
        assert headers["ce_type"].decode() == EVENT_TYPE
        assert record.key.decode() == produced[str(event.event_id)][1] == f"{event.product_id}:{event.warehouse_id}"
        order[record.key.decode()].append((record.partition, record.offset, produced[str(event.event_id)][0]))
    for pair, seen in order.items():
        assert len({partition for partition, _, _ in seen}) == 1, f"pair {pair} is spread over partitions"
        outbox_ids = [outbox_id for _, _, outbox_id in sorted(seen)]
        assert outbox_ids == sorted(outbox_ids), f"pair {pair}'s changes are out of order on the topic"
    assert await db.fetchval("SELECT status_change_count()") == len(produced)
    return len(produced)


async def test_changes_reach_the_topic_once_in_order_and_sigterm_exits_0(
    audited_db: asyncpg.Connection, database_url: str, bridges: Callable[[], Bridge], kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    bridge = bridges().start()
    await load(database_url, loaders=2, operations=4000, batch=200)
    await drained(audited_db, bridge.running)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) > 500
    assert bridge.terminate() == 0, bridge.output()


async def test_kill_9_at_random_moments_during_a_parallel_load_loses_and_doubles_nothing(
    audited_db: asyncpg.Connection, database_url: str, bridges: Callable[[], Bridge], kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    bridge = bridges().start()
    loading = asyncio.create_task(load(database_url, loaders=4, operations=20_000, batch=100, pause=0.1))
    rng = random.Random()
    for _ in range(5):
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        bridge.kill()
        bridge = bridges().start()
    assert not loading.done(), "the load ended before the last kill"
    await loading
    await drained(audited_db, bridge.running)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) > 500


async def test_a_backlog_built_while_no_bridge_runs_is_drained_at_start(
    audited_db: asyncpg.Connection, database_url: str, bridges: Callable[[], Bridge], kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    await load(database_url, loaders=4, operations=50_000, batch=1000, products=500)
    backlog = await audited_db.fetchval("SELECT count(*) FROM status_change_outbox")
    assert backlog > 3000
    bridge = bridges().start()
    await drained(audited_db, bridge.running, timeout=120)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == backlog


async def test_a_rolled_back_operation_produces_no_event(
    audited_db: asyncpg.Connection, bridges: Callable[[], Bridge], kafka_bootstrap: str, topic_name: str
) -> None:
    bridge = bridges().start()
    insert = "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES ($1, 1, 5)"
    await audited_db.execute(insert, 1)
    rolled_back = audited_db.transaction()
    await rolled_back.start()
    await audited_db.execute(insert, 2)
    await rolled_back.rollback()
    await audited_db.execute(insert, 3)
    await drained(audited_db, bridge.running)
    records = await read_topic(kafka_bootstrap, topic_name)
    assert sorted(r.key for r in records) == [b"1:1", b"3:1"]  # partitions have no order among them
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == 2


async def wait_for_log(bridge: Bridge, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in bridge.output():
        assert bridge.running(), bridge.output()
        assert time.monotonic() < deadline, f"{text!r} not in the bridge's log:\n{bridge.output()}"
        await asyncio.sleep(0.1)


async def test_one_of_two_bridges_publishes_and_the_standby_takes_over_when_it_dies(
    audited_db: asyncpg.Connection, bridges: Callable[[], Bridge], kafka_bootstrap: str, topic_name: str
) -> None:
    first = bridges().start()
    await wait_for_log(first, "leader:")
    second = bridges().start()
    await wait_for_log(second, "standby:")
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5)")
    await drained(audited_db, first.running)
    assert "leader:" not in second.output()

    first.kill()
    killed = time.monotonic()
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (2, 1, 5)")
    await drained(audited_db, second.running)
    taken_over = time.monotonic() - killed
    assert "leader:" in second.output()
    assert taken_over < 5, f"the standby took {taken_over:.1f} s to publish"
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == 2


async def test_a_crash_between_the_kafka_commit_and_the_outbox_delete_is_recovered_without_duplicates(
    audited_db: asyncpg.Connection, database_url: str, bridges: Callable[[], Bridge], kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    await load(database_url, loaders=1, operations=500, batch=100)
    produced = await audited_db.fetchval("SELECT count(*) FROM outbox_audit")
    # Hold the outbox against deletion (reads still pass): the bridge publishes and commits, then waits on its
    # DELETE, and dies there.
    holder = await asyncpg.connect(database_url)
    hold = holder.transaction()
    await hold.start()
    await holder.execute("LOCK TABLE status_change_outbox IN EXCLUSIVE MODE")
    first = bridges().start()
    deadline = time.monotonic() + 30
    while len(await read_topic(kafka_bootstrap, topic_name)) < min(produced, 1000):
        assert first.running() and time.monotonic() < deadline, first.output()
        await asyncio.sleep(0.2)
    first.kill()
    await hold.rollback()
    await holder.close()
    assert await audited_db.fetchval("SELECT count(*) FROM status_change_outbox") == produced

    second = bridges().start()
    await drained(audited_db, second.running)
    assert f"recovered: the last committed batch held {min(produced, 1000)} outbox rows" in second.output()
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == produced
