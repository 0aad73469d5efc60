"""`python -m consumers.store`: persists every status change into `status_change_log` (key: event_id).

Each batch is written in one transaction, and the group's Kafka offsets are committed only after it commits: a
crash between the two delivers the batch again, and the rows already stored are left as they are. So the log
holds every event of the topic exactly once. Consumer group CONSUMER_GROUP (default `warehouse-store`); a new
group starts at the beginning of the topic. While PostgreSQL is out of reach it retries the batch (nothing is
committed to Kafka meanwhile)."""

import asyncio
import logging
import sys
from typing import Any

import asyncpg
from pydantic import ValidationError

from bridge.events import StatusChanged
from consumers.config import ConsumerSettings
from consumers.runner import ConsumerMetrics, consume, run
from db.connect import DatabaseUnavailable, connect
from db.queries import queries

METRICS_PORT = 9111
RETRY_MAX_S = 5.0
log = logging.getLogger("consumers.store")


class Log:
    """The status_change_log table, over one connection made again when lost."""

    def __init__(self, url: str, stop: asyncio.Event) -> None:
        self.url, self.stop = url, stop
        self.conn: asyncpg.Connection | None = None

    async def write(self, events: list[tuple[Any, StatusChanged]]) -> None:
        columns: list[list[Any]] = [[] for _ in range(10)]
        for message, e in events:
            row = (e.event_id, e.occurred_at, e.product_id, e.warehouse_id, e.old_status, e.new_status, e.quantity,
                   e.operation_id, message.partition, message.offset)  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        delay = 0.5
        while True:
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await connect(self.url)
                await self.conn.execute(queries("consumers")["store_events"], *columns)
                return
            except (DatabaseUnavailable, OSError, asyncpg.PostgresConnectionError,
                    asyncpg.InterfaceError) as e:  # fmt: skip
                if self.stop.is_set():
                    raise  # offsets stay uncommitted: the batch comes again after a restart
                log.warning("cannot store %d events (%s); retrying in %.1f s", len(events), e, delay)
                self.conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            await self.conn.close()


def main() -> int:
    try:
        settings = ConsumerSettings()
    except ValidationError as e:
        print(f"consumers.store: invalid settings:\n{e}", file=sys.stderr)  # noqa: T201
        return 2
    metrics = ConsumerMetrics("store")

    async def work(stop: asyncio.Event) -> None:
        table = Log(settings.database_url, stop)
        try:
            await consume(
                settings, settings.consumer_group or "warehouse-store", settings.consumer_start or "earliest",
                table.write, metrics, stop, on_ready=lambda: log.info("storing status changes"),
            )  # fmt: skip
        finally:
            await table.close()

    return run("consumers.store", settings, metrics, METRICS_PORT, work)


if __name__ == "__main__":
    sys.exit(main())
