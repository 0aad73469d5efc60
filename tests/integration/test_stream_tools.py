"""The tools downstream services rely on, as an operator runs them, against real PostgreSQL and real Kafka:
`python -m bridge verify` (the topics reconciled with the database), `python -m bridge snapshot` (the current
state rewritten) and `python -m bridge republish` (an event topic rebuilt from the stored log)."""

import asyncio
import os
import random
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bridge.events import PairState, StatusChanged
from common.kafka import end_offsets
from common.settings import stock_status_topic_of
from db.load import ensure_reference_data
from tests.bridge_harness import Bridges, drained, load, wait_for_log
from tests.cli import run_module
from tests.service_process import ServiceProcess, wait_until
from tests.topic import create_topic, delete_topics, read_topic

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


async def test_a_snapshot_during_a_load_rebuilds_a_lost_state_topic_and_pairs_that_never_changed(
    database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    await loaded_with_bridge_kills(database_url, bridges)
    states = stock_status_topic_of(topic_name)
    conn = await asyncpg.connect(database_url)
    try:
        # Pairs with a balance row but no change ever (a count of 0 on a pair never stocked): on no topic yet.
        await conn.execute("SELECT adjust_stock(p, 9, 0) FROM generate_series(1, 20) p")
        for bridge in bridges.made:
            if bridge.running():
                assert bridge.terminate() == 0
        await delete_topics(kafka_bootstrap, states)  # the state topic is lost
        bridge = bridges().start()
        await wait_for_log(bridge, "leader:")
        code, out, _ = await verify(database_url, kafka_bootstrap, topic_name)
        assert code == 1 and "missing state" in out

        loading = asyncio.create_task(load(database_url, loaders=2, operations=6000, batch=50, pause=0.2))
        code, _, err = await run_module(
            "bridge", database_url, "snapshot", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic_name
        )
        assert code == 0, err
        pairs = await conn.fetchval("SELECT count(*) FROM stock_balance")
        assert f"snapshot of {pairs:,} pairs into {states} requested" in err and "snapshot: wrote" in err
        assert not loading.done(), "the snapshot ran after the load, not during it"
        await loading
        await drained(conn, bridge.running)
    finally:
        await conn.close()
    code, out, err = await verify(database_url, kafka_bootstrap, topic_name, "--events")
    assert code == 0, out + err
    latest = {r.key: PairState.model_validate_json(r.value) for r in await read_topic(kafka_bootstrap, states)}
    never_changed = [latest[f"{p}:9".encode()] for p in range(1, 21)]
    assert {(s.seq, s.status, s.quantity, s.event_id) for s in never_changed} == {(0, "out_of_stock", 0, None)}
    assert "snapshot: wrote" in bridge.output()


async def test_a_snapshot_requested_behind_a_backlog_is_written_between_its_batches(
    database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await ensure_reference_data(conn, 50, 5)
        await load(database_url, loaders=2, operations=60_000, batch=1000)  # with no bridge: a backlog
        backlog = await conn.fetchval("SELECT count(*) FROM status_change_outbox")
        bridges.env["BRIDGE_BATCH_SIZE"] = "5"  # full batches, one after the other, for many seconds
        bridge = bridges().start()
        await wait_for_log(bridge, "leader:")
        code, _, err = await run_module(
            "bridge", database_url, "snapshot", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic_name
        )
        assert code == 0, err
        left = await conn.fetchval("SELECT count(*) FROM status_change_outbox")
        assert left > backlog // 4, f"the snapshot waited for the backlog: {left:,} of {backlog:,} changes left"
        await drained(conn, bridge.running, timeout=180)
    finally:
        await conn.close()
    code, out, err = await verify(database_url, kafka_bootstrap, topic_name, "--events")
    assert code == 0, out + err


async def test_a_snapshot_waits_for_a_bridge_and_says_so(
    database_url: str, kafka_bootstrap: str, topic_name: str
) -> None:
    code, _, err = await asyncio.wait_for(
        run_module("bridge", database_url, "snapshot", "--no-wait", KAFKA_TOPIC=topic_name), 30
    )
    assert code == 0 and "requested of the bridge" in err
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "snapshot",
        env={**os.environ, "DATABASE_URL": database_url, "KAFKA_TOPIC": topic_name},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = b""
    while b"no bridge leads" not in seen:
        line = await asyncio.wait_for(proc.stderr.readline(), 15)
        assert line, f"snapshot ended without saying that no bridge leads: {seen!r}"
        seen += line
    proc.terminate()
    await proc.wait()


async def test_the_mirror_started_mid_load_and_through_a_bridge_kill_ends_equal_to_every_balance(
    database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    await ensure_reference_data(conn, 500, 10)
    bridge = bridges().start()
    loading = asyncio.create_task(load(database_url, loaders=4, operations=16_000, batch=100, pause=0.3))
    env = {**bridges.env, "DATABASE_URL": database_url}
    mirror = ServiceProcess(["consumers.mirror"], env, tmp_path / "mirror.log", "MIRROR_METRICS_PORT")
    try:
        await asyncio.sleep(2)  # the topics hold a few thousand changes by now
        mirror.start()
        await wait_for_log(bridge, "leader:")
        await asyncio.sleep(random.uniform(0.5, 1.5))
        bridge.kill()
        bridge = bridges().start()
        assert not loading.done(), "the load ended before the mirror started and the bridge was killed"
        await loading
        await drained(conn, bridge.running)

        async def equal() -> bool:
            assert mirror.running(), mirror.output()
            differ = await conn.fetchval(
                "SELECT count(*) FROM (SELECT product_id, warehouse_id, status, seq FROM stock_status_seq WHERE seq > 0"
                " EXCEPT SELECT product_id, warehouse_id, status, seq FROM stock_status_mirror) d"
            )
            return bool(differ == 0)

        await wait_until(equal, "the mirror to equal every balance", 60)
        extra = await conn.fetchval(
            "SELECT count(*) FROM stock_status_mirror m LEFT JOIN stock_status_seq s USING (product_id, warehouse_id)"
            " WHERE s.seq IS DISTINCT FROM m.seq OR s.status IS DISTINCT FROM m.status"
        )
        assert extra == 0
        changed = await conn.fetchval("SELECT count(*) FROM stock_status_seq WHERE seq > 0")
        assert await conn.fetchval("SELECT count(*) FROM stock_status_mirror") == changed > 100
        assert await mirror.metric("warehouse_mirror_gaps_total") == 0
        assert await mirror.metric("warehouse_mirror_states_total") > 0, "it started from states, not from nothing"
        assert await mirror.metric("warehouse_mirror_events_total") > 0, "it followed changes after the states"
        assert (await mirror.get("/readyz")).status_code == 200
        assert mirror.terminate() == 0, mirror.output()
    finally:
        if mirror.running():
            mirror.kill()
        await conn.close()


async def test_a_deleted_topic_is_republished_from_the_stored_log_exactly_once_across_a_kill(
    database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    env = {**bridges.env, "DATABASE_URL": database_url}
    store = ServiceProcess(["consumers.store"], {**env, "STORE_GROUP": f"test-{uuid.uuid4().hex[:8]}"},
                           tmp_path / "store.log", "STORE_METRICS_PORT").start()  # fmt: skip
    conn = await asyncpg.connect(database_url)
    new_topic = f"{topic_name}.again"
    try:
        await loaded_with_bridge_kills(database_url, bridges)
        produced = await conn.fetchval("SELECT status_change_count()")

        async def stored_all() -> bool:
            assert store.running(), store.output()
            return bool(await conn.fetchval("SELECT count(*) FROM status_change_log") == produced)

        await wait_until(stored_all, "the store to keep every event", 60)
        for bridge in bridges.made:
            if bridge.running():
                assert bridge.terminate() == 0
        await delete_topics(kafka_bootstrap, topic_name, stock_status_topic_of(topic_name))  # the topics are lost

        args = [sys.executable, "-m", "bridge", "republish", "--to", new_topic, "--chunk", "50"]
        first = await asyncio.create_subprocess_exec(*args, env=env, stderr=asyncio.subprocess.PIPE)
        assert first.stderr is not None
        line = b""
        while not line.startswith(b"republish: "):  # after its first transaction: kill it mid-way
            line = await asyncio.wait_for(first.stderr.readline(), 30)
            assert line, "republish ended without a progress line"
        first.kill()
        await first.wait()
        kafka = {k: v for k, v in env.items() if k.startswith("KAFKA")}
        code, _, err = await run_module(
            "bridge", database_url, "republish", "--to", new_topic, "--chunk", "50", **kafka
        )
        assert code == 0, err
        assert "resuming after " in err and f"({produced:,} in all)" in err
        assert "wrote 0 events" not in err, "the first run was killed after it had finished"

        code, out, err = await verify(database_url, kafka_bootstrap, new_topic, "--events")
        assert code == 0, out + err
        assert f"{produced:,} events on {new_topic}" in out

        again = await run_module("bridge", database_url, "republish", "--to", new_topic, "--chunk", "50", **kafka)
        assert again[0] == 0 and "wrote 0 events" in again[2], again  # done: run again, it adds nothing
        # Into a state topic that holds records already: refused, and nothing made.
        refused = await run_module("bridge", database_url, "republish", "--to", f"{new_topic}.x",
                                   "--state-topic", stock_status_topic_of(new_topic), **kafka)  # fmt: skip
        assert refused[0] == 1 and "is not empty" in refused[2], refused
        with pytest.raises(LookupError):
            await end_offsets(kafka_bootstrap, f"{new_topic}.x")
    finally:
        store.terminate()
        await conn.close()
        await delete_topics(kafka_bootstrap, new_topic, stock_status_topic_of(new_topic), f"{new_topic}.bridge-state",
                            )  # fmt: skip


async def test_republish_goes_on_into_topics_that_hold_only_an_aborted_transaction(
    database_url: str, kafka_bootstrap: str, topic_name: str
) -> None:
    """What a run killed before its first commit leaves: aborted records, no progress. They are not records."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status,"
            " quantity, operation_id, kafka_partition, kafka_offset, seq, cause)"
            " SELECT gen_random_uuid(), now(), 1, 1, 'out_of_stock', 'running_low', 5, s, 0, s, s, 'receipt'"
            " FROM generate_series(1, 3) s"
        )
    finally:
        await conn.close()
    await create_topic(kafka_bootstrap, topic_name, 6)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"test-{uuid.uuid4().hex}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic_name, b"never committed", key=b"1:1")
        await producer.abort_transaction()
    finally:
        await producer.stop()
    try:
        code, _, err = await run_module(
            "bridge", database_url, "republish", "--to", topic_name, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            KAFKA_TOPIC=f"{topic_name}.live",
        )  # fmt: skip
        assert code == 0 and "wrote 3 events" in err, err
        assert [
            StatusChanged.model_validate_json(r.value).seq for r in await read_topic(kafka_bootstrap, topic_name)
        ] == [1, 2, 3]
    finally:
        await delete_topics(
            kafka_bootstrap, topic_name, stock_status_topic_of(topic_name), f"{topic_name}.bridge-state"
        )
