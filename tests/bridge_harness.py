"""Running the bridge as a real process and checking the topic against what the outbox produced. A test-only
trigger copies every outbox row into `outbox_audit` before the bridge deletes it."""

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bridge.events import EVENT_TYPE, PairState, StatusChanged
from common.settings import stock_status_topic_of
from db.load import OperationGenerator, copy_batch
from tests.service_process import ServiceProcess
from tests.topic import delete_topics, read_topic

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
        await delete_topics(self.bootstrap, self.topic, f"{self.topic}.bridge-state", stock_status_topic_of(self.topic))


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


Produced = dict[str, tuple[int, str]]  # event_id → (outbox id, "product:warehouse"), from outbox_audit


async def audited(db: asyncpg.Connection) -> Produced:
    return {str(r["event_id"]): (r["outbox_id"], r["pair"]) for r in await db.fetch("SELECT * FROM outbox_audit")}


def exactly_once(produced: Produced, events: list[StatusChanged]) -> tuple[bool, str]:
    """Every produced change on the topic once, and nothing else: whether it holds, and the counts."""
    on_topic = [str(e.event_id) for e in events]
    duplicated = len(on_topic) - len(set(on_topic))
    missing, unknown = set(produced) - set(on_topic), set(on_topic) - set(produced)
    return not (duplicated or missing or unknown), (
        f"{len(produced):,} status changes produced, {len(on_topic):,} events on the topic: {len(missing)} "
        f"missing, {duplicated} duplicated, {len(unknown)} never produced"
    )


def numbered_per_pair(records: list[Any], events: list[StatusChanged]) -> tuple[bool, str]:
    """Each pair's events carry seq 1, 2, 3… in offset order, each with its ce_sequence: whether it holds."""
    last: dict[bytes, int] = {}
    wrong = 0
    for record, event in sorted(zip(records, events, strict=True), key=lambda r: (r[0].partition, r[0].offset)):
        wrong += event.seq != last.get(record.key, 0) + 1 or dict(record.headers).get("ce_sequence") != (
            str(event.seq).zfill(20).encode()
        )
        last[record.key] = event.seq
    return not wrong, f"{len(last):,} pairs: {wrong} events whose seq is not the one after their pair's last"


async def states_match(db: asyncpg.Connection, bootstrap: str, topic: str) -> tuple[bool, str]:
    """The current-state topic's last record of each pair has the pair's status and seq as the database has them
    (every pair that ever changed; the outbox drained)."""
    latest = {r.key.decode(): PairState.model_validate_json(r.value) for r in await read_topic(bootstrap, topic)}
    rows = await db.fetch(
        "SELECT product_id || ':' || warehouse_id AS key, status, seq FROM stock_status_seq WHERE seq > 0"
    )
    expected = {r["key"]: (r["status"], r["seq"]) for r in rows}
    found = {key: (s.status, s.seq) for key, s in latest.items()}
    wrong = sum(found.get(key) != value for key, value in expected.items()) + len(set(found) - set(expected))
    return not wrong, f"{len(expected):,} pairs changed, {len(found):,} on the state topic: {wrong} differ"


def in_order_per_pair(produced: Produced, records: list[Any], events: list[StatusChanged]) -> tuple[bool, str]:
    """Each pair's changes in one partition, in outbox order, under the pair's key, with the event's CloudEvents
    id and type: whether it holds, and the counts."""
    by_pair: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # the pair the outbox recorded
    wrong_key = wrong_headers = 0
    for record, event in zip(records, events, strict=True):
        outbox_id, pair = produced.get(str(event.event_id), (-1, "?"))
        wrong_key += record.key != pair.encode() or pair != f"{event.product_id}:{event.warehouse_id}"
        headers = dict(record.headers)
        wrong_headers += headers.get("ce_id") != str(event.event_id).encode() or headers.get("ce_type") != (
            EVENT_TYPE.encode()
        )
        by_pair[pair].append((record.partition, record.offset, outbox_id))
    spread = [pair for pair, seen in by_pair.items() if len({partition for partition, _, _ in seen}) > 1]
    disordered = [
        pair for pair, seen in by_pair.items() if [o for _, _, o in sorted(seen)] != sorted(o for _, _, o in seen)
    ]
    return not (spread or disordered or wrong_key or wrong_headers), (
        f"{len(by_pair):,} pairs: {len(spread)} spread over partitions, {len(disordered)} out of order; "
        f"{wrong_key} records with a key other than their pair, {wrong_headers} with a ce_id or ce_type other than "
        "their event's"
    )


async def assert_published_exactly_once(db: asyncpg.Connection, bootstrap: str, topic: str) -> int:
    """Every produced change on the topic once, with its contract, in outbox order per pair; returns the count."""
    produced = await audited(db)
    records = await read_topic(bootstrap, topic)
    events = [StatusChanged.model_validate_json(r.value) for r in records]
    for holds, detail in (
        exactly_once(produced, events),
        in_order_per_pair(produced, records, events),
        numbered_per_pair(records, events),
        await states_match(db, bootstrap, stock_status_topic_of(topic)),
    ):
        assert holds, detail
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
