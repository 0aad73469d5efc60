"""The live feed's fan-out: a slow client is dropped with a reason; the others get every event."""

import asyncio
import uuid
from datetime import UTC, datetime

from api.live import LiveFeed
from bridge.events import StatusChanged


def change(product: int) -> StatusChanged:
    return StatusChanged(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), product_id=product, warehouse_id=1,
        old_status="out_of_stock", new_status="available", quantity=9, operation_id=1, seq=1, cause="receipt",
        transfer_id=None,
    )  # fmt: skip


async def started(feed: LiveFeed) -> None:
    """As if the Kafka consumer were running (the test hands events to the feed itself)."""
    feed._task = asyncio.create_task(asyncio.sleep(3600))
    feed.ready.set()


async def test_a_slow_client_is_dropped_with_a_reason_and_the_others_get_everything() -> None:
    feed = LiveFeed("unused:9092", "unused", queue_size=10)
    await started(feed)
    fast, slow = await feed.subscribe(1, None, None), await feed.subscribe(1, None, None)
    only_2 = await feed.subscribe(1, 2, None)
    received = []
    for i in range(100):
        feed._deliver(change(1 + i % 2))
        while not fast.queue.empty():  # the fast client keeps up
            delivered = await fast.next()
            assert delivered is not None
            received.append(delivered.event)
    assert len(received) == 100
    assert await slow.next() is None and slow.dropped == "too slow: more than 10 events behind"
    assert slow not in feed.subscriptions and fast in feed.subscriptions
    assert only_2.dropped is not None  # 50 matching events unread: dropped too
    await feed.close()
    assert await fast.next() is None and fast.dropped == "the API is shutting down"


async def test_filters_pick_product_and_warehouse() -> None:
    feed = LiveFeed("unused:9092", "unused", queue_size=10)
    await started(feed)
    product_2 = await feed.subscribe(1, 2, None)
    pair_2_1 = await feed.subscribe(1, 2, 1)
    pair_2_5 = await feed.subscribe(1, 2, 5)
    for product in (1, 2, 3):
        feed._deliver(change(product))
    assert product_2.queue.qsize() == 1 and pair_2_1.queue.qsize() == 1 and pair_2_5.queue.qsize() == 0
    await feed.close()
