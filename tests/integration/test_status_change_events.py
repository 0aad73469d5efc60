"""The SQL function status_change_batch makes each event's Kafka key, JSON value, CloudEvents time and seq, and
each pair's current-state record, so the bridge only moves bytes. It must produce exactly what the contract's
models (bridge/events.py) would, and number each pair's changes 1, 2, 3… whatever is published in between."""

import asyncpg
import pytest

from bridge.events import PairState, StatusChanged, StatusChangedV1, cloudevents_headers
from db.queries import queries

pytestmark = pytest.mark.integration


async def _batch(db: asyncpg.Connection, after: int = 0, size: int = 1000) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT o.*, w.operation_type, w.transfer_id, b.key, b.value, b.state, b.seq, b.ce_id, b.ce_time,"
        "       b.occurred_epoch"
        "  FROM status_change_batch($1, $2) b JOIN status_change_outbox o USING (id)"
        "  LEFT JOIN warehouse_operations w ON w.id = o.operation_id ORDER BY id",
        after, size,
    )  # fmt: skip


async def test_the_batch_serialises_every_kind_of_row_exactly_as_the_models(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO products (id, name) VALUES (1, 'a'), (2, 'b');"
        " INSERT INTO warehouses (id, name) VALUES (1, 'w'), (2, 'v')"
    )
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5), (2, 1, 50)"
    )
    await db.execute("UPDATE products SET low_stock_threshold = 60 WHERE id = 2")  # a change with no operation
    await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, -5)")
    await db.execute("SELECT transfer_stock(2, 1, 2, 50)")  # both legs change a status
    await db.execute("SELECT adjust_stock(1, 1, 100)")
    # Times on a whole second and one microsecond past it, and a large quantity, written by hand.
    await db.execute(
        "INSERT INTO status_change_outbox (product_id, warehouse_id, old_status, new_status, quantity, operation_id,"
        " occurred_at) VALUES"
        " (1, 1, 'available', 'available', 9007199254740993, 1, '2026-11-27 06:00:00+00'),"
        " (2, 1, 'out_of_stock', 'running_low', 1, NULL, '2026-11-27 06:00:00.000001+05:30')"
    )
    await db.execute("SET TIME ZONE 'America/St_Johns'")  # the session's zone must not leak into the events

    rows = await _batch(db)

    causes = {row["operation_type"] or "threshold_change" for row in rows}
    assert causes == {"receipt", "shipment", "transfer_out", "transfer_in", "adjustment", "threshold_change"}
    seen: dict[tuple[int, int], int] = {}
    for i, row in enumerate(rows):
        pair = (row["product_id"], row["warehouse_id"])
        seen[pair] = seen.get(pair, 0) + 1
        assert row["seq"] == seen[pair]
        # The models built from the stored columns, as a consumer would receive them.
        event = StatusChanged(
            event_id=row["event_id"], occurred_at=row["occurred_at"], product_id=row["product_id"],
            warehouse_id=row["warehouse_id"], seq=seen[pair], old_status=row["old_status"],
            new_status=row["new_status"], quantity=row["quantity"],
            cause=row["operation_type"] or "threshold_change", operation_id=row["operation_id"],
            transfer_id=row["transfer_id"],
        )  # fmt: skip
        assert row["value"] == event.model_dump_json()
        assert row["key"].encode() == event.key
        assert cloudevents_headers(row["ce_id"], row["ce_time"], "/s", event.key, row["seq"]) == event.headers("/s")
        assert row["occurred_epoch"] == pytest.approx(event.occurred_at.timestamp(), abs=1e-6)
        last_of_pair = all((r["product_id"], r["warehouse_id"]) != pair for r in rows[i + 1 :])
        if last_of_pair:
            state = PairState(
                product_id=row["product_id"], warehouse_id=row["warehouse_id"], status=row["new_status"],
                seq=seen[pair], quantity=row["quantity"], changed_at=row["occurred_at"], event_id=row["event_id"],
            )  # fmt: skip
            assert row["state"] == state.model_dump_json()
        else:
            assert row["state"] is None
    assert {r["transfer_id"] for r in rows if r["operation_type"] in ("transfer_in", "transfer_out")} != {None}


async def test_seq_stays_with_each_change_through_publishing_in_flight_batches_and_recovery(
    db: asyncpg.Connection,
) -> None:
    sql = queries("bridge")
    await db.execute(
        "INSERT INTO products (id, name) VALUES (1, 'a'); INSERT INTO warehouses (id, name) VALUES (1, 'w')"
    )
    for _ in range(5):  # each pair of statements: out_of_stock → available → out_of_stock
        await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 50)")
        await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, -50)")
    numbered = {row["id"]: row["seq"] for row in await _batch(db)}
    assert list(numbered.values()) == list(range(1, 11))

    first = await db.fetch(sql["next_batch"], 3)
    assert [r["seq"] for r in first] == [1, 2, 3]
    # The next batch, read while the first is in its Kafka transaction, continues the numbering.
    ahead = await db.fetch(sql["next_batch_after"], max(r["id"] for r in first), 3)
    assert ahead[0]["behind"] == 3 and [r["seq"] for r in ahead] == [4, 5, 6]
    await db.execute(sql["delete_published"], [r["id"] for r in first])
    # Published: the rest keep their numbers; as does a batch read again after a crash (its rows still there).
    assert {r["id"]: r["seq"] for r in await db.fetch(sql["next_batch"], 100)} == {
        i: s for i, s in numbered.items() if s > 3
    }
    await db.execute(sql["delete_recovered"], [r["id"] for r in ahead], [r["ce_id"] for r in ahead])
    assert [r["seq"] for r in await db.fetch(sql["next_batch"], 100)] == [7, 8, 9, 10]
    row = await db.fetchrow("SELECT * FROM stock_status_seq")
    assert row is not None
    assert (row["seq"], row["published_seq"], row["waiting"]) == (10, 6, 4)
    published = await db.fetchrow("SELECT * FROM status_change_published")
    assert published is not None
    assert (published["seq"], published["status"], str(published["event_id"])) == (
        6,
        "out_of_stock",
        ahead[-1]["ce_id"],
    )


async def test_changes_from_before_the_migration_go_out_as_version_1_and_the_numbering_starts_after_them(
    db: asyncpg.Connection,
) -> None:
    sql = queries("bridge")
    await db.execute(
        "INSERT INTO products (id, name) VALUES (1, 'a'); INSERT INTO warehouses (id, name) VALUES (1, 'w')"
    )
    flip = [
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 50)",
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, -50)",
    ]
    for statement in flip:
        await db.execute(statement)
    # As if migration 0006 ran now: the two changes so far are from before it.
    await db.execute("UPDATE status_change_v2_start SET first_id = (SELECT max(id) + 1 FROM status_change_outbox)")
    for statement in flip:
        await db.execute(statement)

    rows = await _batch(db)
    assert [r["seq"] for r in rows] == [None, None, 1, 2]
    for row in rows[:2]:
        old = StatusChangedV1(
            event_id=row["event_id"], occurred_at=row["occurred_at"], product_id=1, warehouse_id=1,
            old_status=row["old_status"], new_status=row["new_status"], quantity=row["quantity"],
            operation_id=row["operation_id"],
        )  # fmt: skip
        assert row["value"] == old.model_dump_json() and row["state"] is None
        headers = dict(cloudevents_headers(row["ce_id"], row["ce_time"], "/s", old.key, None))
        assert headers["ce_type"] == b"warehouse.status.changed.v1" and "ce_sequence" not in headers
    assert rows[3]["state"] is not None
    await db.execute(sql["delete_published"], [r["id"] for r in rows[:2]])  # published: not counted into seq
    assert [r["seq"] for r in await db.fetch(sql["next_batch"], 100)] == [1, 2]
    assert await db.fetchval("SELECT seq FROM stock_status_seq") == 2
