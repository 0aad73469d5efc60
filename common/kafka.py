"""Whether Kafka answers, as a process that reads it sees it. Through an outage aiokafka's consumers keep their
partitions and retry in silence (their own log lines are switched off, common/logs.py), so nothing they do says
that Kafka is gone. `watch` asks for the cluster's metadata every CHECK_EVERY_S, tells `answers` the outcome, and
logs a line when Kafka is lost and one when it is back.

Also: reading a whole topic up to the offsets it had at one moment (`end_offsets`, `read_to`), for the tools that
compare it with the database or rebuild from it."""

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from common.retry import StateLog
from common.stopping import pause

CHECK_EVERY_S = 2.0
CHECK_TIMEOUT_S = 5.0
READ_BATCH = 5000  # records a fetch of read_to hands over: its memory is the fetch buffers' (1 MiB a partition)
SETTLE_TIMEOUT_S = 120.0  # the broker aborts an abandoned transaction after the producer's timeout (60 s in aiokafka)


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


async def end_offsets(bootstrap: str, topic: str, settled: bool = False) -> dict[int, tuple[int, int]]:
    """Each partition's (beginning, end) offsets as a read_committed reader sees them now: the end is the last
    stable offset. With `settled`, the end is instead the high watermark as it is now, once every transaction
    below it is decided (the last stable offset has reached it): a transaction's commit markers reach its
    partitions one after the other, so of two topics written in one transaction, one may show it committed
    while the other does not yet. Raises LookupError for a topic that does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():  # before describing: a broker may create what is described
            raise LookupError(f"topic {topic} does not exist")
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise LookupError(f"cannot describe topic {topic}: Kafka error {described['error_code']}")
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    committed = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await committed.start()
    try:
        begin = await committed.beginning_offsets(tps)
        if not settled:
            end = await committed.end_offsets(tps)
            return {tp.partition: (begin[tp], end[tp]) for tp in tps}
        uncommitted = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await uncommitted.start()
        try:
            high = await uncommitted.end_offsets(tps)
        finally:
            await uncommitted.stop()
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_S
        while any(stable < high[tp] for tp, stable in (await committed.end_offsets(tps)).items()):
            if asyncio.get_running_loop().time() > deadline:
                raise LookupError(f"topic {topic}: a transaction stayed open for {SETTLE_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        return {tp.partition: (begin[tp], high[tp]) for tp in tps}
    finally:
        await committed.stop()


async def read_to(
    bootstrap: str, topic: str, ends: dict[int, tuple[int, int]], on_batch: Callable[[int], None] = lambda n: None
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every committed record of `topic` from the beginning up to the end offsets `ends` (of end_offsets), each
    partition's in offset order (partitions interleaved). `on_batch(n)` after each fetch of n records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False,
        auto_offset_reset="earliest",  # records deleted by retention meanwhile: from the oldest left, not the end
    )  # fmt: skip
    await consumer.start()
    await asyncio.sleep(0)  # lets the consumer's own tasks start: one cancelled unstarted raises from stop()
    try:
        # All partitions assigned once: assigning others while a fetch waits made stop() hang (aiokafka 0.14).
        left = {TopicPartition(topic, p): (begin, end) for p, (begin, end) in ends.items() if begin < end}
        consumer.assign(list(left))
        for tp, (begin, _) in left.items():
            consumer.seek(tp, begin)
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=READ_BATCH)
            for tp, batch in fetched.items():
                end = left[tp][1]
                for record in batch:
                    if record.offset >= end:
                        break
                    yield record
            on_batch(sum(len(batch) for batch in fetched.values()))
            for tp in list(left):
                if await consumer.position(tp) >= left[tp][1]:
                    consumer.pause(tp)
                    del left[tp]
    finally:
        await consumer.stop()
