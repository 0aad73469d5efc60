"""The example consumers as real processes against a real topic: the logger's lines, the store's exactly-once log
across kill -9, and messages that do not parse."""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.events import StatusChanged
from tests.cli import run_module
from tests.private_stack import free_port
from tests.service_process import ServiceProcess, wait_until
from tests.topic import create_topic, delete_topics, read_topic

pytestmark = pytest.mark.integration
STATUSES = ("available", "running_low", "out_of_stock")


def event(product: int, warehouse: int, old: str, new: str, quantity: int = 5) -> StatusChanged:
    return StatusChanged(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), product_id=product, warehouse_id=warehouse,
        old_status=old, new_status=new, quantity=quantity, operation_id=1, seq=1, cause="receipt", transfer_id=None,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def topic3(kafka_bootstrap: str, topic_name: str) -> AsyncIterator[str]:
    await create_topic(kafka_bootstrap, topic_name, partitions=3)
    yield topic_name
    await delete_topics(kafka_bootstrap, topic_name)


async def publish(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for chunk in range(0, len(values), 1000):
            await asyncio.gather(*(producer.send(topic, v, key=k) for k, v in values[chunk : chunk + 1000]))
    finally:
        await producer.stop()


def consumer(module: str, tmp_path: Path, env: dict[str, str], *args: str) -> ServiceProcess:
    """`python -m consumers.<name>` in a consumer group of this test's own."""
    prefix = module.removeprefix("consumers.").upper()
    full_env = {**os.environ, **env, f"{prefix}_GROUP": f"test-{uuid.uuid4().hex[:8]}"}
    return ServiceProcess([module, *args], full_env, tmp_path / f"{module}.log", f"{prefix}_METRICS_PORT")


async def test_the_logger_prints_each_change_as_the_original_system_did(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic}
    ru = consumer("consumers.logger", tmp_path, env).start()
    en = consumer("consumers.logger", tmp_path / "..", env, "--lang", "en")
    en.log = tmp_path / "en.log"
    en.start()
    try:
        await wait_until(lambda: ru.printed("🛰️ Слушаю изменения статусов..."), "the Russian logger to listen", 30)
        await wait_until(lambda: en.printed("🛰️ Listening for status changes..."), "the English logger to listen", 30)
        changes = [event(3, 5, "running_low", "available"), event(7, 2, "available", "out_of_stock")]
        await publish(kafka_bootstrap, topic, [(e.key, e.value()) for e in changes])
        await wait_until(lambda: ru.printed("товар 7 (склад 2)"), "the Russian lines", 30)
        await wait_until(lambda: en.printed("product 7 (warehouse 2)"), "the English lines", 30)
        assert ru.terminate() == 0 and en.terminate() == 0
    finally:
        for p in (ru, en):
            if p.running():
                p.kill()
    lines = ru.output().splitlines()
    assert "🔔 Статус изменился: товар 3 (склад 5): Заканчивается → Доступен" in lines
    assert "🔔 Статус изменился: товар 7 (склад 2): Доступен → Закончился" in lines
    english = en.output().splitlines()
    assert "🔔 Status changed: product 3 (warehouse 5): Running low → Available" in english
    assert "🔔 Status changed: product 7 (warehouse 2): Available → Out of stock" in english


async def committed_offsets(bootstrap: str, topic: str, group: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (partitions without one left out)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        offsets = {p: await reader.committed(TopicPartition(topic, p)) for p in range(partitions)}
        return {p: o for p, o in offsets.items() if o is not None}
    finally:
        await reader.stop()


async def stored(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM status_change_log"))
    finally:
        await conn.close()


async def test_the_store_keeps_every_event_exactly_once_across_kill_9(
    kafka_bootstrap: str, topic3: str, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    total = 60_000
    changes = [event(1 + i % 500, 1 + i % 7, STATUSES[i % 3], STATUSES[(i + 1) % 3]) for i in range(total)]
    await publish(kafka_bootstrap, topic3, [(e.key, e.value()) for e in changes])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic3, "DATABASE_URL": database_url}
    store = consumer("consumers.store", tmp_path, env)
    store.start()
    try:

        async def some_stored() -> bool:
            assert store.running(), store.output()
            return await stored(database_url) > 0

        await wait_until(some_stored, "the first stored batch")
        # Hold the store inside a batch's INSERT and kill it there, its INSERT too: between reading a batch and
        # storing it. (Asked on another connection: inside a transaction, pg_stat_activity is a snapshot.)
        watcher = await asyncpg.connect(database_url)
        try:
            async with db.transaction():
                await db.execute("LOCK TABLE status_change_log IN ACCESS EXCLUSIVE MODE")
                blocked: list[int] = []

                async def inserting() -> bool:
                    blocked[:] = [r["pid"] for r in await watcher.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%INSERT INTO status_change_log%' AND datname = current_database()"
                    )]  # fmt: skip
                    return bool(blocked)

                await wait_until(inserting, "the store waiting in its INSERT")
                store.kill()
                await watcher.execute("SELECT pg_terminate_backend($1)", blocked[0])
        finally:
            await watcher.close()
        at_kill = await stored(database_url)
        assert 0 < at_kill < total, "the kill landed mid-stream"
        # Nothing the log lacks is committed as consumed: the held batch will be read again.
        last_stored = {r["kafka_partition"]: r["last"] for r in await db.fetch(
            "SELECT kafka_partition, max(kafka_offset) AS last FROM status_change_log GROUP BY 1")}  # fmt: skip
        committed = await committed_offsets(kafka_bootstrap, topic3, store.env["STORE_GROUP"], 3)
        assert committed, "the store committed the batches it stored"
        for partition, offset in committed.items():
            assert offset <= last_stored.get(partition, -1) + 1, (partition, offset, last_stored)

        store.start()  # the same group: it resumes from the committed offsets, replaying what was not committed

        async def all_stored() -> bool:
            assert store.running(), store.output()
            return await stored(database_url) >= total

        await wait_until(all_stored, f"{total} stored events")
        assert store.terminate() == 0
    finally:
        if store.running():
            store.kill()

    records = await read_topic(kafka_bootstrap, topic3)
    on_topic = {json.loads(r.value)["event_id"]: (r.partition, r.offset) for r in records}
    rows = await db.fetch("SELECT event_id::text, kafka_partition, kafka_offset FROM status_change_log")
    assert len(rows) == len(on_topic) == total
    assert {r["event_id"]: (r["kafka_partition"], r["kafka_offset"]) for r in rows} == on_topic
    sample = await db.fetchrow("SELECT * FROM status_change_log WHERE event_id = $1", changes[123].event_id)
    assert sample is not None
    assert (sample["product_id"], sample["warehouse_id"], sample["old_status"], sample["new_status"]) == (
        changes[123].product_id, changes[123].warehouse_id, changes[123].old_status, changes[123].new_status,
    )  # fmt: skip


async def test_a_message_that_does_not_parse_is_skipped_and_reported(
    kafka_bootstrap: str, topic: str, database_url: str, tmp_path: Path
) -> None:
    good = [event(1, 1, "out_of_stock", "running_low"), event(1, 1, "running_low", "available")]
    future = json.loads(good[0].value()) | {"schema_version": 3}
    # Version 1, before seq, cause and transfer_id: still read, and stored without them.
    v1 = {k: v for k, v in json.loads(event(1, 1, "available", "running_low").value()).items()
          if k not in ("seq", "cause", "transfer_id")} | {"schema_version": 1}  # fmt: skip
    huge = json.loads(event(1, 1, "available", "running_low").value()) | {"product_id": 2**70}
    await publish(
        kafka_bootstrap, topic,
        [(good[0].key, good[0].value()), (b"1:1", b"{not json"), (b"1:1", json.dumps(future).encode()),
         (b"1:1", json.dumps(huge).encode()), (good[1].key, good[1].value()), (b"1:1", json.dumps(v1).encode())],
    )  # fmt: skip
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic, "DATABASE_URL": database_url}
    store = consumer("consumers.store", tmp_path, env).start()
    try:

        async def both_stored() -> bool:
            assert store.running(), store.output()
            return await stored(database_url) == 3

        await wait_until(both_stored, "the three good events")
        assert await store.metric("warehouse_store_skipped_messages_total") == 3
        assert await store.metric("warehouse_store_events_total") == 3
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT event_id::text, seq, cause FROM status_change_log")
        finally:
            await conn.close()
        assert {(r["event_id"], r["seq"], r["cause"]) for r in rows} == {
            (str(good[0].event_id), 1, "receipt"),
            (str(good[1].event_id), 1, "receipt"),
            (v1["event_id"], None, None),
        }
    finally:
        store.terminate()
    out = store.output()
    assert "skipped the message at partition 0, offset 1: not JSON" in out
    assert "skipped the message at partition 0, offset 2: schema_version 3; this consumer reads 1 and 2" in out
    assert "skipped the message at partition 0, offset 3: a number out of the 64-bit range" in out


async def test_sigterm_while_postgresql_is_out_of_reach_exits_0_and_commits_nothing(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    change = event(2, 2, "out_of_stock", "available")
    await publish(kafka_bootstrap, topic, [(change.key, change.value())])
    unreachable = f"postgresql://warehouse:warehouse@127.0.0.1:{free_port()}/warehouse"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic, "DATABASE_URL": unreachable}
    store = consumer("consumers.store", tmp_path, env).start()
    try:
        await wait_until(lambda: store.printed("cannot store 1 events"), "the store to retry")
        assert store.terminate(timeout=10) == 0, store.output()
    finally:
        if store.running():
            store.kill()
    assert await committed_offsets(kafka_bootstrap, topic, store.env["STORE_GROUP"], 1) == {}


async def test_replay_moves_a_stopped_group_back_and_the_store_restores_what_its_log_lost(
    kafka_bootstrap: str, topic3: str, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    before = [event(1, i % 4 + 1, "out_of_stock", "running_low") for i in range(300)]
    after = [event(2, i % 4 + 1, "running_low", "available") for i in range(200)]
    await publish(kafka_bootstrap, topic3, [(e.key, e.value()) for e in before])
    await asyncio.sleep(1.1)  # Kafka stamps records in milliseconds: a clear gap between the two halves
    boundary = datetime.now(UTC)
    await asyncio.sleep(1.1)
    await publish(kafka_bootstrap, topic3, [(e.key, e.value()) for e in after])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic3, "DATABASE_URL": database_url}
    store = consumer("consumers.store", tmp_path, env).start()
    group = store.env["STORE_GROUP"]

    async def replay(*args: str) -> tuple[int, str, str]:
        return await run_module("consumers.replay", database_url, "--group", group, *args, **env)

    async def all_stored() -> bool:
        assert store.running(), store.output()
        return await stored(database_url) == 500

    try:
        await wait_until(all_stored, "500 stored events")
        code, _, err = await replay("--from", "earliest")
        assert code == 1 and "has running consumers: stop them first" in err, err  # a running group is not moved
        assert store.terminate() == 0

        # The log loses every row (a restore from an old backup, say); the group is moved back to the boundary.
        await db.execute("DELETE FROM status_change_log")
        code, out, err = await replay("--from", boundary.isoformat(), "--dry-run")
        assert code == 0 and "would move" in out, err
        committed = await committed_offsets(kafka_bootstrap, topic3, group, 3)
        assert sum(committed.values()) == 500, "a dry run moves nothing"
        code, out, err = await replay("--from", boundary.isoformat())
        assert code == 0, err
        assert sum((await committed_offsets(kafka_bootstrap, topic3, group, 3)).values()) == 300

        store.start()

        async def second_half_stored() -> bool:
            assert store.running(), store.output()
            return await stored(database_url) >= 200

        await wait_until(second_half_stored, "the events after the boundary stored again")
        await asyncio.sleep(1)  # nothing more comes
        rows = {r["event_id"] for r in await db.fetch("SELECT event_id FROM status_change_log")}
        assert rows == {e.event_id for e in after}

        # From the beginning: the whole topic again; rows already stored stay once.
        assert store.terminate() == 0
        code, out, err = await replay("--from", "earliest")
        assert code == 0, err
        code, out, err = await replay("--from", boundary.isoformat())  # never forward: unread events stay unread
        assert code == 0 and "stays at 0" in out, out + err
        assert sum((await committed_offsets(kafka_bootstrap, topic3, group, 3)).values()) == 0
        store.start()
        await wait_until(all_stored, "the whole topic stored again")
        assert await db.fetchval("SELECT count(DISTINCT event_id) FROM status_change_log") == 500
        assert store.terminate() == 0
    finally:
        if store.running():
            store.kill()


async def test_replay_refuses_bad_input_with_a_clear_error(
    kafka_bootstrap: str, topic_name: str, database_url: str
) -> None:
    code, _, err = await run_module(
        "consumers.replay", database_url, "--group", "g", "--from", "yesterday", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap
    )
    assert code == 2 and "neither `earliest` nor an ISO 8601 time" in err, err
    code, _, err = await run_module(
        "consumers.replay", database_url, "--group", "g", "--from", "earliest",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic_name,
    )  # fmt: skip
    assert code == 1 and f"topic {topic_name!r} does not exist" in err, err


async def test_readiness_follows_the_partitions_the_group_gives(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """Two loggers of one group on a one-partition topic: the one that holds the partition is ready, the other
    not; when the holder stops, the other gets the partition and becomes ready."""
    env = {
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic,
        "LOGGER_GROUP": f"test-{uuid.uuid4().hex[:8]}",
    }  # fmt: skip
    first = ServiceProcess(["consumers.logger"], env, tmp_path / "first.log", "LOGGER_METRICS_PORT").start()
    second = ServiceProcess(["consumers.logger"], env, tmp_path / "second.log", "LOGGER_METRICS_PORT")
    try:
        await wait_until(lambda: _ready_with(first, [0]), "the first logger to hold partition 0")
        second.start()
        # The group rebalances: one of the two holds partition 0 and is ready, the other holds none and is not.
        await wait_until(lambda: second.printed("rebalance: holds partitions"), "the second logger to join the group")

        async def one_holds_it() -> bool:
            states = sorted([await p.readiness() for p in (first, second)], key=lambda state: state[0])
            return states == [(200, {"partitions": [0], "kafka": True}), (503, {"partitions": [], "kafka": True})]

        await wait_until(one_holds_it, "one logger ready with partition 0, the other not")
        holder, other = (first, second) if (await first.readiness())[0] == 200 else (second, first)
        assert holder.terminate() == 0
        await wait_until(lambda: _ready_with(other, [0]), "the other logger to take partition 0")
        assert other.terminate() == 0
    finally:
        for p in (first, second):
            if p.running():
                p.kill()


async def _ready_with(process: ServiceProcess, partitions: list[int]) -> bool:
    code, detail = await process.readiness()
    return code == 200 and detail == {"partitions": partitions, "kafka": True}


async def test_with_log_format_json_every_log_line_is_json_and_the_changes_stay_as_they_were(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    change = event(3, 5, "running_low", "available")
    await publish(kafka_bootstrap, topic, [(b"3:5", b"{not json"), (change.key, change.value())])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic, "LOG_FORMAT": "json",
           "LOGGER_START": "earliest"}  # fmt: skip
    logger = consumer("consumers.logger", tmp_path, env).start()
    try:
        await wait_until(lambda: logger.printed("товар 3 (склад 5)"), "the change printed")
        assert logger.terminate() == 0
    finally:
        if logger.running():
            logger.kill()
    printed: list[str] = []
    logged: list[str] = []
    for line in logger.output().splitlines():
        (logged if line.startswith("{") else printed).append(line)
    assert printed == [
        "🛰️ Слушаю изменения статусов...",
        "🔔 Статус изменился: товар 3 (склад 5): Заканчивается → Доступен",
    ]
    lines = [json.loads(line) for line in logged]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    skipped = [line for line in lines if line["message"].startswith("skipped the message")]
    assert [(s["level"], s["partition"], s["offset"]) for s in skipped] == [("WARNING", 0, 0)], skipped
