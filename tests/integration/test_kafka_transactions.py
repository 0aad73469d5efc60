"""The broker supports what the bridge relies on: transactions on one node, read_committed isolation."""

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.integration


async def read_all(bootstrap: str, topic: str, isolation_level: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # Read until the end offsets seen now; read_committed stops at the last stable offset.
        partitions = consumer.assignment() or set()
        while not partitions:
            await consumer.getmany(timeout_ms=100)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        values: list[bytes] = []
        while [tp for tp, offset in end.items() if await consumer.position(tp) < offset]:
            batches = await consumer.getmany(timeout_ms=1000)
            values += [m.value for messages in batches.values() for m in messages]
        return values
    finally:
        await consumer.stop()


async def test_committed_transaction_is_read_and_aborted_one_is_not(kafka_bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"test-{uuid.uuid4()}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"first, committed")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"second, aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"third, committed")
    finally:
        await producer.stop()

    assert await read_all(kafka_bootstrap, topic, "read_committed") == [
        b"first, committed",
        b"third, committed",
    ]
    # The aborted message did reach the log: only the isolation level hides it.
    assert b"second, aborted" in await read_all(kafka_bootstrap, topic, "read_uncommitted")
