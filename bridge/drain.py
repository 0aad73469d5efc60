"""The leader's loop: read the oldest outbox rows (from the SQL function status_change_batch, which gives each
row's key, JSON value, seq and CloudEvents time, and each pair's current-state record, ready-made), publish them in
one Kafka transaction, delete them (which counts them into status_change_published, numbering what follows);
when the outbox is empty, listen for a wake-up (the protocol of notify_status_change in the migrations), with
BRIDGE_POLL_INTERVAL as the fallback.

Behind a backlog the work is pipelined: while batch N is in its Kafka transaction batch N+1 is read, and while
N+1 is sent N is deleted; N+1 commits only after N's deletion, so the recovery never has more than one batch to
delete.

A snapshot requested (`python -m bridge snapshot`, table state_snapshots) is written here too, a chunk of pairs
at a time between batches, only when nothing is in flight: then the database holds what the topic last got for
each pair, so a chunk never writes an older state over a newer one. While a snapshot runs (or a look for a request
is due) the pipeline stops after the batch in flight, so that a chunk goes between every two batches even behind a
backlog."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from bridge.config import BridgeSettings
from bridge.metrics import BridgeMetrics
from bridge.sending import Publisher
from common.stopping import wait_any
from db.queries import queries

log = logging.getLogger("bridge")

CHANNEL = "warehouse_status_changes"  # the channel notify_status_change notifies on
SNAPSHOT_CHUNK = 5000  # pairs per Kafka transaction of a snapshot
SNAPSHOT_CHECK_S = 10.0  # a look for a snapshot request besides the wake-up `python -m bridge snapshot` sends


class Drain:
    def __init__(
        self,
        settings: BridgeSettings,
        stop: asyncio.Event,
        metrics: BridgeMetrics,
        publisher: Publisher,
        control: asyncpg.Connection,
        work: asyncpg.Connection,
    ) -> None:
        self.settings, self.stop, self.metrics, self.publisher = settings, stop, metrics, publisher
        self.control, self.work = control, work
        self.sql = queries("bridge")
        self.snapshot_due = 0.0  # when to look for a snapshot request next (loop time); 0: now
        self.snapshot_running = False

    async def run(self) -> None:
        """Publishes what the outbox holds and what comes, until the bridge stops."""
        s, work = self.settings, self.work
        wake = asyncio.Event()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            if payload == "snapshot":
                self.snapshot_due = 0.0
            wake.set()

        await self.control.add_listener(CHANNEL, on_notify)
        while not self.stop.is_set():
            await self._read_backlog()
            await self._snapshot_chunk()
            rows = await work.fetch(self.sql["next_batch"], s.bridge_batch_size)
            if rows:
                await self._drain(rows)
                continue
            # Empty: listen. Taking "listening" waits for writers that skipped their wake-up; then look again.
            try:
                await self.control.execute(self.sql["start_listening"])
            except asyncpg.LockNotAvailableError:
                continue  # a writer holds it for long (lock_timeout); look at the outbox again
            try:
                wake.clear()
                rows = await work.fetch(self.sql["next_batch"], s.bridge_batch_size)
                if not rows and not self.snapshot_running and self.snapshot_due:
                    await wait_any(self.stop, wake, timeout=s.bridge_poll_interval)
            finally:
                await self.control.execute(self.sql["stop_listening"])
            if rows:
                await self._drain(rows)

    async def _read_backlog(self) -> None:
        await self.metrics.read_backlog(self.work, asyncio.get_running_loop().time())

    async def _drain(self, rows: Sequence[asyncpg.Record]) -> None:
        """Publishes batch after batch until the outbox is empty (or the bridge stops), pipelined (see the module's
        docstring). Returns with nothing in flight."""
        work, publisher = self.work, self.publisher
        deleting: asyncio.Future[str] | None = None
        try:
            while rows:
                ids = [row["id"] for row in rows]
                transaction = asyncio.ensure_future(publisher.transaction(rows, ids, after=deleting))
                try:
                    if deleting is not None:
                        await deleting
                    await self._read_backlog()
                    # Read ahead only while a backlog fills whole batches: caught up, a batch read this early
                    # would miss the changes committed during this one's transaction, and wait a round longer.
                    behind_a_backlog = len(rows) == self.settings.bridge_batch_size
                    ahead = await self._fetch_after(ids) if behind_a_backlog and self._reading_ahead() else None
                    committed_at = await publisher.committed(transaction, len(rows))
                finally:
                    if not transaction.done():
                        transaction.cancel()
                        await asyncio.gather(transaction, return_exceptions=True)
                deleting = asyncio.ensure_future(work.execute(self.sql["delete_published"], ids))
                self.metrics.committed([row["occurred_epoch"] for row in rows], committed_at)
                if ahead is None:  # caught up, stopping, a snapshot's turn, or rows committed late: read afresh
                    await deleting
                    await self._snapshot_chunk()
                    batch_size = self.settings.bridge_batch_size
                    rows = [] if self.stop.is_set() else await work.fetch(self.sql["next_batch"], batch_size)
                else:
                    rows = ahead
            if deleting is not None:
                await deleting
        finally:
            if deleting is not None and not deleting.done():
                deleting.cancel()  # an error on the way: the rows stay, the recovery deletes them
                await asyncio.gather(deleting, return_exceptions=True)

    def _reading_ahead(self) -> bool:
        """Whether to read the next batch while this one is in flight: not when stopping, nor when a snapshot's
        chunk (or a look for a request) is due, which needs nothing in flight."""
        due = self.snapshot_running or asyncio.get_running_loop().time() >= self.snapshot_due
        return not (self.stop.is_set() or due)

    async def _snapshot_chunk(self) -> None:
        """The next chunk of a requested snapshot, if one is pending; to be called with nothing in flight. The
        request is looked for when one is announced (or running), and every SNAPSHOT_CHECK_S: not a query per
        batch."""
        s, sql, work = self.settings, self.sql, self.work
        now = asyncio.get_running_loop().time()
        if self.stop.is_set() or not (self.snapshot_running or now >= self.snapshot_due):
            return
        pending = await work.fetchrow(sql["snapshot_pending"], s.bridge_transactional_id)
        self.snapshot_running = pending is not None
        if pending is None:
            self.snapshot_due = now + SNAPSHOT_CHECK_S
            return
        after = (pending["after_product"], pending["after_warehouse"])
        if after[0] is None:
            after = (-(2**63), -(2**63))
        chunk = await work.fetch(sql["snapshot_chunk"], *after, SNAPSHOT_CHUNK)
        if chunk:
            await self.publisher.states([(r["key"].encode(), r["value"].encode()) for r in chunk])
            after = (chunk[-1]["product_id"], chunk[-1]["warehouse_id"])
        last = len(chunk) < SNAPSHOT_CHUNK
        await work.execute(
            sql["snapshot_progress"], s.bridge_transactional_id, *after, len(chunk), last, pending["requested_at"]
        )
        if last:
            log.info("snapshot: wrote %d pairs to %s", pending["written"] + len(chunk), s.kafka_stock_status_topic)

    async def _fetch_after(self, ids: Sequence[int]) -> list[asyncpg.Record] | None:
        """The next batch while `ids` are still in the outbox, or None when rows committed late behind them."""
        rows = await self.work.fetch(self.sql["next_batch_after"], max(ids), self.settings.bridge_batch_size)
        if rows[0]["behind"] != len(ids):
            return None
        return [row for row in rows if row["id"] is not None]
