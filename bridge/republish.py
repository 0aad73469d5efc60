"""`python -m bridge republish --to TOPIC`: rebuilds an event topic, and its current-state topic, from the stored
event log (`status_change_log`, which `python -m consumers.store` keeps) into new, empty topics.

Events go out in key order, each pair's in the order they happened, with their own event_id and seq, in Kafka
transactions of `--chunk` events; each transaction also holds the latest state of each of its pairs and a
progress record (the position after its last event) in `<TOPIC>.bridge-state`, under the key
`warehouse-republish.<TOPIC>`. So it is exactly once, and resumable: run again after a crash, it aborts what
was left open (the transactional id fences it) and goes on after the last committed position. Topics that
already hold records without a progress record of its own are refused.

What it cannot rebuild is what the log never got: events that were on a lost topic but not yet stored. `python
-m bridge verify --events` on the new topic shows any such gap.
"""

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bridge.config import BridgeSettings
from bridge.errors import BridgeError
from bridge.events import PairState, StatusChanged, StatusChangedV1, cloudevents_headers
from bridge.recovery import last_record
from bridge.sending import BatchSender
from bridge.topics import ensure_event_topics, ensure_topic
from common.kafka import end_offsets, read_to
from db.queries import queries

PROGRESS_EVERY_S = 1.0
START = (-(2**63), -(2**63), -1, -1, -1)  # before every (product, warehouse, seq, partition, offset)


class RepublishError(BridgeError):
    retriable = False


def _message(row: asyncpg.Record, source: str) -> tuple[bytes, bytes, list[tuple[str, bytes]], PairState | None]:
    """A stored row as the bridge published it: key, value, headers, and the pair's state after it (version 2)."""
    fields = {name: row[name] for name in ("event_id", "occurred_at", "product_id", "warehouse_id", "old_status",
                                           "new_status", "quantity", "operation_id")}  # fmt: skip
    if row["seq"] is None:
        old = StatusChangedV1.model_validate(fields)
        return old.key, old.value(), cloudevents_headers(str(old.event_id), old.occurred_at.isoformat(), source,
                                                         old.key, None), None  # fmt: skip
    event = StatusChanged.model_validate(
        fields | {"seq": row["seq"], "cause": row["cause"], "transfer_id": row["transfer_id"]}
    )
    return event.key, event.value(), event.headers(source), event.state_after()


async def _refuse_unless_empty(settings: BridgeSettings, topics: Sequence[str]) -> None:
    """Refuses topics that hold committed records (aborted ones, of a run killed before its first commit, are not
    records)."""
    for topic in topics:
        try:
            ends = await end_offsets(settings.kafka_bootstrap_servers, topic)
        except LookupError:
            continue  # made below
        records = read_to(settings.kafka_bootstrap_servers, topic, ends)
        try:
            async for _ in records:
                raise RepublishError(f"topic {topic} is not empty: republish writes into new topics only")
        finally:
            await records.aclose()


async def republish(settings: BridgeSettings, to: str, state_topic: str, chunk: int) -> int:
    """Returns the events written by this run."""
    progress_topic, tid = f"{to}.bridge-state", f"warehouse-republish.{to}"
    try:
        await end_offsets(settings.kafka_bootstrap_servers, progress_topic)
        first_run = False
    except LookupError:
        first_run = True
    if first_run:
        await _refuse_unless_empty(settings, [to, state_topic])  # before making anything
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_event_topics(admin, to, state_topic, settings.bridge_topic_partitions)
        await ensure_topic(admin, progress_topic, 1, "compact")
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, transactional_id=tid, enable_idempotence=True
    )
    await producer.start()  # first: it fences an earlier run and settles its open transaction
    try:
        progress: Any = None
        if not first_run:  # (a topic just made may not be readable yet, and has nothing to read)
            progress = await last_record(
                settings.kafka_bootstrap_servers, progress_topic, tid.encode(), settings.bridge_transaction_timeout
            )
        if progress is None:  # nothing committed yet, perhaps by a run killed before its first commit
            await _refuse_unless_empty(settings, [to, state_topic])
            position, done = START, 0
            async with producer.transaction():
                await producer.send(progress_topic, _json({"after": list(START), "events": 0}), key=tid.encode(),
                                    partition=0)  # fmt: skip
        else:
            position, done = tuple(progress["after"]), progress["events"]
            say(f"resuming after {done:,} events")
    except BaseException:
        await producer.stop()
        raise
    conn = await asyncpg.connect(settings.database_url)
    written, started, said = 0, time.monotonic(), 0.0
    try:
        sql = queries("bridge")
        total = await conn.fetchval(sql["republish_total"])
        sender = BatchSender(producer, to, state_topic, settings.bridge_event_source)
        partition_of = await sender.partitioner()
        while rows := await conn.fetch(sql["republish_chunk"], *position, chunk):
            await producer.begin_transaction()
            deliveries = []
            states: dict[bytes, PairState] = {}
            for row in rows:
                key, value, headers, state = _message(row, settings.bridge_event_source)
                deliveries.append(await producer.send(to, value, key=key, headers=headers, partition=partition_of(key)))
                if state is not None:
                    states[key] = state
            deliveries += await sender.send_states([(key, state.value()) for key, state in states.items()])
            last = rows[-1]
            position = (last["product_id"], last["warehouse_id"], last["position_seq"], last["kafka_partition"],
                        last["kafka_offset"])  # fmt: skip
            record = {"after": list(position), "events": done + written + len(rows)}
            deliveries.append(await producer.send(progress_topic, _json(record), key=tid.encode(), partition=0))
            await asyncio.gather(*deliveries)
            await producer.commit_transaction()
            written += len(rows)
            if time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()
                say(f"republish: {done + written:,} of {total:,} events")
    finally:
        await conn.close()
        await producer.stop()
    took = time.monotonic() - started
    say(f"republish: wrote {written:,} events to {to} ({done + written:,} in all) in {took:.1f} s")
    return written


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
