"""The load script: writes many operations with COPY, several workers (and several copies) in parallel.

Each worker keeps its own share of every pair's stock (what it received minus what it shipped) and never
ships more than that share, so no batch can fail on stock however many workers and copies run at once.

A worker whose connection is lost (PostgreSQL restarting, say) reconnects for up to RECONNECT_FOR_S and goes on
with the next batch. The batch in flight may or may not have been committed: it is counted apart, and its worker
then assumes, per pair, the smaller of the two shares it could have.
"""

import asyncio
import functools
import io
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from common.retry import Backoff, retry
from common.stopping import pause
from db.connect import DatabaseUnavailable, connect, describe
from db.errors import DatabaseError, connection_lost, postgres_failed, retry_reason
from db.queries import queries

COPY_COLUMNS = ("product_id", "warehouse_id", "quantity", "operation_type")
MAX_ATTEMPTS = 5
MAX_QUANTITY = 10
RECONNECT_FOR_S = 60.0


@dataclass
class OperationGenerator:
    """Random receipts and shipments over products and warehouses; shipments stay within this worker's share."""

    rng: random.Random
    products: int
    warehouses: int
    shares: dict[tuple[int, int], int] = field(default_factory=dict)

    def batch(self, size: int) -> tuple[bytes, dict[tuple[int, int], int]]:
        """COPY text for `size` operations, and the shares as they will be once it is committed."""
        shares = dict(self.shares)
        lines = []
        rng = self.rng
        for _ in range(size):
            key = (rng.randint(1, self.products), rng.randint(1, self.warehouses))
            share = shares.get(key, 0)
            if share > 0 and rng.random() < 0.55:
                quantity = -rng.randint(1, min(share, MAX_QUANTITY))
                kind = "shipment"
            else:
                quantity = rng.randint(1, MAX_QUANTITY)
                kind = "receipt"
            shares[key] = share + quantity
            lines.append(f"{key[0]}\t{key[1]}\t{quantity}\t{kind}\n")
        return "".join(lines).encode(), shares

    def unknown_outcome(self, shares: dict[tuple[int, int], int]) -> None:
        """The batch that would have made `shares` may or may not be committed: keep the smaller share of each
        pair, so a later shipment never counts on stock that may not be there."""
        self.shares = {pair: min(self.shares.get(pair, 0), share) for pair, share in shares.items()}


async def copy_batch(conn: asyncpg.Connection, table: str, payload: bytes) -> None:
    await conn.copy_to_table(table, source=io.BytesIO(payload), columns=list(COPY_COLUMNS), format="text")


@dataclass
class LoadStats:
    written: int = 0
    unknown: int = 0  # operations of batches in flight when a connection was lost: committed or not
    connection_losses: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


async def ensure_reference_data(conn: asyncpg.Connection, products: int, warehouses: int) -> None:
    q = queries("load")
    await conn.execute(q["ensure_products"], products)
    await conn.execute(q["ensure_warehouses"], warehouses)


async def reconnect(database_url: str, stats: LoadStats) -> asyncpg.Connection:
    """A new connection, trying for up to RECONNECT_FOR_S; reported once per loss on stderr."""
    stats.connection_losses += 1
    sys.stderr.write(f"\nconnection to PostgreSQL at {describe(database_url)} lost; reconnecting\n")
    try:
        return await retry(
            lambda: asyncpg.connect(database_url, timeout=5),
            retriable=postgres_failed,
            backoff=Backoff(first=1.0, cap=1.0),
            give_up_after=RECONNECT_FOR_S,
        )
    except Exception as e:
        if not postgres_failed(e):
            raise
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(database_url)} unreachable for {RECONNECT_FOR_S:g} s ({e}); "
            "every committed batch is kept"
        ) from e


async def run_worker(
    database_url: str, generator: OperationGenerator, operations: int, batch_size: int, stats: LoadStats
) -> None:
    conn = await connect(database_url)
    try:
        remaining = operations
        while remaining > 0:
            size = min(batch_size, remaining)
            payload, shares = generator.batch(size)
            try:
                await retry(
                    functools.partial(copy_batch, conn, "warehouse_operations", payload),
                    retriable=lambda e: not connection_lost(e) and retry_reason(e) is not None,
                    backoff=Backoff(first=0.05, cap=0.4),
                    attempts=MAX_ATTEMPTS,
                    on_retry=lambda e, _: stats.retries.update([str(retry_reason(e))]),
                )
            except Exception as e:
                if connection_lost(e):
                    stats.unknown += size
                    generator.unknown_outcome(shares)
                    conn.terminate()
                    conn = await reconnect(database_url, stats)
                elif isinstance(e, asyncpg.PostgresError):
                    stats.rejected[f"{e.sqlstate}: {str(e).split(':')[0]}"] += size
                else:
                    raise
            else:
                generator.shares = shares
                stats.written += size
            remaining -= size
    finally:
        await conn.close()


def peak_memory_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM counts only what ran after exec; ru_maxrss (the
    fallback elsewhere) also counts the parent's image a process was forked from."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def progress_line(done: int, total: int, elapsed: float) -> str:
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>10,}/{total:,} ops  {rate:>9,.0f} ops/s  ETA {eta:4.0f}s"


async def report_progress(
    done: Callable[[], int], total: int, started: float, stop: asyncio.Event, interval: float = 0.5
) -> None:
    tty = sys.stderr.isatty()
    last_line = 0.0
    while not stop.is_set():
        await pause(stop, interval)
        now = time.monotonic()
        if tty or now - last_line >= 5 or stop.is_set():  # a log file gets a line every 5 s, not a bar
            last_line = now
            end = "\r" if tty and not stop.is_set() else "\n"
            sys.stderr.write(progress_line(done(), total, now - started) + end)
            sys.stderr.flush()


async def load(
    database_url: str,
    operations: int,
    workers: int,
    products: int,
    warehouses: int,
    batch_size: int,
    seed: int | None,
    show_progress: bool = True,
) -> tuple[LoadStats, float, int]:
    """Write `operations` operations; return the stats, the elapsed seconds and the status changes counted."""
    master = random.Random(seed)
    share, extra = divmod(operations, workers)
    generators = [
        OperationGenerator(random.Random(master.getrandbits(64)), products, warehouses) for _ in range(workers)
    ]
    stats = LoadStats()
    count_changes = queries("load")["status_change_count"]
    control = await connect(database_url)
    try:
        await ensure_reference_data(control, products, warehouses)
        changes_before: int = await control.fetchval(count_changes)
    finally:
        await control.close()
    started = time.monotonic()
    stop = asyncio.Event()
    reporter = (
        asyncio.create_task(
            report_progress(lambda: stats.written + stats.unknown + stats.rejected_total, operations, started, stop)
        )
        if show_progress
        else None
    )
    try:
        async with asyncio.TaskGroup() as tg:
            for i, generator in enumerate(generators):
                count = share + (1 if i < extra else 0)
                tg.create_task(run_worker(database_url, generator, count, batch_size, stats))
    except* DatabaseError as group:  # one worker's error (PostgreSQL gone for good) is the command's
        raise group.exceptions[0] from None
    finally:
        stop.set()
        if reporter:
            await reporter
    elapsed = time.monotonic() - started
    control = await connect(database_url)  # a new one: the first may have been lost with a restart
    try:
        changes_after: int = await control.fetchval(count_changes)
    finally:
        await control.close()
    return stats, elapsed, changes_after - changes_before
