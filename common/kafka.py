"""Whether Kafka answers, as a process that reads it sees it. Through an outage aiokafka's consumers keep their
partitions and retry in silence (their own log lines are switched off, common/logs.py), so nothing they do says
that Kafka is gone. `watch` asks for the cluster's metadata every CHECK_EVERY_S, tells `answers` the outcome, and
logs a line when Kafka is lost and one when it is back.

Also: reading a whole topic up to the offsets it had at one moment (`end_offsets`, `read_to`), for the tools that
compare it with the database or rebuild from it."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from common.retry import StateLog
from common.stopping import pause

CHECK_EVERY_S = 2.0
CHECK_TIMEOUT_S = 5.0
UNKNOWN_TOPIC_OR_PARTITION = 3


async def watch(
    consumer: AIOKafkaConsumer,
    log: logging.Logger,
    answers: Callable[[bool], None] = lambda ok: None,
    what: str = "",
    stop: asyncio.Event | None = None,
) -> None:
    """Until `stop` is set (or cancelled). `what` starts each line (`live feed: lost Kafka: …`)."""
    state = StateLog(log)
    while True:
        if stop is None:
            await asyncio.sleep(CHECK_EVERY_S)
        elif await pause(stop, CHECK_EVERY_S):
            return
        try:
            await asyncio.wait_for(consumer.topics(), CHECK_TIMEOUT_S)
        except Exception as e:  # KafkaError, TimeoutError, or whatever else a lost broker raises
            answers(False)
            state(f"{what}lost Kafka", f"{type(e).__name__}; waiting for it", logging.WARNING)
        else:
            answers(True)
            if state.state:
                state(f"{what}Kafka answers again")


async def end_offsets(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Each partition's (beginning, end) offsets as a read_committed reader sees them now (the end: the last stable
    offset). Raises LookupError for a topic that does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
        raise LookupError(f"topic {topic} does not exist")
    if described["error_code"] != 0:
        raise LookupError(f"cannot describe topic {topic}: Kafka error {described['error_code']}")
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return {tp.partition: (begin[tp], end[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def read_to(
    bootstrap: str, topic: str, ends: dict[int, tuple[int, int]], on_batch: Callable[[int], None] = lambda n: None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` from the beginning up to the end offsets `ends` (of end_offsets), one
    partition after the other, each in offset order. `on_batch(n)` after each fetch of n records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    await asyncio.sleep(0)  # lets the consumer's own tasks start: one cancelled unstarted raises from stop()
    try:
        for partition, (begin, end) in sorted(ends.items()):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, begin)
            while await consumer.position(tp) < end:
                batch = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                for record in batch:
                    if record.offset >= end:
                        break
                    yield record
                on_batch(len(batch))
    finally:
        await consumer.stop()
