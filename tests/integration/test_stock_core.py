"""The database core: balances, statuses, outbox and counter, as a warehouse user checks them."""

import asyncio
import io
import itertools
import os
import sys

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.load import COPY_COLUMNS, copy_batch, load
from db.verify import differences

pytestmark = pytest.mark.integration


def rule(quantity: int, threshold: int) -> str:
    return "out_of_stock" if quantity <= 0 else "running_low" if quantity <= threshold else "available"


async def make_reference(db: asyncpg.Connection, products: int = 3, warehouses: int = 3) -> None:
    await db.execute("INSERT INTO products (id, name) SELECT g, 'p' || g FROM generate_series(1, $1::int) g", products)
    await db.execute(
        "INSERT INTO warehouses (id, name) SELECT g, 'w' || g FROM generate_series(1, $1::int) g", warehouses
    )


async def insert(db: asyncpg.Connection, *ops: tuple[int, int, int]) -> None:
    """One INSERT statement holding all the given operations, in order."""
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) "
        "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])",
        [o[0] for o in ops], [o[1] for o in ops], [o[2] for o in ops],
    )  # fmt: skip


async def balance(db: asyncpg.Connection, product: int, warehouse: int) -> tuple[int, str] | None:
    row = await db.fetchrow(
        "SELECT quantity, status::text FROM stock_balance WHERE product_id = $1 AND warehouse_id = $2",
        product, warehouse,
    )  # fmt: skip
    return None if row is None else (row["quantity"], row["status"])


async def events(db: asyncpg.Connection) -> list[tuple[int, int, str, str, int]]:
    rows = await db.fetch(
        "SELECT product_id, warehouse_id, old_status::text, new_status::text, quantity "
        "FROM status_change_outbox ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def state(db: asyncpg.Connection) -> tuple[list[tuple[object, ...]], int, int]:
    ops = await db.fetchval("SELECT count(*) FROM warehouse_operations")
    rows = await db.fetch("SELECT * FROM stock_balance ORDER BY 1, 2")
    return [tuple(r) for r in rows], ops, await db.fetchval("SELECT status_change_count()")


# --- the rule and the transitions ---------------------------------------------------------------------


async def test_a_new_pair_starts_out_of_stock_and_each_crossing_is_one_event(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 5))  # out_of_stock -> running_low
    await insert(db, (1, 1, 10))  # running_low -> available
    await insert(db, (1, 1, -15), (1, 1, 3), (1, 1, -1))  # -> out_of_stock -> running_low, then none

    assert await balance(db, 1, 1) == (2, "running_low")
    assert await events(db) == [
        (1, 1, "out_of_stock", "running_low", 5),
        (1, 1, "running_low", "available", 15),
        (1, 1, "available", "out_of_stock", 0),
        (1, 1, "out_of_stock", "running_low", 3),
    ]
    assert await db.fetchval("SELECT status_change_count()") == 4
    assert await db.fetchval("SELECT status FROM products_status WHERE product_id = 1 AND warehouse_id = 1") == (
        "running_low"
    )


async def test_operation_type_follows_the_sign_when_omitted(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 4), (1, 1, -1))
    types = await db.fetch("SELECT operation_type::text FROM warehouse_operations ORDER BY id")
    assert [t[0] for t in types] == ["receipt", "shipment"]


async def test_copy_without_a_type_column_works(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await db.copy_to_table(
        "warehouse_operations", source=io.BytesIO(b"1\t1\t7\n1\t1\t-2\n"),
        columns=["product_id", "warehouse_id", "quantity"],
    )  # fmt: skip
    assert await balance(db, 1, 1) == (5, "running_low")


async def test_the_ledger_cannot_be_rewritten(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 4))
    with pytest.raises(asyncpg.PostgresError, match="invalid operation: warehouse_operations is a ledger") as e:
        await db.execute("UPDATE warehouse_operations SET quantity = 40")
    assert e.value.sqlstate == "WH004"
    assert await balance(db, 1, 1) == (4, "running_low")


# --- rejected statements leave nothing ----------------------------------------------------------------


async def test_an_insert_of_no_rows_changes_nothing(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 4))
    before = await state(db)

    await insert(db)

    assert await state(db) == before


async def test_negative_stock_in_a_single_insert_is_rejected_whole(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 4))
    before = await state(db)

    with pytest.raises(asyncpg.PostgresError) as e:
        await insert(db, (1, 1, -9))

    assert e.value.sqlstate == "WH001"
    assert str(e.value).startswith("insufficient stock: product 1 at warehouse 1 has 4,")
    assert "requests 9" in str(e.value)
    assert await state(db) == before


async def test_negative_stock_in_the_middle_of_a_batch_rejects_the_whole_batch(
    db: asyncpg.Connection,
) -> None:
    await make_reference(db)
    await insert(db, (2, 2, 3))
    before = await state(db)
    outbox_before = await events(db)

    with pytest.raises(asyncpg.PostgresError) as e:
        await copy_batch(db, "warehouse_operations", b"1\t1\t5\treceipt\n2\t2\t-4\tshipment\n3\t3\t9\treceipt\n")

    assert e.value.sqlstate == "WH001"
    assert "product 2 at warehouse 2 has 3, the shipment in row 2 of the statement requests 4" in str(e.value)
    assert await state(db) == before
    assert await events(db) == outbox_before


@pytest.mark.parametrize(("op", "sqlstate", "message"), [
    ((99, 1, 5), "WH002", "unknown product: 99 does not exist"),
    ((1, 99, 5), "WH003", "unknown warehouse: 99 does not exist"),
])  # fmt: skip
async def test_unknown_product_or_warehouse_is_rejected_and_nothing_stored(
    db: asyncpg.Connection, op: tuple[int, int, int], sqlstate: str, message: str
) -> None:
    await make_reference(db)
    for statement in ([op], [op, (1, 1, 5)]):  # the one-row path and the batch path
        with pytest.raises(asyncpg.PostgresError, match=message) as e:
            await insert(db, *statement)
        assert e.value.sqlstate == sqlstate
    assert await state(db) == ([], 0, 0)


# --- transfers, counts, thresholds ---------------------------------------------------------------------


async def test_a_transfer_moves_stock_atomically_with_one_transfer_id(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 20))

    transfer = await db.fetchval("SELECT transfer_stock(1, 1, 2, 15)")

    assert await balance(db, 1, 1) == (5, "running_low")
    assert await balance(db, 1, 2) == (15, "available")
    legs = await db.fetch("SELECT operation_type::text, quantity FROM warehouse_operations WHERE transfer_id = $1 "
                          "ORDER BY id", transfer)  # fmt: skip
    assert [tuple(r) for r in legs] == [("transfer_out", -15), ("transfer_in", 15)]


async def test_a_transfer_without_enough_stock_moves_nothing(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 3))
    before = await state(db)

    with pytest.raises(asyncpg.PostgresError, match="insufficient stock: product 1 at warehouse 1 has 3") as e:
        await db.fetchval("SELECT transfer_stock(1, 1, 2, 4)")

    assert e.value.sqlstate == "WH001"
    assert await state(db) == before
    for bad_args in ((1, 1, 1, 2), (1, 1, 2, 0), (1, None, 2, 1), (1, 1, None, 1), (None, 1, 2, 1), (1, 1, 2, None)):
        with pytest.raises(asyncpg.PostgresError, match="invalid operation") as e:
            await db.fetchval("SELECT transfer_stock($1, $2, $3, $4)", *bad_args)
        assert e.value.sqlstate == "WH004", bad_args
    for bad_args, sqlstate in (((1, 1, 99, 1), "WH003"), ((1, 99, 1, 1), "WH003"), ((99, 1, 2, 1), "WH002")):
        with pytest.raises(asyncpg.PostgresError) as e:
            await db.fetchval("SELECT transfer_stock($1, $2, $3, $4)", *bad_args)
        assert e.value.sqlstate == sqlstate, bad_args
    assert await state(db) == before


async def test_a_transfer_to_a_lower_warehouse_without_enough_stock_moves_nothing(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 2, 3), (1, 1, 7))
    before = await state(db)

    with pytest.raises(asyncpg.PostgresError, match="insufficient stock: product 1 at warehouse 2 has 3") as e:
        await db.fetchval("SELECT transfer_stock(1, 2, 1, 4)")  # the receiving leg is written first here

    assert e.value.sqlstate == "WH001"
    assert await state(db) == before


async def test_transfers_in_opposite_directions_at_once_never_deadlock(
    database_url: str, db: asyncpg.Connection
) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 1000), (1, 2, 1000))

    async def shuttle(direction: int) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for i in range(40):
                source = 1 + (direction + i) % 2
                await conn.fetchval("SELECT transfer_stock(1, $1, $2, 1)", source, 3 - source)
        finally:
            await conn.close()

    await asyncio.gather(*(shuttle(d) for d in range(8)))  # raises on the first deadlock

    assert await db.fetchval("SELECT sum(quantity) FROM stock_balance WHERE product_id = 1") == 2000
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations WHERE transfer_id IS NOT NULL") == 640
    assert await differences(db) == []


async def test_an_inventory_count_writes_the_difference_as_an_adjustment(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 30))

    adjustment = await db.fetchval("SELECT adjust_stock(1, 1, 8)")
    assert await db.fetchval("SELECT quantity FROM warehouse_operations WHERE id = $1", adjustment) == -22
    assert await balance(db, 1, 1) == (8, "running_low")
    assert await db.fetchval("SELECT adjust_stock(1, 1, 8)") is None  # the count matches: nothing written
    assert await db.fetchval("SELECT adjust_stock(1, 2, 4)") is not None  # a pair never stocked
    assert await balance(db, 1, 2) == (4, "running_low")
    with pytest.raises(asyncpg.PostgresError, match="unknown product"):
        await db.fetchval("SELECT adjust_stock(99, 1, 4)")


async def test_concurrent_one_row_shipments_never_oversell(database_url: str, db: asyncpg.Connection) -> None:
    """8 clients race to ship 1 each from a stock of 5: exactly 5 succeed; the others are refused whole."""
    await make_reference(db)
    await insert(db, (1, 1, 5))
    conns = [await asyncpg.connect(database_url) for _ in range(8)]
    start = asyncio.Event()

    async def ship(conn: asyncpg.Connection) -> str:
        await start.wait()
        try:
            await insert(conn, (1, 1, -1))
        except asyncpg.PostgresError as e:
            return str(e.sqlstate)
        return "ok"

    try:
        tasks = [asyncio.create_task(ship(c)) for c in conns]
        start.set()
        outcomes = sorted(await asyncio.gather(*tasks))
    finally:
        for c in conns:
            await c.close()
    assert outcomes == ["WH001"] * 3 + ["ok"] * 5
    assert await balance(db, 1, 1) == (0, "out_of_stock")
    assert (await events(db))[-1] == (1, 1, "running_low", "out_of_stock", 0)
    assert await db.fetchval("SELECT status_change_count()") == len(await events(db)) == 2
    assert await differences(db) == []


async def test_concurrent_counts_of_the_same_pair_never_add_up(database_url: str, db: asyncpg.Connection) -> None:
    await make_reference(db)
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(c.fetchval("SELECT adjust_stock(1, 1, 7)") for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert await balance(db, 1, 1) == (7, "running_low")


async def test_a_threshold_change_reevaluates_statuses_and_emits_their_changes(
    db: asyncpg.Connection,
) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 8), (1, 2, 30), (2, 1, 8))
    seen = len(await events(db))

    await db.execute("UPDATE products SET low_stock_threshold = 40 WHERE id = 1")

    assert await balance(db, 1, 1) == (8, "running_low")  # unchanged status, no event
    assert await balance(db, 1, 2) == (30, "running_low")
    assert await balance(db, 2, 1) == (8, "running_low")  # other product untouched
    assert (await events(db))[seen:] == [(1, 2, "available", "running_low", 30)]
    await db.execute("UPDATE products SET low_stock_threshold = 5 WHERE id = 1")
    assert (await events(db))[seen + 1 :] == [
        (1, 1, "running_low", "available", 8),
        (1, 2, "running_low", "available", 30),
    ]
    assert await db.fetchval("SELECT status_change_count()") == len(await events(db))
    assert await differences(db) == []


async def test_changed_at_is_the_time_of_the_last_status_change(db: asyncpg.Connection) -> None:
    await make_reference(db)

    async def write(statement: str, *args: object) -> object:
        """Runs the statement in its own transaction; returns that transaction's time (what now() gives it)."""
        async with db.transaction():
            await db.execute(statement, *args)
            return await db.fetchval("SELECT now()")

    async def changed_at(warehouse: int = 1) -> object:
        return await db.fetchval(
            "SELECT changed_at FROM products_status WHERE product_id = 1 AND warehouse_id = $1", warehouse
        )

    one_row = "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, $1)"
    first = await write(one_row, 5)  # a new pair (the general path): out_of_stock -> running_low
    assert await changed_at() == first
    await write(one_row, 1)  # a stocked pair (the one-row path), still running_low
    assert await changed_at() == first
    crossing = await write(one_row, 10)  # running_low -> available
    assert await changed_at() == crossing
    await write("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 2), (1, 1, -1)")
    assert await changed_at() == crossing  # a batch (the general path) that did not change the status
    await write(one_row, -1)
    assert await changed_at() == crossing
    lowered = await write("UPDATE products SET low_stock_threshold = 40 WHERE id = 1")  # 16 -> running_low
    assert await changed_at() == lowered
    await write("UPDATE products SET low_stock_threshold = 30 WHERE id = 1")  # still running_low
    await write(one_row, 1)
    assert await changed_at() == lowered
    assert await balance(db, 1, 1) == (17, "running_low")

    # A pair first seen by an inventory count (an empty row), then stocked.
    await write("SELECT adjust_stock(1, 2, 0)")
    stocked = await write("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 2, 5)")
    assert await changed_at(2) == stocked
    # Out and back within one transaction: the status changed (twice) at that transaction's time.
    async with db.transaction():
        both = await db.fetchval("SELECT now()")
        await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 2, 50)")
        await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 2, -50)")
    assert await changed_at(2) == both
    assert await balance(db, 1, 2) == (5, "running_low")


async def test_one_row_inserts_stay_index_lookups_after_a_batch_on_the_same_connection(
    database_url: str, db: asyncpg.Connection
) -> None:
    """The one-row path's plan is cached per connection; a batch first must not leave it scanning balances."""
    await make_reference(db, products=100, warehouses=10)
    payload = "".join(f"{p}\t{w}\t5\treceipt\n" for p in range(1, 101) for w in range(1, 11) for _ in range(3)).encode()
    writer = await asyncpg.connect(database_url)
    try:
        await copy_batch(writer, "warehouse_operations", payload)  # 3,000 operations on 1,000 pairs, first
        async with writer.transaction():
            for p in range(1, 21):
                await insert(writer, (p, 1, 1))
            scans = await writer.fetchval(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'stock_balance'"
            )
    finally:
        await writer.close()
    assert scans == 0
    assert await balance(db, 20, 1) == (16, "available")


async def test_a_batch_after_a_one_row_insert_on_the_same_connection_runs_in_linear_time(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A plan cached per connection would be the first statement's: made for a one-row insert of a new pair, it
    joins the statement's row sets with nested loops, over operations times pairs, and the 60,000-row batch on
    7,500 pairs below took about 45 s. The general path is planned per statement; this guards that. Not a speed
    measurement: the batch takes about a second; the limit is ten seconds."""
    await make_reference(db, products=750, warehouses=10)
    rows = [(p, w, q) for q in (4, 3, 2, 1) for _ in range(2) for p in range(1, 751) for w in range(1, 11)]
    writer = await asyncpg.connect(database_url)
    try:
        await insert(writer, (1, 1, 5))  # a new pair: the general path, planned here for one row
        await writer.execute("SET statement_timeout = '10s'")
        payload = "".join(f"{p}\t{w}\t{q}\treceipt\n" for p, w, q in rows).encode()
        await copy_batch(writer, "warehouse_operations", payload)
    finally:
        await writer.close()
    assert await balance(db, 1, 1) == (5 + 20, "available")
    assert await balance(db, 750, 10) == (20, "available")


# --- NOTIFY -------------------------------------------------------------------------------------------

LISTENING_LOCK = 7735218433629061301  # held by an idle bridge while it waits for notifications


async def drain_notifications(listener: asyncpg.Connection, db: asyncpg.Connection, received: list[str]) -> None:
    """Wait until a marker notification sent last has arrived, so everything before it has too."""
    await db.execute("SELECT pg_notify('warehouse_status_changes', 'probe')")
    for _ in range(50):
        if "probe" in received:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the probe notification never arrived; got {received}")


async def test_an_idle_bridge_gets_one_small_notification_per_statement_that_changed_a_status(
    database_url: str, db: asyncpg.Connection
) -> None:
    await make_reference(db)
    listener = await asyncpg.connect(database_url)  # plays an idle bridge: listening, holding the lock
    received: list[str] = []
    await listener.add_listener("warehouse_status_changes", lambda *args: received.append(args[3]))
    await listener.execute("SELECT pg_advisory_lock($1)", LISTENING_LOCK)
    try:
        await insert(db, *[(p, w, 5) for p in (1, 2, 3) for w in (1, 2, 3)])  # 9 status changes
        await insert(db, (1, 1, 1))  # no status change, one-row path
        await insert(db, (1, 1, 1), (2, 2, 1))  # no status change, batch path
        await insert(db, (1, 1, 20))  # one status change, one-row path
        await drain_notifications(listener, db, received)
    finally:
        await listener.close()
    assert received == ["outbox", "outbox", "probe"]


async def test_with_no_bridge_listening_writers_skip_the_wake_up_but_hold_the_lock_until_commit(
    database_url: str, db: asyncpg.Connection
) -> None:
    await make_reference(db)
    bridge = await asyncpg.connect(database_url)  # a bridge about to go idle
    received: list[str] = []
    await bridge.add_listener("warehouse_status_changes", lambda *args: received.append(args[3]))
    try:
        async with db.transaction():
            await insert(db, (1, 1, 5))  # a status change, not yet committed
            # The bridge cannot start listening until this writer commits, so it cannot miss its change.
            assert await bridge.fetchval("SELECT pg_try_advisory_lock($1)", LISTENING_LOCK) is False
        assert await bridge.fetchval("SELECT pg_try_advisory_lock($1)", LISTENING_LOCK) is True
        assert await bridge.fetchval("SELECT count(*) FROM status_change_outbox") == 1  # its last drain sees it
        await drain_notifications(bridge, db, received)
    finally:
        await bridge.close()
    assert received == ["probe"]


async def test_a_writer_that_changed_no_status_never_holds_a_bridge_back_from_listening(
    database_url: str, db: asyncpg.Connection
) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 30), (2, 2, 30))
    bridge = await asyncpg.connect(database_url)  # a bridge about to go idle
    try:
        async with db.transaction():  # writes that change no status, still uncommitted
            await insert(db, (1, 1, 1))  # one-row path
            await insert(db, (1, 1, 1), (2, 2, 1))  # batch path
            await db.execute("UPDATE products SET low_stock_threshold = 11 WHERE id = 1")  # re-evaluates nothing
            assert await bridge.fetchval("SELECT pg_try_advisory_lock($1)", LISTENING_LOCK) is True
            await bridge.execute("SELECT pg_advisory_unlock($1)", LISTENING_LOCK)
    finally:
        await bridge.close()


# --- batches equal one-by-one ---------------------------------------------------------------------------

KEYS = [(p, w) for p in (1, 2) for w in (1, 2)]
operations = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-25, 25).filter(bool)), min_size=1, max_size=60)
thresholds = st.lists(st.integers(0, 15), min_size=2, max_size=2)
example_ids = itertools.count(1)


def valid(raw: list[tuple[tuple[int, int], int]]) -> list[tuple[int, int, int]]:
    """Clamp shipments so no balance goes below zero (a batch with a negative step is rejected whole)."""
    stock: dict[tuple[int, int], int] = {}
    out = []
    for key, quantity in raw:
        quantity = max(quantity, -stock.get(key, 0))
        if quantity:
            stock[key] = stock.get(key, 0) + quantity
            out.append((key[0], key[1], quantity))
    return out


async def apply_and_read(url: str, ops: list[tuple[int, int, int]], offset: int, batch: bool) -> object:
    """Apply ops to products offset+1, offset+2 either as one COPY or one INSERT each; return what resulted."""
    conn = await asyncpg.connect(url)
    try:
        shifted = [(p + offset, w, q) for p, w, q in ops]
        counter_before = await conn.fetchval("SELECT status_change_count()")
        if batch:
            payload = "".join(f"{p}\t{w}\t{q}\n" for p, w, q in shifted).encode()
            await conn.copy_to_table("warehouse_operations", source=io.BytesIO(payload),
                                     columns=list(COPY_COLUMNS[:3]))  # fmt: skip
        else:
            for op in shifted:
                await insert(conn, op)
        balances = await conn.fetch(
            "SELECT product_id - $1, warehouse_id, quantity, status::text FROM stock_balance "
            "WHERE product_id > $1 AND product_id <= $1 + 2 ORDER BY 1, 2", offset,
        )  # fmt: skip
        outbox = await conn.fetch(
            "SELECT product_id - $1, warehouse_id, old_status::text, new_status::text, quantity "
            "FROM status_change_outbox WHERE product_id > $1 AND product_id <= $1 + 2 "
            "ORDER BY product_id, warehouse_id, id", offset,
        )  # fmt: skip
        counted = await conn.fetchval("SELECT status_change_count()") - counter_before
        return [tuple(r) for r in balances], [tuple(r) for r in outbox], counted
    finally:
        await conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=operations, limits=thresholds)
def test_a_batch_gives_the_same_result_as_its_operations_one_by_one(
    database_url: str, raw: list[tuple[tuple[int, int], int]], limits: list[int]
) -> None:
    ops = valid(raw)
    example = next(example_ids)
    batch_offset, single_offset = example * 10, example * 10 + 5

    async def run() -> tuple[object, object]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("INSERT INTO warehouses (id, name) VALUES (1, 'a'), (2, 'b') ON CONFLICT DO NOTHING")
            for offset in (batch_offset, single_offset):
                await conn.executemany(
                    "INSERT INTO products (id, name, low_stock_threshold) VALUES ($1, 'p', $2)",
                    [(offset + 1, limits[0]), (offset + 2, limits[1])],
                )
        finally:
            await conn.close()
        return (
            await apply_and_read(database_url, ops, batch_offset, batch=True),
            await apply_and_read(database_url, ops, single_offset, batch=False),
        )

    as_batch, one_by_one = asyncio.run(run())
    assert as_batch == one_by_one


# --- parallel loaders -------------------------------------------------------------------------------------


async def test_four_concurrent_loaders_on_50_shared_keys_stay_exact(database_url: str, db: asyncpg.Connection) -> None:
    loading = asyncio.Event()
    published: list[asyncpg.Record] = []
    EVENT = "id, product_id, warehouse_id, old_status::text, new_status::text"

    async def publisher() -> None:  # plays the bridge: deletes outbox rows in batches while the loaders run
        conn = await asyncpg.connect(database_url)
        try:
            while not (loading.is_set() and published):  # until the loaders are done, and at least one batch
                published.extend(await conn.fetch(
                    f"DELETE FROM status_change_outbox WHERE id IN "
                    f"(SELECT id FROM status_change_outbox ORDER BY id LIMIT 300) RETURNING {EVENT}"
                ))  # fmt: skip
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    publishing = asyncio.create_task(publisher())
    try:
        stats, _, changes = await load(
            database_url, operations=20_000, workers=4, products=5, warehouses=10, batch_size=250, seed=7,
            show_progress=False,
        )  # fmt: skip
    finally:
        loading.set()
        await publishing

    assert stats.written == 20_000
    assert stats.rejected_total == 0
    assert not stats.retries, f"deadlocks or serialization failures: {stats.retries}"
    mismatched = await db.fetchval(
        "SELECT count(*) FROM stock_balance b "
        "FULL JOIN (SELECT product_id, warehouse_id, sum(quantity) q FROM warehouse_operations GROUP BY 1, 2) o "
        "USING (product_id, warehouse_id) JOIN products p ON p.id = coalesce(b.product_id, o.product_id) "
        "WHERE b.quantity IS DISTINCT FROM o.q OR b.status <> stock_status_for(b.quantity, p.low_stock_threshold)"
    )
    assert mismatched == 0
    waiting = await db.fetch(f"SELECT {EVENT} FROM status_change_outbox")
    assert published, "the publisher deleted no row: counting on deletion was not exercised"
    assert changes == len(published) + len(waiting) == await db.fetchval("SELECT status_change_count()") > 0
    assert [tuple(r) for r in await db.fetch("SELECT changes FROM status_change_counter")] == [(len(published),)]
    # No change lost or doubled, published or not: per pair, in outbox order, each event starts where the one
    # before it ended, the first from out_of_stock, and the last ends at the pair's status.
    chains: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for e in sorted([*published, *waiting], key=lambda e: e["id"]):
        chains.setdefault((e["product_id"], e["warehouse_id"]), []).append((e["old_status"], e["new_status"]))
    statuses = {
        (r[0], r[1]): r[2] for r in await db.fetch("SELECT product_id, warehouse_id, status::text FROM stock_balance")
    }
    for pair, chain in chains.items():
        assert [old for old, _ in chain] == ["out_of_stock", *[new for _, new in chain[:-1]]], pair
        assert chain[-1][1] == statuses[pair], pair
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "db", "verify", env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert "consistent" in out.decode()


async def test_published_changes_stay_counted_in_one_counter_row(db: asyncpg.Connection) -> None:
    await make_reference(db)
    for warehouse in (1, 2, 3):
        await insert(db, (1, warehouse, 5))
    assert await db.fetchval("SELECT count(*) FROM status_change_counter") == 0  # writers add no counter rows

    # What the bridge does after publishing: delete the rows, in batches.
    await db.execute("DELETE FROM status_change_outbox WHERE warehouse_id = 1")
    assert await db.fetchval("SELECT status_change_count()") == 3
    await db.execute("DELETE FROM status_change_outbox WHERE false")  # deletes nothing, counts nothing
    await db.execute("DELETE FROM status_change_outbox")

    assert await db.fetchval("SELECT count(*) FROM status_change_outbox") == 0
    assert [tuple(r) for r in await db.fetch("SELECT changes FROM status_change_counter")] == [(3,)]
    assert await db.fetchval("SELECT status_change_count()") == 3
    await insert(db, (1, 1, -5))
    assert await db.fetchval("SELECT status_change_count()") == 4


async def test_overlapping_deletions_of_published_changes_neither_wait_nor_miscount(
    database_url: str, db: asyncpg.Connection
) -> None:
    await make_reference(db, warehouses=4)
    for warehouse in (1, 2, 3, 4):
        await insert(db, (1, warehouse, 5))
    await db.execute("DELETE FROM status_change_outbox WHERE warehouse_id = 4")  # the counter now has a row
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        tx = first.transaction()
        await tx.start()
        await first.execute("DELETE FROM status_change_outbox WHERE warehouse_id = 1")  # holds the counter row
        await second.execute("SET lock_timeout = '5s'")  # waiting for the first would fail here
        await second.execute("DELETE FROM status_change_outbox WHERE warehouse_id IN (2, 3)")
        assert await db.fetchval("SELECT status_change_count()") == 4  # the first has not committed yet
        await tx.commit()
    finally:
        await first.close()
        await second.close()

    assert await db.fetchval("SELECT count(*) FROM status_change_outbox") == 0
    assert await db.fetchval("SELECT count(*) FROM status_change_counter") == 2  # one row per overlapping deleter
    assert await db.fetchval("SELECT status_change_count()") == 4
    await db.execute("DELETE FROM status_change_outbox")  # a later deletion (of nothing) folds nothing
    await insert(db, (1, 1, -5))
    await db.execute("DELETE FROM status_change_outbox")
    assert [tuple(r) for r in await db.fetch("SELECT changes FROM status_change_counter")] == [(5,)]


async def test_truncating_the_outbox_is_refused(db: asyncpg.Connection) -> None:
    await make_reference(db)
    await insert(db, (1, 1, 5))

    with pytest.raises(asyncpg.PostgresError) as e:
        await db.execute("TRUNCATE status_change_outbox")

    assert e.value.sqlstate == "WH004"
    assert e.value.args[0].startswith("invalid operation: TRUNCATE of status_change_outbox")
    assert await db.fetchval("SELECT count(*) FROM status_change_outbox") == 1
    assert await db.fetchval("SELECT status_change_count()") == 1
