"""Kafka's readers through a Kafka outage, on a stack of this module's own (stopping the shared one would break the
other tests): a consumer is not ready while the broker is away, ready again once it is back, and still reading; the
API's live feed says so once each way."""

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from api.auth import Role, create_key
from bridge.events import StatusChanged
from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.private_stack import Stack, free_port
from tests.service_process import ServiceProcess, wait_until
from tests.topic import create_topic

pytestmark = pytest.mark.e2e


async def test_a_consumer_is_not_ready_while_kafka_is_away_and_ready_again_after(
    outage_stack: Stack, tmp_path: Path
) -> None:
    topic = f"outage.{uuid.uuid4().hex[:8]}.status-changes"
    await create_topic(outage_stack.bootstrap, topic, partitions=2)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": outage_stack.bootstrap, "KAFKA_TOPIC": topic,
           "LOGGER_GROUP": "outage-logger", "LOGGER_START": "earliest"}  # fmt: skip
    logger = ServiceProcess(["consumers.logger"], env, tmp_path / "logger.log", "LOGGER_METRICS_PORT").start()

    async def ready() -> bool:
        return await logger.readiness() == (200, {"partitions": [0, 1], "kafka": True})

    async def not_ready() -> bool:
        code, detail = await logger.readiness()
        return code == 503 and detail["kafka"] is False

    try:
        await wait_until(ready, "the logger to be ready", 60)
        await asyncio.to_thread(outage_stack.stack_sh, "stop", "kafka")
        await wait_until(not_ready, "the logger to say it is not ready", 30)
        await asyncio.to_thread(outage_stack.stack_sh, "start")
        await wait_until(ready, "the logger to be ready again", 90)
        # …and it reads what is published after the outage.
        event = StatusChanged.model_validate(
            {"event_id": str(uuid.uuid4()), "occurred_at": "2026-12-03T10:00:00Z", "product_id": 41,
             "warehouse_id": 2, "old_status": "available", "new_status": "running_low", "quantity": 3,
             "operation_id": 9, "seq": 1, "cause": "receipt", "transfer_id": None}
        )  # fmt: skip
        await publish(outage_stack.bootstrap, topic, event)

        await wait_until(lambda: logger.printed("товар 41 (склад 2)"), "the logger to print the change", 30)
        assert logger.terminate() == 0
    finally:
        if logger.running():
            logger.kill()
    out = logger.output()
    # A line when Kafka went away and one when it came back (a broker that flaps while it stops or starts may
    # give another pair), not one per attempt: it was asked every 2 s of the outage.
    lost, back = out.count("lost Kafka"), out.count("Kafka answers again")
    assert 1 <= lost <= 2 and back == lost and out.index("lost Kafka") < out.index("Kafka answers again"), out


async def publish(bootstrap: str, topic: str, event: StatusChanged) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.value(), key=event.key)
    finally:
        await producer.stop()


async def test_the_api_live_feed_says_once_that_kafka_is_lost_and_once_that_it_is_back(
    outage_stack: Stack, tmp_path: Path
) -> None:
    topic = f"outage.{uuid.uuid4().hex[:8]}.status-changes"
    await create_topic(outage_stack.bootstrap, topic)
    name = await create_database(outage_stack.database_url, "wt_live")
    url = with_database(outage_stack.database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        key, _ = await create_key(conn, "viewer", Role.viewer)
    finally:
        await conn.close()
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": outage_stack.bootstrap, "KAFKA_TOPIC": topic,
           "API_HOST": "127.0.0.1", "API_METRICS_PORT": str(free_port())}  # fmt: skip
    api = ServiceProcess(["api"], env, tmp_path / "api.log", "API_PORT").start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.metrics_port}", timeout=60) as client:
            await wait_until(lambda: answers(client), "the API to start", 30)
            async with client.stream("GET", f"/status-changes/stream?access_token={key}") as stream:
                assert stream.status_code == 200
                await wait_until(lambda: api.printed("live feed: reading"), "the live feed to read", 30)
                await asyncio.to_thread(outage_stack.stack_sh, "stop", "kafka")
                await wait_until(lambda: api.printed("live feed: lost Kafka"), "the feed to say Kafka is lost", 30)
                await asyncio.sleep(10)  # an outage of some length: a line per attempt would show
                await asyncio.to_thread(outage_stack.stack_sh, "start")
                await wait_until(
                    lambda: api.printed("live feed: Kafka answers again"), "the feed to say it is back", 60
                )
        assert api.terminate() == 0
    finally:
        if api.running():
            api.kill()
        await drop_database(outage_stack.database_url, name)
    out = api.output()
    assert out.count("live feed: lost Kafka") == 1 and out.count("live feed: Kafka answers again") == 1, out
    assert "aiokafka" not in out, out  # before: an ERROR line per retry, ~40 a second


async def answers(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
