"""The view status_change_events makes each event's Kafka key, JSON value and CloudEvents time in SQL, so the
bridge only moves bytes. It must produce exactly what the contract's model (bridge/events.py) would."""

import asyncpg
import pytest

from bridge.events import StatusChanged, cloudevents_headers

pytestmark = pytest.mark.integration


async def test_the_view_serialises_every_kind_of_row_exactly_as_the_model(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO products (id, name) VALUES (1, 'a'), (2, 'b'); INSERT INTO warehouses (id, name) VALUES (1, 'w')"
    )
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 5), (2, 1, 50)"
    )
    await db.execute("UPDATE products SET low_stock_threshold = 60 WHERE id = 2")  # a change with no operation
    await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, -5)")
    # Times on a whole second and one microsecond past it, and a large quantity, written by hand.
    await db.execute(
        "INSERT INTO status_change_outbox (product_id, warehouse_id, old_status, new_status, quantity, operation_id,"
        " occurred_at) VALUES"
        " (1, 1, 'out_of_stock', 'available', 9007199254740993, 7, '2026-11-27 06:00:00+00'),"
        " (2, 1, 'available', 'running_low', 1, NULL, '2026-11-27 06:00:00.000001+05:30')"
    )
    await db.execute("SET TIME ZONE 'America/St_Johns'")  # the session's zone must not leak into the events

    rows = await db.fetch(
        "SELECT o.*, e.key, e.value, e.ce_id, e.ce_time, e.occurred_epoch"
        "  FROM status_change_outbox o JOIN status_change_events e USING (id) ORDER BY id"
    )

    assert len(rows) == 6
    assert {r["operation_id"] is None for r in rows} == {True, False}
    for row in rows:
        # The model built from the stored columns, as a consumer would receive it.
        event = StatusChanged(
            event_id=row["event_id"], occurred_at=row["occurred_at"], product_id=row["product_id"],
            warehouse_id=row["warehouse_id"], old_status=row["old_status"], new_status=row["new_status"],
            quantity=row["quantity"], operation_id=row["operation_id"],
        )  # fmt: skip
        assert row["value"] == event.model_dump_json()
        assert row["key"].encode() == event.key
        assert cloudevents_headers(row["ce_id"], row["ce_time"], "/s") == event.headers("/s")
        assert row["occurred_epoch"] == pytest.approx(event.occurred_at.timestamp(), abs=1e-6)
