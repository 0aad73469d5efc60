"""The bridge as a real process between real PostgreSQL and real Kafka: every status change on the topic exactly
once, in order per pair, whatever happens to the bridge. A test-only trigger copies every outbox row into
`outbox_audit` before the bridge deletes it, so the topic can be compared with what was produced."""

import asyncio
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.partitioner import murmur2

from db.load import ensure_reference_data
from tests.bridge_harness import (
    AUDIT,
    Bridges,
    assert_published_exactly_once,
    drained,
    load,
    outbox_deletions_held,
    wait_for_log,
    wait_for_records,
)
from tests.topic import create_topic, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def audited_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await conn.execute(AUDIT)
    await ensure_reference_data(conn, 500, 10)
    yield conn
    await conn.close()


async def test_changes_reach_the_topic_once_in_order_and_sigterm_exits_0(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    bridge = bridges().start()
    await load(database_url, loaders=2, operations=4000, batch=200)
    await drained(audited_db, bridge.running)
    published = await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name)
    assert published > 500

    assert await bridge.metric("warehouse_bridge_events_published_total") == published
    assert await bridge.metric("warehouse_bridge_batch_events_sum") == published
    assert await bridge.metric("warehouse_bridge_change_to_kafka_commit_seconds_count") == published
    assert await bridge.metric("warehouse_bridge_leader") == 1
    assert (await bridge.get("/healthz")).status_code == 200
    ready = await bridge.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"role": "leader", "postgres": True, "kafka": True}
    assert bridge.terminate() == 0, bridge.output()


async def test_kill_9_at_random_moments_during_a_parallel_load_loses_and_doubles_nothing(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    bridge = bridges().start()
    loading = asyncio.create_task(load(database_url, loaders=4, operations=20_000, batch=100, pause=0.4))
    rng = random.Random()
    for _ in range(5):
        await wait_for_log(bridge, "leader:")  # kill a bridge that publishes, not one still starting
        await asyncio.sleep(rng.uniform(0.05, 0.8))
        bridge.kill()
        bridge = bridges().start()
    assert not loading.done(), "the load ended before the last kill"
    await loading
    await drained(audited_db, bridge.running)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) > 500


async def test_a_backlog_built_while_no_bridge_runs_is_drained_at_start(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    await load(database_url, loaders=4, operations=50_000, batch=1000, products=500)
    backlog = await audited_db.fetchval("SELECT count(*) FROM status_change_outbox")
    assert backlog > 3000
    bridge = bridges().start()
    await drained(audited_db, bridge.running, timeout=120)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == backlog
    deadline = time.monotonic() + 10  # the gauges are read at most once a second
    while await bridge.metric("warehouse_bridge_outbox_backlog_events") != 0:
        assert time.monotonic() < deadline, "the backlog gauge stays above 0 after the drain"
        await asyncio.sleep(0.2)
    assert await bridge.metric("warehouse_bridge_outbox_oldest_age_seconds") == 0


async def test_a_rolled_back_operation_produces_no_event(
    audited_db: asyncpg.Connection, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    bridge = bridges().start()
    insert = "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES ($1, 1, 5)"
    await audited_db.execute(insert, 1)
    rolled_back = audited_db.transaction()
    await rolled_back.start()
    await audited_db.execute(insert, 2)
    await rolled_back.rollback()
    await audited_db.execute(insert, 3)
    await drained(audited_db, bridge.running)
    records = await read_topic(kafka_bootstrap, topic_name)
    assert sorted(r.key for r in records) == [b"1:1", b"3:1"]  # partitions have no order among them
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == 2


async def test_one_of_two_bridges_publishes_and_the_standby_takes_over_when_it_dies(
    audited_db: asyncpg.Connection, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    first = bridges().start()
    await wait_for_log(first, "leader:")
    second = bridges().start()
    await wait_for_log(second, "standby:")
    standby_ready = await second.get("/readyz")
    assert standby_ready.status_code == 200 and standby_ready.json()["role"] == "standby"
    assert await second.metric("warehouse_bridge_leader") == 0
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5)")
    await drained(audited_db, first.running)
    assert "leader:" not in second.output()

    first.kill()
    killed = time.monotonic()
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (2, 1, 5)")
    await drained(audited_db, second.running)
    taken_over = time.monotonic() - killed
    assert "leader:" in second.output()
    assert (await second.get("/readyz")).json()["role"] == "leader"
    assert taken_over < 5, f"the standby took {taken_over:.1f} s to publish"
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == 2


async def test_a_crash_between_the_kafka_commit_and_the_outbox_delete_is_recovered_without_duplicates(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    await load(database_url, loaders=1, operations=500, batch=100)
    produced = await audited_db.fetchval("SELECT count(*) FROM outbox_audit")
    # The bridge publishes and commits, then waits on its DELETE, and dies there.
    async with outbox_deletions_held(database_url):
        first = bridges().start()
        await wait_for_records(kafka_bootstrap, topic_name, min(produced, 1000), first)
        first.kill()
    assert await audited_db.fetchval("SELECT count(*) FROM status_change_outbox") == produced

    second = bridges().start()
    await drained(audited_db, second.running)
    assert f"recovered: the last committed batch held {min(produced, 1000)} outbox rows" in second.output()
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == produced


async def test_the_recovery_finds_its_batch_in_a_state_topic_made_with_several_partitions(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str,
    topic_name: str,
) -> None:  # fmt: skip
    # An operator made the state topic with 3 partitions; this deployment's key would hash to partition 1 or 2.
    state_topic = f"{topic_name}.bridge-state"
    ids = (f"warehouse-bridge.{topic_name}.{i}" for i in range(100))
    bridges.env["BRIDGE_TRANSACTIONAL_ID"] = next(t for t in ids if (murmur2(t.encode()) & 0x7FFFFFFF) % 3)
    await create_topic(kafka_bootstrap, state_topic, partitions=3, configs={"cleanup.policy": "compact"})
    await load(database_url, loaders=1, operations=500, batch=100)
    produced = await audited_db.fetchval("SELECT count(*) FROM outbox_audit")
    async with outbox_deletions_held(database_url):  # published and committed, then killed before the DELETE
        first = bridges().start()
        await wait_for_records(kafka_bootstrap, topic_name, min(produced, 1000), first)
        first.kill()

    second = bridges().start()
    await drained(audited_db, second.running)
    assert f"recovered: the last committed batch held {min(produced, 1000)} outbox rows" in second.output()
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == produced


async def test_changes_are_published_with_notifications_switched_off(
    audited_db: asyncpg.Connection, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    await audited_db.execute("ALTER TABLE status_change_outbox DISABLE TRIGGER notify_status_change")
    bridge = bridges().start()
    await wait_for_log(bridge, "leader:")
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5)")
    await drained(audited_db, bridge.running)  # found by the poll (BRIDGE_POLL_INTERVAL)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == 1


async def test_an_event_topic_that_would_compact_events_away_is_refused(
    audited_db: asyncpg.Connection, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    await create_topic(kafka_bootstrap, topic_name, configs={"cleanup.policy": "compact"})
    await audited_db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5)")
    bridge = bridges().start()
    assert bridge.proc is not None
    assert bridge.proc.wait(30) == 1
    assert f"topic {topic_name} exists with cleanup.policy=compact" in bridge.output()
    assert await audited_db.fetchval("SELECT count(*) FROM status_change_outbox") == 1  # nothing taken


async def test_a_stale_leader_is_fenced_and_its_open_transaction_never_shows(
    audited_db: asyncpg.Connection, database_url: str, bridges: Bridges, kafka_bootstrap: str, topic_name: str
) -> None:
    await load(database_url, loaders=1, operations=3000, batch=500, products=500)
    backlog = await audited_db.fetchval("SELECT count(*) FROM status_change_outbox")
    assert backlog > 300
    bridges.env["BRIDGE_BATCH_SIZE"] = "100"
    # Deletions wait on this lock: the first leader commits batch 1, then holds batch 2's transaction open
    # until batch 1 is deleted.
    async with outbox_deletions_held(database_url) as holder:
        first = bridges().start()
        await wait_for_records(kafka_bootstrap, topic_name, 100, first)
        await asyncio.sleep(1)  # batch 2 sent, its commit waiting
        # The first leader loses its session (as behind a network partition) but does not know it yet.
        terminated = await holder.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert terminated == 1  # the leadership lock (a draining leader does not hold "listening")
        second = bridges().start()
        # The second leader has fenced the first (its producer started) once its recovery waits on the lock
        # too. Watched from outside the holding transaction, in which pg_stat_activity would not change.
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE '%DELETE FROM status_change_outbox%'"
        )
        deadline = time.monotonic() + 30
        while await audited_db.fetchval(waiting) < 2:
            assert second.running() and time.monotonic() < deadline, second.output()
            await asyncio.sleep(0.2)
    await wait_for_log(second, "leader:")
    await wait_for_log(first, "fenced")
    await drained(audited_db, second.running)
    assert await assert_published_exactly_once(audited_db, kafka_bootstrap, topic_name) == backlog
