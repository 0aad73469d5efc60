"""The broker supports what the bridge relies on: transactions on one node, read_committed isolation."""

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.topic import read_topic

pytestmark = pytest.mark.integration


async def read_all(bootstrap: str, topic: str, isolation_level: str) -> list[bytes]:
    return [record.value for record in await read_topic(bootstrap, topic, isolation_level)]


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
