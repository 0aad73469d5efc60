"""`python -m consumers.store`: persists every status change into `status_change_log` (key: event_id).

Each batch is written in one transaction, and the group's Kafka offsets are committed only after it commits: a
crash between the two delivers the batch again, and the rows already stored are left as they are. So the log
holds every event of the topic exactly once. Consumer group STORE_GROUP (default `warehouse-store`); a new group
starts at the beginning of the topic. While PostgreSQL is out of reach it retries the batch (nothing is committed
to Kafka meanwhile). An event PostgreSQL refuses (a value out of its range) is skipped and reported, as a message
that does not parse is: one bad event never stops the log."""

import asyncio
import contextlib
import logging
import sys
from typing import Any

import asyncpg
from pydantic import ValidationError

from bridge.events import StatusChanged
from consumers.config import StoreSettings
from consumers.runner import ConsumerMetrics, Stopped, consume, run
from db.connect import CONNECTION_LOST
from db.queries import queries

RETRY_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
log = logging.getLogger("consumers.store")
_UNREACHABLE = (*CONNECTION_LOST, asyncpg.InterfaceError)  # InterfaceError: the connection object is closed


def _columns(events: list[tuple[Any, StatusChanged]]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(10)]
    for message, e in events:
        row = (e.event_id, e.occurred_at, e.product_id, e.warehouse_id, e.old_status, e.new_status, e.quantity,
               e.operation_id, message.partition, message.offset)  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


class Log:
    """The status_change_log table, over one connection made again when lost."""

    def __init__(self, url: str, stop: asyncio.Event, metrics: ConsumerMetrics) -> None:
        self.url, self.stop, self.metrics = url, stop, metrics
        self.conn: asyncpg.Connection | None = None

    async def write(self, events: list[tuple[Any, StatusChanged]]) -> None:
        try:
            await self._insert(events)
        except asyncpg.PostgresError as e:
            if isinstance(e, _UNREACHABLE):
                raise
            # Something in the batch is refused: store the rest one by one, and skip (and report) what is refused.
            log.warning("a batch of %d events was refused (%s); storing them one by one", len(events), e)
            for one in events:
                try:
                    await self._insert([one])
                except asyncpg.PostgresError as refused:
                    if isinstance(refused, _UNREACHABLE):
                        raise
                    self.metrics.skipped.inc()
                    log.warning("skipped the message at partition %d, offset %d: PostgreSQL refused it: %s",
                                one[0].partition, one[0].offset, refused)  # fmt: skip

    async def _insert(self, events: list[tuple[Any, StatusChanged]]) -> None:
        """Retries while PostgreSQL is out of reach; raises Stopped if told to stop meanwhile."""
        columns = _columns(events)
        delay = 0.5
        while True:
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
                await self.conn.execute(queries("consumers")["store_events"], *columns)
                return
            except _UNREACHABLE as e:
                log.warning("cannot store %d events (%s); retrying in %.1f s", len(events), e, delay)
                self.conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    raise Stopped from e
                delay = min(delay * 2, RETRY_MAX_S)

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            await self.conn.close()


def main() -> int:
    try:
        settings = StoreSettings()
    except ValidationError as e:
        print(f"consumers.store: invalid settings:\n{e}", file=sys.stderr)  # noqa: T201
        return 2
    metrics = ConsumerMetrics("store")

    async def work(stop: asyncio.Event) -> None:
        table = Log(settings.database_url, stop, metrics)
        try:
            await consume(settings, table.write, metrics, stop, on_ready=lambda: log.info("storing status changes"))
        finally:
            await table.close()

    return run("consumers.store", settings, metrics, work)


if __name__ == "__main__":
    sys.exit(main())
