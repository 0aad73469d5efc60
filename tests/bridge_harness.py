"""Running the bridge as a real process and checking the topic against what the outbox produced. A test-only
trigger copies every outbox row into `outbox_audit` before the bridge deletes it."""

import asyncio
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bridge.events import EVENT_TYPE, StatusChanged
from db.load import OperationGenerator, copy_batch
from tests.service_process import ServiceProcess
from tests.topic import read_topic

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


class Bridge(ServiceProcess):
    """`python -m bridge` in a process of its own, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["bridge"], env, log, "BRIDGE_METRICS_PORT")


class Bridges:
    """Makes bridges on one database and topic; `cleanup` kills what is left and deletes the topics."""

    def __init__(self, database_url: str, bootstrap: str, topic: str, logs: Path) -> None:
        self.bootstrap, self.topic, self.logs = bootstrap, topic, logs
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic,
            "BRIDGE_POLL_INTERVAL": "0.5",
        }
        self.made: list[Bridge] = []

    def __call__(self) -> Bridge:
        self.made.append(Bridge(self.env, self.logs / f"bridge-{len(self.made)}.log"))
        return self.made[-1]

    async def cleanup(self) -> None:
        for bridge in self.made:
            if bridge.running():
                bridge.kill()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([self.topic, f"{self.topic}.bridge-state"])
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


async def wait_for_log(bridge: Bridge, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in bridge.output():
        assert bridge.running(), bridge.output()
        assert time.monotonic() < deadline, f"{text!r} not in the bridge's log:\n{bridge.output()}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def outbox_deletions_held(url: str) -> AsyncIterator[asyncpg.Connection]:
    """Holds the outbox against deletion (reads still pass) until the block ends; yields the holding connection,
    which is inside the holding transaction."""
    holder = await asyncpg.connect(url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE status_change_outbox IN EXCLUSIVE MODE")
            yield holder  # the block's end ends the transaction (it changed nothing) and so the lock
    finally:
        await holder.close()


async def wait_for_records(bootstrap: str, topic: str, count: int, bridge: Bridge, timeout: float = 30) -> None:
    """Until the topic holds `count` committed records (the bridge must stay up meanwhile)."""
    deadline = time.monotonic() + timeout
    while len(await read_topic(bootstrap, topic)) < count:
        assert bridge.running() and time.monotonic() < deadline, bridge.output()
        await asyncio.sleep(0.2)
