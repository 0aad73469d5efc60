"""The consume loop both consumers share. A consumer group reads the topic with `isolation_level=read_committed`
(only events of committed bridge transactions); batches go to a handler, and the group's offsets are committed
only after the handler returns, so a crash replays, never skips. A message that is not a StatusChanged of a known
schema_version is skipped and reported (a metric and a log line naming partition and offset). SIGINT/SIGTERM
finish the batch in hand and stop.

Which partitions the consumer holds it learns from the group's rebalances (a ConsumerRebalanceListener); it is
ready (/readyz) while it holds some and Kafka answers (common/kafka.py asks every 2 s). Its lag, the messages
published and not yet committed by its group, is asked of Kafka every LAG_EVERY_S in a task of its own, so a
handler stuck on an outage does not stop the gauge from growing."""

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from bridge.events import AnyStatusChanged
from common import kafka, logs
from common.metrics import new_registry, serve
from common.retry import Backoff, StateLog, retry
from common.stopping import Stopped, stop_on_signals, unless_stopped
from consumers.config import ConsumerSettings
from consumers.events import events_of

log = logging.getLogger(__name__)
BATCH_MAX = 500
LAG_EVERY_S = 5.0
START_RETRY_S = 2.0
Handler = Callable[[list[tuple[Any, AnyStatusChanged]]], Awaitable[None]]


class ConsumerMetrics:
    """A consumer's registry, and what its /readyz says: the partitions it holds, and whether Kafka answers."""

    def __init__(self, name: str) -> None:
        self.registry = new_registry()
        self.handled = Counter(
            f"warehouse_{name}_events_total", "Status-change events handled.", registry=self.registry
        )
        self.skipped = Counter(
            f"warehouse_{name}_skipped_messages_total",
            "Messages skipped: not a StatusChanged of a schema_version this consumer reads.",
            registry=self.registry,
        )
        self.lag = Gauge(
            "warehouse_consumer_lag_messages",
            "Messages of its partitions published after the group's committed offsets (read every 5 s).",
            ["consumer"],
            registry=self.registry,
        ).labels(name)
        self.partitions: frozenset[int] = frozenset()
        self.kafka_ok = False

    def kafka_answers(self, ok: bool) -> None:
        self.kafka_ok = ok

    def readiness(self) -> tuple[bool, dict[str, object]]:
        return bool(self.partitions) and self.kafka_ok, {"partitions": sorted(self.partitions), "kafka": self.kafka_ok}


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the metrics' partitions as the group assigns and revokes them. It only records: it runs inside the
    group's rebalance, while the consumer sends no heartbeats, so anything slow here would cost the membership."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self.metrics = metrics

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.metrics.partitions = frozenset()
        if revoked:
            log.info("rebalance: gave back partitions %s", _numbers(revoked), extra={"partitions": _numbers(revoked)})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.metrics.partitions = frozenset(tp.partition for tp in assigned)
        log.info("rebalance: holds partitions %s", _numbers(assigned), extra={"partitions": _numbers(assigned)})


def _numbers(tps: set[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in tps)


async def _start(consumer: AIOKafkaConsumer, metrics: ConsumerMetrics, stop: asyncio.Event) -> None:
    """Starts the consumer, waiting for Kafka (and the topic) as long as it takes, reported once; Stopped if
    stopped first."""
    state = StateLog(log)

    def report(e: Exception, delay: float) -> None:
        state("cannot reach Kafka", f"{type(e).__name__}; retrying every {delay:g} s", logging.WARNING)

    await retry(
        lambda: unless_stopped(consumer.start(), stop),
        retriable=lambda e: isinstance(e, KafkaError),
        backoff=Backoff(first=START_RETRY_S, cap=START_RETRY_S),
        stop=stop,
        on_retry=report,
    )
    if state.state:
        log.info("Kafka is reachable again")
    metrics.kafka_answers(True)


async def consume(
    settings: ConsumerSettings,
    handler: Handler,
    metrics: ConsumerMetrics,
    stop: asyncio.Event,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset=settings.start,
    )
    consumer.subscribe([settings.kafka_topic], listener=Rebalances(metrics))
    try:
        try:
            await _start(consumer, metrics, stop)
        except Stopped:
            return
        watching = [
            asyncio.create_task(kafka.watch(consumer, log, metrics.kafka_answers, stop=stop), name="watch-kafka"),
            asyncio.create_task(_watch_lag(consumer, metrics, settings.start), name="watch-lag"),
        ]
        announced = False
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=BATCH_MAX)
                if not announced and metrics.partitions:
                    # Once, at the first assignment: its start positions known, what is published from now on is
                    # read (before the first batch is handled, so a "listening" line comes first).
                    for tp in consumer.assignment():
                        await consumer.position(tp)
                    announced = True
                    on_ready()
                if batches:
                    await _handle(consumer, batches, handler, metrics)
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)
    finally:
        await consumer.stop()


async def _watch_lag(consumer: AIOKafkaConsumer, metrics: ConsumerMetrics, start: str) -> None:
    """Every LAG_EVERY_S: the partitions' end offsets less the group's committed ones. Where the group has
    committed nothing yet it counts from where it starts: the beginning (`earliest`), or nothing (`latest`). No
    partitions held: 0. Kafka out of reach: the gauge keeps its last value (aiokafka waits for the coordinator),
    and /readyz says why."""
    while True:
        await asyncio.sleep(LAG_EVERY_S)
        held = list(consumer.assignment())
        try:
            if not held:
                metrics.lag.set(0)
                continue
            ends = await consumer.end_offsets(held)
            firsts = await consumer.beginning_offsets(held) if start == "earliest" else ends
            committed = [await consumer.committed(tp) for tp in held]
            done = [firsts[tp] if c is None else c for tp, c in zip(held, committed, strict=True)]
            metrics.lag.set(sum(max(ends[tp] - d, 0) for tp, d in zip(held, done, strict=True)))
        except KafkaError:
            continue
        except Exception:  # a bug here must not end the task: the gauge would stay as it is, unseen
            log.exception("could not read the consumer's lag")


async def _handle(
    consumer: AIOKafkaConsumer, batches: dict[Any, list[Any]], handler: Handler, metrics: ConsumerMetrics
) -> None:
    events = events_of(itertools.chain(*batches.values()), log, metrics.skipped.inc)
    if events:
        await handler(events)
        metrics.handled.inc(len(events))
    try:
        await consumer.commit()
    except KafkaError as e:  # a rebalance or an outage: these messages come again, which handlers allow
        log.warning("could not commit offsets (%s); the batch will be delivered again", type(e).__name__)


def run(
    name: str, settings: ConsumerSettings, metrics: ConsumerMetrics, work: Callable[[asyncio.Event], Awaitable[None]]
) -> int:
    """A consumer process: metrics on its port, `work` until SIGINT/SIGTERM; exit 0 when stopped so."""

    async def main() -> int:
        stop = stop_on_signals()
        try:
            server = await serve(
                metrics.registry, metrics.readiness, settings.consumer_metrics_host, settings.metrics_port
            )
        except OSError as e:
            log.error("cannot serve metrics on port %d: %s (set its *_METRICS_PORT)", settings.metrics_port, e)
            return 2
        try:
            await work(stop)
        except Stopped:
            log.info("stopped while waiting; the batch in hand stays uncommitted and comes again")
        finally:
            server.close()
        return 0

    logs.setup(settings.log_format)
    log.info("%s: topic %s", name, settings.kafka_topic)
    return asyncio.run(main())
