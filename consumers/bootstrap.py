"""Starting a new downstream service: the current state of every pair, then every later change, with no gap and
no duplicate (docs/events.md, "Bootstrap").

The protocol, over the two topics the bridge writes in the same transactions:
1. note the event topic's end offsets (read_committed: the last stable offsets), E;
2. read the current-state topic to its end, settled: its high watermark taken after E, once every transaction
   below it is decided (a transaction's commit markers reach its partitions one after the other, so a
   transaction E shows committed may not show yet on the state topic). The latest record of each pair: every
   event before E has its pair's state, or a later one, in there;
3. consume the events from E, skipping those whose seq is at most the state's seq of their pair (already in
   the state); every other event is the next change of its pair, seq + 1. A larger jump is a loss, reported.

`changes` does it and yields `Batch`es: first the states (a partition at a time, so only one partition's states
are held at once), then the events as they come. It keeps one number per pair (the last seq it gave), about
100 bytes a pair. It reads without a consumer group and commits nothing: a service that keeps its own copy and
its offsets resumes from those; this is for its first start, or after it lost its copy.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from bridge.events import PairState, StatusChanged
from common.kafka import end_offsets, read_to
from consumers.events import events_of

log = logging.getLogger(__name__)
STATES_PER_BATCH = 5000


@dataclass(frozen=True)
class Batch:
    states: list[PairState] = field(default_factory=list)
    """Pairs' current states, each once (the bootstrap's first part)."""
    changes: list[StatusChanged] = field(default_factory=list)
    """Changes after those states, in order per pair, each once."""
    caught_up: bool = False
    """Every state has been given; from here on, changes only."""


async def changes(
    bootstrap_servers: str,
    topic: str,
    state_topic: str,
    stop: asyncio.Event,
    on_gap: Callable[[StatusChanged, int], None] = lambda event, last: None,
    on_skip: Callable[[], None] = lambda: None,
) -> AsyncIterator[Batch]:
    """The states, then the changes, until `stop` is set. `on_gap(event, last_seq)` when an event's seq jumps
    past its pair's last + 1 (events lost on the topic); `on_skip()` for a message that is not an event, or a
    state record that is not a PairState."""
    event_ends = await end_offsets(bootstrap_servers, topic)  # first: the states read next are at least as new
    state_ends = await end_offsets(bootstrap_servers, state_topic, settled=True)
    last: dict[bytes, int] = {}  # the last seq given per pair key
    for partition, ends in sorted(state_ends.items()):
        latest: dict[bytes, bytes] = {}
        async for record in read_to(bootstrap_servers, state_topic, {partition: ends}):
            if record.key is not None:
                if record.value is None:
                    latest.pop(record.key, None)
                else:
                    latest[record.key] = record.value
        states = []
        for key, value in latest.items():
            try:
                states.append(PairState.model_validate_json(value))
            except ValidationError as e:
                on_skip()
                log.warning(
                    "skipped the state of %r on %s: not a PairState: %s", key, state_topic, e.errors()[0]["msg"]
                )
        del latest
        for state in states:
            last[state.key] = state.seq
        for i in range(0, len(states), STATES_PER_BATCH):
            yield Batch(states=states[i : i + STATES_PER_BATCH])
    log.info("bootstrap: %d pair states read from %s; following %s", len(last), state_topic, topic)
    yield Batch(caught_up=True)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, isolation_level="read_committed", enable_auto_commit=False,
        auto_offset_reset="earliest",  # E deleted by retention meanwhile: the oldest left (a gap is reported)
    )  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(event_ends)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, event_ends[tp.partition][1])
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=500, max_records=1000)
            given = []
            for _, event in events_of((m for ms in fetched.values() for m in ms), log, on_skip):
                if not isinstance(event, StatusChanged):  # version 1: no seq to place it by
                    on_skip()
                    log.warning("skipped a schema_version 1 event after the bootstrap: %s", event.event_id)
                    continue
                seen = last.get(event.key, 0)
                if event.seq <= seen:
                    continue  # already in the state (or given)
                if event.seq > seen + 1:
                    on_gap(event, seen)
                last[event.key] = event.seq
                given.append(event)
            if given:
                yield Batch(changes=given, caught_up=True)
    finally:
        await consumer.stop()
