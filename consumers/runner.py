"""The consume loop both consumers share. A consumer group reads the topic with `isolation_level=read_committed`
(only events of committed bridge transactions); batches go to a handler, and the group's offsets are committed
only after the handler returns, so a crash replays, never skips. A message that is not a StatusChanged of a known
schema_version is skipped and reported (a metric and a log line naming partition and offset). SIGINT/SIGTERM
finish the batch in hand and stop."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from bridge.events import StatusChanged
from bridge.metrics import Counter, serve
from consumers.config import ConsumerSettings
from consumers.events import Skipped, parse

log = logging.getLogger(__name__)
BATCH_MAX = 500
START_RETRY_S = 2.0
Handler = Callable[[list[tuple[Any, StatusChanged]]], Awaitable[None]]


class ConsumerMetrics:
    def __init__(self, name: str) -> None:
        self.handled = Counter(f"warehouse_{name}_events_total", "Status-change events handled.")
        self.skipped = Counter(
            f"warehouse_{name}_skipped_messages_total",
            "Messages skipped: not a StatusChanged of a schema_version this consumer reads.",
        )
        self.assigned = False

    def render(self) -> str:
        return self.handled.render() + self.skipped.render()

    def readiness(self) -> tuple[bool, dict[str, object]]:
        return self.assigned, {"partitions_assigned": self.assigned}


async def _started(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
    """Starts the consumer, waiting for Kafka (and the topic) as long as it takes, reported once; False if stopped
    first."""
    reported = False
    while not stop.is_set():
        try:
            if not await _unless_stopped(consumer.start(), stop):
                return False
            if reported:
                log.info("Kafka is reachable again")
            return True
        except KafkaError as e:
            if not reported:
                log.warning("cannot reach Kafka (%s); retrying every %g s", type(e).__name__, START_RETRY_S)
                reported = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), START_RETRY_S)
    return False


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Runs `work` unless `stop` comes first (then cancels it): whether it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True


async def _assigned(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
    """Waits until the group gave this consumer its partitions and their start positions are known."""
    while not consumer.assignment():
        if stop.is_set():
            return False
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)
    return True


class Stopped(Exception):
    """SIGINT/SIGTERM came while a handler was waiting (its batch stays uncommitted: it comes again)."""


async def consume(
    settings: ConsumerSettings,
    handler: Handler,
    metrics: ConsumerMetrics,
    stop: asyncio.Event,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    consumer = AIOKafkaConsumer(
        settings.kafka_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset=settings.start,
    )
    try:
        if not await _started(consumer, stop):
            return
        if not await _assigned(consumer, stop):
            return
        metrics.assigned = True
        on_ready()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH_MAX)
            if not batches:
                continue
            events = []
            for messages in batches.values():
                for message in messages:
                    parsed = parse(message.value)
                    if isinstance(parsed, Skipped):
                        metrics.skipped.inc()
                        log.warning(
                            "skipped the message at partition %d, offset %d: %s",
                            message.partition, message.offset, parsed.reason,
                        )  # fmt: skip
                    else:
                        events.append((message, parsed))
            if events:
                await handler(events)
                metrics.handled.inc(len(events))
            try:
                await consumer.commit()
            except KafkaError as e:  # a rebalance or an outage: these messages come again, which handlers allow
                log.warning("could not commit offsets (%s); the batch will be delivered again", type(e).__name__)
    finally:
        await consumer.stop()


def run(
    name: str, settings: ConsumerSettings, metrics: ConsumerMetrics, work: Callable[[asyncio.Event], Awaitable[None]]
) -> int:
    """A consumer process: metrics on its port, `work` until SIGINT/SIGTERM; exit 0 when stopped so."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            server = await serve(metrics, settings.consumer_metrics_host, settings.metrics_port)
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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    log.info("%s: topic %s", name, settings.kafka_topic)
    return asyncio.run(main())
