"""`python -m consumers.store`: persists every status change into `status_change_log` (key: event_id).

Each batch is written in one transaction, and the group's Kafka offsets are committed only after it commits: a
crash between the two delivers the batch again, and the rows already stored are left as they are. So the log
holds every event of the topic exactly once. Consumer group STORE_GROUP (default `warehouse-store`); a new group
starts at the beginning of the topic. While PostgreSQL is out of reach, or refuses the write for a reason other than
its data, it retries the batch (nothing is committed to Kafka meanwhile). An event whose data PostgreSQL refuses (a
value out of its range) is skipped and reported, as a message that does not parse is: one bad event never stops
the log."""

import asyncio
import logging
import sys
from typing import Any

import asyncpg
from pydantic import ValidationError

from bridge.events import AnyStatusChanged
from common.retry import Backoff, StateLog, retry
from consumers.config import StoreSettings
from consumers.runner import ConsumerMetrics, consume, run
from db.errors import postgres_failed, refused_value
from db.queries import queries

CONNECT_TIMEOUT_S = 5.0
log = logging.getLogger("consumers.store")


def _columns(events: list[tuple[Any, AnyStatusChanged]]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(13)]
    for message, e in events:
        row = (e.event_id, e.occurred_at, e.product_id, e.warehouse_id, e.old_status, e.new_status, e.quantity,
               e.operation_id, message.partition, message.offset, e.seq, e.cause, e.transfer_id)  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


class Log:
    """The status_change_log table, over one connection made again when lost."""

    def __init__(self, url: str, stop: asyncio.Event, metrics: ConsumerMetrics) -> None:
        self.url, self.stop, self.metrics = url, stop, metrics
        self.conn: asyncpg.Connection | None = None
        self.state = StateLog(log)

    async def write(self, events: list[tuple[Any, AnyStatusChanged]]) -> None:
        try:
            await self._insert(events)
        except Exception as e:
            if not refused_value(e):
                raise
            # Something in the batch is refused: store the rest one by one, and skip (and report) what is refused.
            log.warning("a batch of %d events was refused (%s); storing them one by one", len(events), e)
            for one in events:
                try:
                    await self._insert([one])
                except Exception as refused:
                    if not refused_value(refused):
                        raise
                    self.metrics.skipped.inc()
                    log.warning("skipped the message at partition %d, offset %d: PostgreSQL refused it: %s",
                                one[0].partition, one[0].offset, refused,
                                extra={"partition": one[0].partition, "offset": one[0].offset})  # fmt: skip

    async def _insert(self, events: list[tuple[Any, AnyStatusChanged]]) -> None:
        """Retries while PostgreSQL is out of reach or refuses the write for a reason other than its data (too many
        connections, a role without rights, a migration missing…): one line when that starts, one when it ends.
        Raises what refused the data, or Stopped if told to stop meanwhile."""
        columns = _columns(events)

        async def insert() -> None:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            await self.conn.execute(queries("consumers")["store_events"], *columns)

        def lost(e: Exception, delay: float) -> None:
            if self.conn is not None:  # made anew for the next attempt; this one may be broken
                self.conn.terminate()
                self.conn = None
            self.state(
                f"cannot store {len(events)} events", f"{e}; retrying until PostgreSQL takes them", logging.WARNING,
                events=len(events),
            )  # fmt: skip

        await retry(
            insert,
            retriable=lambda e: postgres_failed(e) and not refused_value(e),
            backoff=Backoff(first=0.5, cap=5.0),
            stop=self.stop,
            on_retry=lost,
        )
        if self.state.forget():
            log.info("PostgreSQL takes them again: stored %d events", len(events), extra={"events": len(events)})

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
