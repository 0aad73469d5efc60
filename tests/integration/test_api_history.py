"""GET /status-changes: the stored event log over HTTP, newest first, filtered and paginated."""

import base64
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.api_harness import Api
from tests.integration.test_api_reads import walk

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


async def fill_log(db: asyncpg.Connection, rows: int) -> None:
    """`rows` changes over 5 products and 4 warehouses; every 3 share a timestamp, so the order needs event_id."""
    await db.execute(
        """INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status,
                                          quantity, operation_id, kafka_partition, kafka_offset)
           SELECT gen_random_uuid(), $2::timestamptz + (g / 3) * interval '1 second', 1 + g % 5, 1 + g % 4,
                  'out_of_stock', 'running_low', 3, g, 0, g
             FROM generate_series(1, $1) g""",
        rows, T0,
    )  # fmt: skip


async def expected(db: asyncpg.Connection, where: str = "true", *args: object) -> list[str]:
    rows = await db.fetch(
        f"SELECT event_id::text FROM status_change_log WHERE {where} ORDER BY occurred_at DESC, event_id DESC", *args
    )
    return [r["event_id"] for r in rows]


async def test_history_is_newest_first_and_pages_without_duplicate_or_gap(api: Api, db: asyncpg.Connection) -> None:
    await fill_log(db, 250)
    rows, pages = await walk(api, "/status-changes?limit=40")
    assert pages == 7
    assert [r["event_id"] for r in rows] == await expected(db)
    assert set(rows[0]) == {"event_id", "occurred_at", "product_id", "warehouse_id", "old_status", "new_status",
                            "quantity", "operation_id"}  # fmt: skip


async def test_history_filters_combine(api: Api, db: asyncpg.Connection) -> None:
    await fill_log(db, 250)
    rows, _ = await walk(api, "/status-changes?product_id=2&limit=7")
    assert [r["event_id"] for r in rows] == await expected(db, "product_id = 2")
    rows, _ = await walk(api, "/status-changes?product_id=2&warehouse_id=3&limit=7")
    assert [r["event_id"] for r in rows] == await expected(db, "product_id = 2 AND warehouse_id = 3")
    assert rows, "the pair has changes"
    rows, _ = await walk(api, "/status-changes?warehouse_id=4&limit=9")
    assert [r["event_id"] for r in rows] == await expected(db, "warehouse_id = 4")
    since, until = T0 + timedelta(seconds=20), T0 + timedelta(seconds=30)
    rows, _ = await walk(
        api, f"/status-changes?since={since.isoformat()}&until={until.isoformat()}&limit=8".replace("+", "%2B")
    )
    assert [r["event_id"] for r in rows] == await expected(db, "occurred_at >= $1 AND occurred_at < $2", since, until)
    assert len(rows) == 30


async def test_history_refuses_a_bad_filter_or_cursor(api: Api) -> None:
    huge = base64.urlsafe_b64encode(json.dumps(["status-changes", 2**63 - 1, 0, 0]).encode()).decode()
    for query in (
        f"cursor={huge}",
        "since=0001-01-01T00:00:00%2B01:00",
        "since=yesterday",
        "until=0.5",
        "since=1700000000",
        "product_id=0",
        "cursor=eyJ4IjogMX0",
        "limit=5000",
    ):
        r = await api.get(f"/status-changes?{query}")
        assert r.status_code == 422, query
