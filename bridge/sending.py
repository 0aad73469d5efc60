"""Sending: the bridge's transactional producer. One Kafka transaction per batch holds the batch's events, the
latest state of each of its pairs (on the current-state topic), and its state record (bridge/recovery.py); the
records go out in record batches the bridge fills itself."""

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import aiokafka.producer.sender
import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalOperation
from aiokafka.partitioner import murmur2

from bridge.config import BridgeSettings
from bridge.errors import BridgeError, KafkaStalled
from bridge.events import cloudevents_headers
from bridge.metrics import BridgeMetrics
from bridge.recovery import state_record
from common.retry import StateLog

KAFKA_SLOW_S = 3.0  # a transaction taking longer than this means Kafka is unavailable (logged once)

# A transaction begun right after the previous one's commit gets CONCURRENT_TRANSACTIONS until the broker has
# written that commit's markers (KAFKA-5477), and aiokafka retries after a fixed 20 ms: every back-to-back batch
# waited ~20 ms. The markers take a millisecond or two here; 2 ms between tries cut a transaction's first send from
# 24 to 4.6 ms (docs/kafka-client-notes.md). A module constant of aiokafka's, read at each retry.
aiokafka.producer.sender.BACKOFF_OVERRIDE = 0.002


class BatchSender:
    """Sends events, and the pairs' states, partition by partition in record batches it fills itself: about twice
    the rate of one `send()` per event, which is mostly per-message bookkeeping. A key's partition is the default
    partitioner's (murmur2, as Kafka's own clients compute it), the same on both topics (they have as many
    partitions, bridge/topics.py), and each partition's records keep their order."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, state_topic: str, source: str) -> None:
        self.producer, self.topic, self.state_topic, self.source = producer, topic, state_topic, source
        self.partition_of: dict[bytes, int] = {}  # murmur2 is pure Python (≈ 2.5 µs a key); pairs repeat
        # (emptied past PARTITION_CACHE keys: a snapshot of a million pairs would keep ≈ 100 MB of them)
        self.partitions: list[int] = []

    async def send(self, rows: Sequence[asyncpg.Record]) -> list["asyncio.Future[Any]"]:
        """rows: of status_change_batch (key, value, state, seq, ce_id, ce_time). Returns the batches' deliveries."""
        partition_of = await self.partitioner()
        batches = _Batches(self.producer)
        for row in rows:
            key = row["key"].encode()
            headers = cloudevents_headers(row["ce_id"], row["ce_time"], self.source, key, row["seq"])
            partition = partition_of(key)
            await batches.append(self.topic, partition, key, row["value"].encode(), headers, row["ce_id"])
            if row["state"] is not None:
                await batches.append(
                    self.state_topic, partition, key, row["state"].encode(), STATE_HEADERS, row["ce_id"]
                )
        return await batches.flush()

    async def send_states(self, states: Sequence[tuple[bytes, bytes]]) -> list["asyncio.Future[Any]"]:
        """(key, value) records for the current-state topic only (the snapshot)."""
        partition_of = await self.partitioner()
        batches = _Batches(self.producer)
        for key, value in states:
            await batches.append(self.state_topic, partition_of(key), key, value, STATE_HEADERS, key.decode())
        return await batches.flush()

    async def partitioner(self) -> Any:
        """The partition of a key, on both topics, as the topic has them now."""
        partitions = sorted(await self.producer.partitions_for(self.topic))
        if partitions != self.partitions or len(self.partition_of) > PARTITION_CACHE:  # added: keys move
            self.partitions, self.partition_of = partitions, {}
        known = self.partition_of

        def partition_of(key: bytes) -> int:
            partition = known.get(key)
            if partition is None:
                partition = known[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            return partition

        return partition_of


STATE_HEADERS = [("content-type", b"application/json")]
PARTITION_CACHE = 100_000


class _Batches:
    """Open record batches, one per topic and partition; a full one is sent and replaced."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.open: dict[tuple[str, int], Any] = {}
        self.deliveries: list[asyncio.Future[Any]] = []

    async def append(
        self, topic: str, partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]], what: str
    ) -> None:
        builder = self.open.get((topic, partition))
        if builder is None:
            builder = self.open[topic, partition] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:  # full: send it
            self.deliveries.append(await self.producer.send_batch(builder, topic, partition=partition))
            builder = self.open[topic, partition] = self.producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise BridgeError(f"record {what} does not fit in a Kafka record batch", retriable=False)

    async def flush(self) -> list["asyncio.Future[Any]"]:
        for (topic, partition), builder in self.open.items():
            self.deliveries.append(await self.producer.send_batch(builder, topic, partition=partition))
        self.open = {}
        return self.deliveries


class Publisher:
    """The transactional producer of one leadership: started (which fences every older producer of the same
    transactional id), one transaction per batch, stopped."""

    def __init__(self, settings: BridgeSettings, metrics: BridgeMetrics, state: StateLog) -> None:
        self.settings, self.metrics, self.state = settings, metrics, state
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            transactional_id=settings.bridge_transactional_id,
            enable_idempotence=True,
            client_id=f"warehouse-bridge-{socket.gethostname()}-{os.getpid()}",
        )
        self.events = BatchSender(
            self.producer, settings.kafka_topic, settings.kafka_stock_status_topic, settings.bridge_event_source
        )

    async def start(self) -> None:
        """Fences every older producer of this transactional id; aiokafka alone would retry forever."""
        try:
            await asyncio.wait_for(self.producer.start(), self.settings.bridge_transaction_timeout)
        except TimeoutError as e:
            raise KafkaStalled("the Kafka producer did not start (transaction coordinator unavailable)") from e

    async def stop(self) -> None:
        """An open transaction is left to the broker: the next leader's producer start aborts it."""
        await self.producer.stop()

    async def transaction(
        self, rows: Sequence[asyncpg.Record], ids: Sequence[int], after: "asyncio.Future[str] | None"
    ) -> None:
        """One Kafka transaction: the events, their pairs' latest states, and the state record naming their outbox
        ids. It commits only after `after` (the previous batch's deletion) is done."""
        s, producer = self.settings, self.producer
        try:
            await producer.begin_transaction()
            deliveries = await self.events.send(rows)
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

    async def states(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """One Kafka transaction of current-state records only (a snapshot's chunk), waited for like a batch's."""

        async def transaction() -> None:
            try:
                await self.producer.begin_transaction()
                await asyncio.gather(*await self.events.send_states(records))
                await self.producer.commit_transaction()
            except (IllegalOperation, AssertionError) as e:
                raise KafkaStalled(f"the Kafka producer can no longer be used (fenced?): {e!r}") from e

        await self.committed(asyncio.ensure_future(transaction()), len(records))

    async def committed(self, transaction: "asyncio.Future[None]", events: int) -> float:
        """Waits for the transaction, and returns the time of its commit (seconds since the epoch). aiokafka
        retries by itself while the broker is away; the bridge says so once, and gives the transaction up
        (starting over) only after BRIDGE_TRANSACTION_TIMEOUT."""
        timeout = self.settings.bridge_transaction_timeout
        try:
            done, _ = await asyncio.wait([transaction], timeout=KAFKA_SLOW_S)
            if not done:
                self.metrics.kafka_ok = False
                self.state(
                    "Kafka unavailable, waiting", f"a transaction has waited {KAFKA_SLOW_S:g} s", logging.WARNING
                )
                await asyncio.wait_for(asyncio.shield(transaction), timeout - KAFKA_SLOW_S)
                self.metrics.kafka_ok = True
                self.state("leader", "Kafka answers again")
            transaction.result()
        except TimeoutError as e:
            raise KafkaStalled(f"a Kafka transaction of {events} events took over {timeout:g} s") from e
        return time.time()
