"""Outbox → Kafka, exactly once for read_committed consumers (the contract is in ../shared/DESIGN.md).

One bridge leads: the one whose control connection holds the leadership advisory lock; the others wait as
standbys and retry every second. The leader:
  1. starts its transactional producer, which fences any older producer with the same transactional id, so
     a stale leader can no longer commit;
  2. recovers: reads the last committed record of the state topic and deletes the outbox rows it names (they
     were published just before a crash, and not yet deleted);
  3. loops: read the oldest outbox rows (from the view status_change_events, which gives each row's key, JSON
     value and CloudEvents time ready-made); in one Kafka transaction send their events and a state record
     naming their ids; commit; delete the rows. A crash before the commit aborts the transaction (the next
     leader's producer start aborts it) and the rows are sent again; a crash after it leaves rows that step 2
     deletes. Either way each event is on the topic once, in outbox id order, which per pair is commit order.
     While a batch is in Kafka the next one is read, and while that one is sent the previous one is deleted;
     a batch commits only after the previous batch's deletion, so step 2 never has more than one batch to
     delete.
When the outbox is empty the leader listens (the wake-up protocol of notify_status_change in the migrations),
with BRIDGE_POLL_INTERVAL as the fallback. Any failure of PostgreSQL or Kafka tears the leader down; it starts
over from the top after a capped backoff, logging once per change of state.
"""

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2

from bridge.config import BridgeSettings
from bridge.errors import BridgeError
from bridge.events import cloudevents_headers
from bridge.metrics import BridgeMetrics
from bridge.topics import ensure_topics
from db.queries import queries

# Server side, on the leader's control connection: probes after 5 s idle, every 2 s, 3 missed → the session ends;
# unacknowledged data for 10 s → the session ends.
LEADER_KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
log = logging.getLogger(__name__)

CHANNEL = "warehouse_status_changes"  # the channel notify_status_change notifies on
STANDBY_RETRY_S = 1.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 5.0
CLOSE_TIMEOUT_S = 1.0
STANDBY_KAFKA_CHECK_S = 10.0
BACKLOG_EVERY_S = 1.0  # the backlog query counts the whole outbox
KAFKA_SLOW_S = 3.0  # a transaction taking longer than this means Kafka is unavailable (logged once)


class KafkaStalled(BridgeError):
    """A Kafka transaction did not complete within BRIDGE_TRANSACTION_TIMEOUT."""


class StateLog:
    """Logs the bridge's state only when it changes, so an outage is one line, not one per retry."""

    def __init__(self) -> None:
        self.state = ""

    def __call__(self, state: str, detail: str = "", level: int = logging.INFO) -> None:
        if state != self.state:
            self.state = state
            log.log(level, "%s%s", state, f": {detail}" if detail else "")


class BatchSender:
    """Sends events partition by partition in record batches it fills itself: about twice the rate of one
    `send()` per event, which is mostly per-message bookkeeping. A key's partition is the default
    partitioner's (murmur2, as Kafka's own clients compute it), and each partition's events keep their order."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, source: str) -> None:
        self.producer, self.topic, self.source = producer, topic, source
        self.partition_of: dict[bytes, int] = {}  # murmur2 is pure Python (≈ 2.5 µs a key); pairs repeat
        self.partitions: list[int] = []

    async def send(self, rows: Sequence[asyncpg.Record]) -> list["asyncio.Future[Any]"]:
        """rows: of the view status_change_events (key, value, ce_id, ce_time). Returns the batches' deliveries."""
        deliveries = []
        producer = self.producer
        partitions = sorted(await producer.partitions_for(self.topic))
        if partitions != self.partitions:  # partitions were added: keys move
            self.partitions, self.partition_of = partitions, {}
        builders: dict[int, Any] = {}
        for row in rows:
            key, value = row["key"].encode(), row["value"].encode()
            headers = cloudevents_headers(row["ce_id"], row["ce_time"], self.source)
            partition = self.partition_of.get(key)
            if partition is None:
                partition = self.partition_of[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:  # full: send it
                deliveries.append(await producer.send_batch(builder, self.topic, partition=partition))
                builder = builders[partition] = producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise BridgeError(f"event {row['ce_id']} does not fit in a Kafka record batch", retriable=False)
        for partition, builder in builders.items():
            deliveries.append(await producer.send_batch(builder, self.topic, partition=partition))
        return deliveries


class Relay:
    def __init__(self, settings: BridgeSettings, stop: asyncio.Event, metrics: BridgeMetrics) -> None:
        self.settings = settings
        self.stop = stop
        self.metrics = metrics
        self.sql = queries("bridge")
        self.state = StateLog()
        self.backlog_read_at = 0.0

    async def run(self) -> None:
        """Lead or stand by until `stop` is set; start over after any retriable failure."""
        backoff, published_before = BACKOFF_FIRST_S, self.metrics.published.value
        while not self.stop.is_set():
            try:
                await self._lead()
                return
            # InternalClientError: asyncpg's protocol state left broken by a connection lost mid-operation (seen
            # when PostgreSQL restarts during a drain); the connection is dropped and made anew, like any loss.
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as e:
                self.metrics.postgres_ok = False
                self.state("PostgreSQL unavailable, retrying", f"{type(e).__name__}: {e}", logging.WARNING)
            except ProducerFenced:
                self.state("fenced: a newer bridge with the same transactional id took over", level=logging.WARNING)
            except KafkaError as e:
                self.metrics.kafka_ok = False
                self.state("Kafka unavailable, retrying", f"{type(e).__name__}: {e}", logging.WARNING)
            except BridgeError as e:
                if not e.retriable:
                    raise
                self.state("starting over", str(e), logging.WARNING)
            finally:
                self.metrics.role, self.metrics.leader.value = "starting", 0
            if self.metrics.published.value > published_before:  # it worked for a while: start gently again
                backoff = BACKOFF_FIRST_S
            published_before = self.metrics.published.value
            await self._sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _lead(self) -> None:
        s = self.settings
        # lock_timeout: taking "listening" gives up server-side, so a lock granted as a client timeout fired is
        # never left held. The keepalives: PostgreSQL notices within about 15 s that this session's host or network
        # is gone (not after the kernel's 2 hours) and frees the leadership lock for a standby.
        control = await asyncpg.connect(
            s.database_url,
            server_settings={"lock_timeout": f"{int(s.bridge_poll_interval * 1000)}ms", **LEADER_KEEPALIVES},
        )
        self.metrics.postgres_ok = True
        try:
            await self._ensure_topics()
            checked_kafka_at = asyncio.get_running_loop().time()
            while not await control.fetchval(self.sql["take_leadership"], s.bridge_transactional_id):
                self.state("standby", f"another bridge leads {s.bridge_transactional_id}")
                self.metrics.role = "standby"
                await self._read_backlog(control, every=0)
                await self._sleep(STANDBY_RETRY_S)
                if self.stop.is_set():
                    return
                if asyncio.get_running_loop().time() - checked_kafka_at > STANDBY_KAFKA_CHECK_S:
                    await self._ensure_topics()  # a standby is ready only while it can reach Kafka too
                    checked_kafka_at = asyncio.get_running_loop().time()
            work = await asyncpg.connect(s.database_url)
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap_servers,
                transactional_id=s.bridge_transactional_id,
                enable_idempotence=True,
                client_id=f"warehouse-bridge-{socket.gethostname()}-{os.getpid()}",
            )
            try:
                try:  # fences every older producer of this transactional id; aiokafka alone would retry forever
                    await asyncio.wait_for(producer.start(), s.bridge_transaction_timeout)
                except TimeoutError as e:
                    raise KafkaStalled("the Kafka producer did not start (transaction coordinator unavailable)") from e
                await self._recover(work)
                self.state("leader", f"publishing to {s.kafka_topic}")
                self.metrics.role, self.metrics.leader.value = "leader", 1
                await self._publish_until_stopped(
                    control, work, BatchSender(producer, s.kafka_topic, s.bridge_event_source)
                )
            finally:
                # An open transaction is left to the broker: the next leader's producer start aborts it.
                await close_quietly(producer.stop(), "the Kafka producer")
                await close_quietly(work.close(timeout=CLOSE_TIMEOUT_S), "the PostgreSQL connection")
        finally:
            await close_quietly(control.close(timeout=CLOSE_TIMEOUT_S), "the PostgreSQL control connection")

    async def _ensure_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await ensure_topics(admin, self.settings)
        finally:
            await admin.close()
        self.metrics.kafka_ok = True

    async def _read_backlog(self, conn: asyncpg.Connection, every: float = BACKLOG_EVERY_S) -> None:
        now = asyncio.get_running_loop().time()
        if now - self.backlog_read_at < every:
            return
        self.backlog_read_at = now
        row = await conn.fetchrow(self.sql["backlog"])
        assert row is not None  # an aggregate without GROUP BY returns one row
        self.metrics.backlog.set(row["events"])
        self.metrics.oldest_age.set(row["oldest_age_s"])
        self.metrics.notification_queue.set(row["queue_usage"])

    async def _recover(self, work: asyncpg.Connection) -> None:
        ids, event_ids = await last_committed_batch(self.settings)
        if ids:
            deleted = await work.execute(self.sql["delete_recovered"], ids, event_ids)
            log.info("recovered: the last committed batch held %d outbox rows; %s", len(ids), deleted)

    async def _publish_until_stopped(
        self, control: asyncpg.Connection, work: asyncpg.Connection, sender: BatchSender
    ) -> None:
        s = self.settings
        wake = asyncio.Event()

        def on_notify(*_: Any) -> None:
            wake.set()

        await control.add_listener(CHANNEL, on_notify)
        while not self.stop.is_set():
            await self._read_backlog(work)
            rows = await work.fetch(self.sql["next_batch"], s.bridge_batch_size)
            if rows:
                await self._drain(work, sender, rows)
                continue
            # Empty: listen. Taking "listening" waits for writers that skipped their wake-up; then look again.
            try:
                await control.execute(self.sql["start_listening"])
            except asyncpg.LockNotAvailableError:
                continue  # a writer holds it for long (lock_timeout); look at the outbox again
            try:
                wake.clear()
                rows = await work.fetch(self.sql["next_batch"], s.bridge_batch_size)
                if not rows:
                    stop_wait = asyncio.ensure_future(self.stop.wait())
                    wake_wait = asyncio.ensure_future(wake.wait())
                    await asyncio.wait(
                        [stop_wait, wake_wait], timeout=s.bridge_poll_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                    stop_wait.cancel()
                    wake_wait.cancel()
            finally:
                await control.execute(self.sql["stop_listening"])
            if rows:
                await self._drain(work, sender, rows)

    async def _drain(self, work: asyncpg.Connection, sender: BatchSender, rows: Sequence[asyncpg.Record]) -> None:
        """Publishes batch after batch until the outbox is empty (or the bridge stops). Behind a backlog, batch
        N+1 is read while batch N is in its Kafka transaction, and batch N is deleted while batch N+1 is being
        sent; batch N+1 commits only once batch N's deletion is done, so a crash leaves at most the last
        committed batch to the recovery. Returns with nothing in flight."""
        deleting: asyncio.Future[str] | None = None
        try:
            while rows:
                ids = [row["id"] for row in rows]
                transaction = asyncio.ensure_future(self._transaction(sender, rows, ids, after=deleting))
                try:
                    if deleting is not None:
                        await deleting
                    await self._read_backlog(work)
                    # Read ahead only while a backlog fills whole batches: caught up, a batch read this early
                    # would miss the changes committed during this one's transaction, and wait a round longer.
                    behind_a_backlog = len(rows) == self.settings.bridge_batch_size and not self.stop.is_set()
                    ahead = await self._fetch_after(work, ids) if behind_a_backlog else None
                    committed = await self._committed(transaction, len(rows))
                finally:
                    if not transaction.done():
                        transaction.cancel()
                        await asyncio.gather(transaction, return_exceptions=True)
                deleting = asyncio.ensure_future(work.execute(self.sql["delete_published"], ids))
                self._count(rows, committed)
                if ahead is None:  # caught up, stopping, or rows committed late behind this batch: read afresh
                    await deleting
                    rows = (
                        []
                        if self.stop.is_set()
                        else await work.fetch(self.sql["next_batch"], self.settings.bridge_batch_size)
                    )
                else:
                    rows = ahead
            if deleting is not None:
                await deleting
        finally:
            if deleting is not None and not deleting.done():
                deleting.cancel()  # an error on the way: the rows stay, the recovery deletes them
                await asyncio.gather(deleting, return_exceptions=True)

    async def _fetch_after(self, work: asyncpg.Connection, ids: Sequence[int]) -> list[asyncpg.Record] | None:
        """The next batch while `ids` are still in the outbox, or None when rows committed late behind them."""
        rows = await work.fetch(self.sql["next_batch_after"], max(ids), self.settings.bridge_batch_size)
        if rows[0]["behind"] != len(ids):
            return None
        return [row for row in rows if row["id"] is not None]

    async def _transaction(
        self, sender: BatchSender, rows: Sequence[asyncpg.Record], ids: Sequence[int],
        after: "asyncio.Future[str] | None",
    ) -> None:  # fmt: skip
        """One Kafka transaction: the events, and the state record naming their outbox ids. It commits only after
        `after` (the previous batch's deletion) is done."""
        s = self.settings
        producer = sender.producer
        try:
            await producer.begin_transaction()
            deliveries = await sender.send(rows)
            state = state_record(ids, [row["ce_id"] for row in rows])
            # Partition 0, where the recovery reads it, however many partitions the state topic was made with.
            deliveries.append(
                await producer.send(s.bridge_state_topic, state, key=s.bridge_transactional_id.encode(), partition=0)
            )
            # aiokafka commits a transaction even when the broker refused one of its batches (a clock far ahead,
            # a record too large): the commit must wait for, and fail with, every delivery.
            await asyncio.gather(*deliveries)
            if after is not None:
                await after
            await producer.commit_transaction()
        except (IllegalOperation, AssertionError) as e:
            # After a fence found on a send, aiokafka's producer is dead: its calls raise these, not KafkaError.
            raise KafkaStalled(f"the Kafka producer can no longer be used (fenced?): {type(e).__name__}: {e}") from e

    async def _committed(self, transaction: "asyncio.Future[None]", events: int) -> float:
        """Waits for the transaction: aiokafka retries by itself while the broker is away; the bridge says so
        once, and gives the transaction up (starting over) only after BRIDGE_TRANSACTION_TIMEOUT."""
        s = self.settings
        try:
            done, _ = await asyncio.wait([transaction], timeout=KAFKA_SLOW_S)
            if not done:
                self.metrics.kafka_ok = False
                self.state(
                    "Kafka unavailable, waiting", f"a transaction has waited {KAFKA_SLOW_S:g} s", logging.WARNING
                )
                await asyncio.wait_for(asyncio.shield(transaction), s.bridge_transaction_timeout - KAFKA_SLOW_S)
                self.metrics.kafka_ok = True
                self.state("leader", "Kafka answers again")
            transaction.result()
        except TimeoutError as e:
            raise KafkaStalled(
                f"a Kafka transaction of {events} events took over {s.bridge_transaction_timeout:g} s"
            ) from e
        return time.time()

    def _count(self, rows: Sequence[asyncpg.Record], committed: float) -> None:
        """committed: the commit's time, in seconds since the epoch."""
        self.metrics.published.inc(len(rows))
        self.metrics.batch_size.observe(len(rows))
        for row in rows:
            self.metrics.latency.observe(committed - row["occurred_epoch"])


async def close_quietly(closing: Awaitable[None], what: str) -> None:
    """Teardown after a failure: closing what failed may fail or hang too, and must not hide the first error."""
    try:
        await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
    except Exception as e:
        log.debug("closing %s: %s: %s", what, type(e).__name__, e)


def state_record(ids: Sequence[int], event_ids: Sequence[str]) -> bytes:
    """Which outbox rows a committed batch held: ids and event ids, so that a database restored or recreated
    under a surviving state topic (ids used again) never has unpublished rows deleted by the recovery."""
    return json.dumps({"outbox_ids": list(ids), "event_ids": list(event_ids)}, separators=(",", ":")).encode()


async def last_committed_batch(settings: BridgeSettings) -> tuple[list[int], list[str]]:
    """The outbox ids and event ids of this deployment's last committed batch, from the state topic
    (read_committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.bridge_state_topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        key = settings.bridge_transactional_id.encode()
        back = 16  # each batch adds a record and a commit marker; read further back until ours is found
        while True:
            start = max(0, end - back)
            consumer.seek(tp, start)
            last = None
            deadline = asyncio.get_running_loop().time() + settings.bridge_transaction_timeout
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise KafkaStalled(f"reading {settings.bridge_state_topic} did not reach its end")
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if message.key == key and message.value is not None:
                        last = message
            if last is not None:
                record = json.loads(last.value)
                return record["outbox_ids"], record["event_ids"]
            if start == 0:
                return [], []
            back *= 8
    finally:
        await consumer.stop()
