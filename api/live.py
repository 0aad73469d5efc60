"""Live status changes for the API's streams: one Kafka consumer per API process (no consumer group: each process
reads every partition, from the end, `read_committed`), fanned out to each connected client through a queue of
its own. A client more than API_LIVE_QUEUE events behind is dropped with a reason, so a slow client never slows
the feed or the others; so is one whose key is revoked (`end_for_keys`). The consumer starts with the first
client and then runs until the process stops."""

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from api.problems import ApiError
from bridge.events import AnyStatusChanged
from common import kafka
from common.retry import Backoff, StateLog, retry
from consumers.events import events_of

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 10.0

# WebSocket close codes, by why the feed ends a client (SSE sends the reason in `event: closed`).
TOO_SLOW = 1013  # "try again later": the client fell too far behind
GOING_AWAY = 1001  # the API is shutting down
KEY_REVOKED = 4401  # the key that opened the stream was revoked (4000-4999: the application's own)


class LiveUnavailable(ApiError):
    status, type, title = 503, "/problems/live-unavailable", "The live feed cannot reach Kafka"


@dataclass(frozen=True)
class Change:
    """A status change as the streams send it, serialized once for all clients."""

    event: AnyStatusChanged
    json: str
    sse: str

    @classmethod
    def of(cls, event: AnyStatusChanged) -> "Change":
        data = event.model_dump_json()
        return cls(event, data, f"id: {event.event_id}\nevent: status-changed\ndata: {data}\n\n")


@dataclass(eq=False)
class Subscription:
    key_id: int
    """The API key that opened it: the stream ends when the key is revoked."""
    product_id: int | None
    warehouse_id: int | None
    queue: asyncio.Queue[Change | None]
    dropped: str | None = field(default=None)
    """Why the feed dropped this client, once it has."""
    close_code: int = TOO_SLOW
    """The WebSocket close code that says why."""

    def wants(self, event: AnyStatusChanged) -> bool:
        return (self.product_id is None or event.product_id == self.product_id) and (
            self.warehouse_id is None or event.warehouse_id == self.warehouse_id
        )

    async def next(self) -> Change | None:
        """The next change; None once the client is dropped."""
        return await self.queue.get()

    def pending(self) -> list[Change | None]:
        """Every change already waiting (a client that fell behind catches up in one write)."""
        waiting = []
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        return waiting


class LiveFeed:
    def __init__(self, bootstrap: str, topic: str, queue_size: int) -> None:
        self.bootstrap, self.topic, self.queue_size = bootstrap, topic, queue_size
        self.subscriptions: set[Subscription] = set()
        self.ready = asyncio.Event()
        self.backoff = Backoff(first=0.5, cap=5.0)
        self.state = StateLog(log)
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, key_id: int, product_id: int | None, warehouse_id: int | None) -> Subscription:
        """A new client's subscription; every event the feed reads from now on that matches reaches it."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-feed")
        try:
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_S)
        except TimeoutError as e:
            raise LiveUnavailable(
                f"the live feed could not reach Kafka within {READY_TIMEOUT_S:g} s; try again",
                headers={"Retry-After": "5"},
            ) from e
        subscription = Subscription(key_id, product_id, warehouse_id, asyncio.Queue(self.queue_size))
        self.subscriptions.add(subscription)
        return subscription

    def health(self) -> str:
        if self._task is None:
            return "not used yet"
        return "ok" if self.ready.is_set() else "the live feed cannot reach Kafka; it keeps trying"

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def key_ids(self) -> set[int]:
        """The keys that opened the streams now open."""
        return {s.key_id for s in self.subscriptions}

    def end_for_keys(self, key_ids: set[int]) -> None:
        """Ends every stream opened by one of `key_ids` (revoked keys), telling its client why."""
        for subscription in list(self.subscriptions):
            if subscription.key_id in key_ids:
                self._drop(subscription, "the API key was revoked", KEY_REVOKED)

    def _deliver(self, event: AnyStatusChanged) -> None:
        change = Change.of(event)
        for subscription in list(self.subscriptions):
            if not subscription.wants(event):
                continue
            try:
                subscription.queue.put_nowait(change)
            except asyncio.QueueFull:
                self._drop(subscription, f"too slow: more than {self.queue_size} events behind", TOO_SLOW)

    def _drop(self, subscription: Subscription, reason: str, close_code: int) -> None:
        self.subscriptions.discard(subscription)
        subscription.dropped, subscription.close_code = reason, close_code
        while not subscription.queue.empty():  # what it had not read is lost to it anyway: make room for the end
            subscription.queue.get_nowait()
        subscription.queue.put_nowait(None)

    async def _run(self) -> None:
        await retry(self._read, retriable=lambda e: True, backoff=self.backoff, on_retry=self._lost)

    def _lost(self, e: Exception, delay: float) -> None:
        # Kafka out of reach: clients keep their streams; they miss what passes meanwhile.
        self.ready.clear()
        self.state("live feed: cannot reach Kafka", f"{e or type(e).__name__}; retrying", logging.WARNING)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, isolation_level="read_committed",
            auto_offset_reset="latest", enable_auto_commit=False,
        )  # fmt: skip
        try:
            await consumer.start()
            while not consumer.assignment():  # no group: it assigns itself every partition, once it knows them
                await asyncio.sleep(0.05)
            for tp in consumer.assignment():
                await consumer.position(tp)  # from the end as of now
            self.ready.set()
            self.backoff.reset()
            self.state(f"live feed: reading {self.topic}")
            # Through an outage the consumer just reads nothing: the watch says when Kafka goes and comes back.
            watching = asyncio.create_task(kafka.watch(consumer, log, what="live feed: "))
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for _, event in events_of(itertools.chain(*batches.values()), log):
                        self._deliver(event)
            finally:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def close(self) -> None:
        """Stops the consumer and ends every stream with a reason; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for subscription in list(self.subscriptions):
            self._drop(subscription, "the API is shutting down", GOING_AWAY)
