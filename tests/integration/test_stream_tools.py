"""The tools downstream services rely on, as an operator runs them, against real PostgreSQL and real Kafka:
`python -m bridge verify` (the topics reconciled with the database), `python -m bridge snapshot` (the current
state rewritten) and `python -m bridge republish` (an event topic rebuilt from the stored log)."""

import asyncio
import random
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bridge.events import PairState, StatusChanged
from common.settings import stock_status_topic_of
from db.load import ensure_reference_data
from tests.bridge_harness import Bridges, drained, load, wait_for_log
from tests.cli import run_module
from tests.topic import read_topic

pytestmark = pytest.mark.integration


async def verify(database_url: str, kafka_bootstrap: str, topic: str, *args: str) -> tuple[int, str, str]:
    return await run_module(
        "bridge", database_url, "verify", *args, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic
    )


async def plain_send(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    """A record written by a plain (non-transactional) producer: not the bridge."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def loaded_with_bridge_kills(database_url: str, bridges: Bridges) -> None:
    """A parallel load while the bridge is killed with -9 three times; returns once the outbox is drained."""
    conn = await asyncpg.connect(database_url)
    try:
        await ensure_reference_data(conn, 500, 10)
        bridge = bridges().start()
        loading = asyncio.create_task(load(database_url, loaders=4, operations=12_000, batch=100, pause=0.3))
        for _ in range(3):
            await wait_for_log(bridge, "leader:")
            await asyncio.sleep(random.uniform(0.05, 0.6))
            bridge.kill()
            bridge = bridges().start()
        assert not loading.done(), "the load ended before the last kill"
        await loading
        await drained(conn, bridge.running)
    finally:
        await conn.close()


async def test_verify_is_clean_after_a_load_with_bridge_kills_and_finds_a_bogus_record_in_either_topic(
    database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    await loaded_with_bridge_kills(database_url, bridges)
    code, out, err = await verify(database_url, kafka_bootstrap, topic_name, "--events")
    assert code == 0, out + err
    assert "no discrepancies" in out
    assert f"records on {stock_status_topic_of(topic_name)}" in out and "events on" in out
    assert "state topic" in err and "event topic" in err  # progress

    # A state record no bridge wrote: a pair's current seq with another status.
    states = stock_status_topic_of(topic_name)
    latest = {r.key: PairState.model_validate_json(r.value) for r in await read_topic(kafka_bootstrap, states)}
    key, state = next(iter(latest.items()))
    other = "available" if state.status != "available" else "out_of_stock"
    await plain_send(kafka_bootstrap, states, key, state.model_copy(update={"status": other}).value())
    code, out, _ = await verify(database_url, kafka_bootstrap, topic_name)
    assert code == 1, out
    assert "1 discrepancies: 1 state differs" in out
    assert (
        f"state differs: {key.decode()} at seq {state.seq}: {other} on the topic, {state.status} in the database" in out
    )
    await plain_send(kafka_bootstrap, states, key, state.value())  # put right: clean again
    assert (await verify(database_url, kafka_bootstrap, topic_name))[0] == 0

    # An event sent a second time by a plain producer: its seq repeats, its event_id is there twice.
    record = (await read_topic(kafka_bootstrap, topic_name))[-1]
    event = StatusChanged.model_validate_json(record.value)
    await plain_send(kafka_bootstrap, topic_name, record.key, record.value)
    code, out, _ = await verify(database_url, kafka_bootstrap, topic_name, "--events")
    assert code == 1, out
    assert f"seq repeated or backwards: partition {record.partition}" in out
    assert f"{event.key.decode()} seq {event.seq} after {event.seq}" in out
    assert f"event_id twice: {event.event_id}" in out

    # An event for a pair with a seq from the future: a gap, and ahead of the database.
    future = event.model_copy(update={"event_id": uuid.uuid4(), "seq": event.seq + 5, "old_status": event.new_status})
    await plain_send(kafka_bootstrap, topic_name, future.key, future.value())
    code, out, _ = await verify(database_url, kafka_bootstrap, topic_name, "--events", "--show", "50")
    assert code == 1
    assert "seq gap: " in out and f"{event.key.decode()} seq {event.seq + 5} after {event.seq}" in out
    assert f"ahead of the database: {event.key.decode()}: seq {event.seq + 5} on the event topic" in out

    # Not JSON at all.
    await plain_send(kafka_bootstrap, topic_name, b"1:1", b"{oops")
    _, out, _ = await verify(database_url, kafka_bootstrap, topic_name, "--events", "--show", "50")
    assert "not an event: partition" in out


async def test_verify_refuses_a_topic_that_does_not_exist(database_url: str, kafka_bootstrap: str) -> None:
    code, out, err = await verify(database_url, kafka_bootstrap, f"test.{uuid.uuid4().hex[:8]}.none")
    assert code == 2 and "does not exist" in err, out + err
