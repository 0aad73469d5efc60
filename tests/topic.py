"""Test topics: made and deleted, and read to their end as a consumer would."""

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def read_topic(bootstrap: str, topic: str, isolation_level: str = "read_committed") -> list[Any]:
    """Every record of every partition up to the end offsets seen now (for read_committed: the last stable
    offset), in offset order per partition."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await consumer.getmany(timeout_ms=100)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        records: list[Any] = []
        while [tp for tp, offset in end.items() if await consumer.position(tp) < offset]:
            batches = await consumer.getmany(timeout_ms=1000)
            records += [m for messages in batches.values() for m in messages]
        return records
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()
