"""The state topic and the recovery. Each Kafka transaction of the bridge also writes a state record naming the
outbox rows of its batch. A new leader reads the last committed record (read_committed) and deletes the rows it
names: they were published just before a crash, and not yet deleted. (A crash before a commit needs nothing: the
transaction is aborted and its rows are still in the outbox, to be sent again.)"""

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.config import BridgeSettings
from bridge.errors import KafkaStalled
from db.queries import queries

log = logging.getLogger(__name__)


def state_record(ids: Sequence[int], event_ids: Sequence[str]) -> bytes:
    """Which outbox rows a committed batch held: ids and event ids, so that a database restored or recreated
    under a surviving state topic (ids used again) never has unpublished rows deleted by the recovery."""
    return json.dumps({"outbox_ids": list(ids), "event_ids": list(event_ids)}, separators=(",", ":")).encode()


async def recover(work: asyncpg.Connection, settings: BridgeSettings) -> None:
    """Deletes the outbox rows of the last committed batch, if they are still there."""
    ids, event_ids = await last_committed_batch(settings)
    if ids:
        deleted = await work.execute(queries("bridge")["delete_recovered"], ids, event_ids)
        log.info(
            "recovered: the last committed batch held %d outbox rows; %s", len(ids), deleted, extra={"events": len(ids)}
        )


async def last_committed_batch(settings: BridgeSettings) -> tuple[list[int], list[str]]:
    """The outbox ids and event ids of this deployment's last committed batch, from the state topic
    (read_committed)."""
    record = await last_record(
        settings.kafka_bootstrap_servers, settings.bridge_state_topic, settings.bridge_transactional_id.encode(),
        settings.bridge_transaction_timeout,
    )  # fmt: skip
    return (record["outbox_ids"], record["event_ids"]) if record else ([], [])


async def last_record(bootstrap: str, topic: str, key: bytes, timeout: float) -> Any:
    """The JSON value of the last committed record with `key` in partition 0 of `topic`, or None."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        back = 16  # each transaction adds a record and a commit marker; read further back until ours is found
        while True:
            start = max(0, end - back)
            consumer.seek(tp, start)
            last = None
            deadline = asyncio.get_running_loop().time() + timeout
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise KafkaStalled(f"reading {topic} did not reach its end")
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if message.key == key and message.value is not None:
                        last = message
            if last is not None:
                return json.loads(last.value)
            if start == 0:
                return None
            back *= 8
    finally:
        await consumer.stop()
