"""Reports over HTTP against real PostgreSQL: their totals against SQL over the ledger and the stored log, in JSON
and in CSV."""

import csv
import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from api.auth import Role
from tests.api_harness import Api

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
FIELDS = {"receipt": "receipts", "shipment": "shipments", "transfer_in": "transfers_in",
          "transfer_out": "transfers_out", "adjustment": "adjustments"}  # fmt: skip


async def ledger(db: asyncpg.Connection) -> None:
    """Two products at two warehouses; operations inside the period (Nov 2-3) and outside it."""
    await db.execute(
        "INSERT INTO products (name) VALUES ('bolt'), ('nut');INSERT INTO warehouses (name) VALUES ('North'), ('South')"
    )
    rows = [  # product, warehouse, quantity, type, hours after T0 (negative: before the period)
        (1, 1, 50, "receipt", -30), (1, 1, 40, "receipt", 1), (1, 1, -15, "shipment", 2), (2, 1, 30, "receipt", 3),
        (2, 2, 12, "receipt", 4), (2, 2, -4, "adjustment", 5), (1, 2, 9, "receipt", 26), (1, 1, -7, "shipment", 30),
        (2, 1, -1, "shipment", 60),
    ]  # fmt: skip
    for product, warehouse, quantity, kind, hours in rows:
        await db.execute(
            "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, created_at)"
            " VALUES ($1, $2, $3, $4, $5)", product, warehouse, quantity, kind, T0 + timedelta(hours=hours),
        )  # fmt: skip
    await db.execute("SELECT transfer_stock(1, 1, 2, 6)")  # now: after the period
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id, created_at)"
        " VALUES (2, 1, -5, 'transfer_out', gen_random_uuid(), $1)", T0 + timedelta(hours=7),
    )  # fmt: skip
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id, created_at)"
        " VALUES (2, 2, 5, 'transfer_in', gen_random_uuid(), $1)", T0 + timedelta(hours=7),
    )  # fmt: skip


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def as_csv(api: Api, path: str, params: Mapping[str, object]) -> str:
    r = await api.client.get(path, params=params, headers={**api.auth(Role.viewer), "Accept": "text/csv"})  # type: ignore[arg-type]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    return r.text


async def test_movement_totals_equal_sql_over_the_ledger_in_json_and_csv(api: Api, db: asyncpg.Connection) -> None:
    await ledger(db)
    period = {"since": T0.isoformat(), "until": (T0 + timedelta(days=2)).isoformat()}
    ops = await db.fetch(
        "SELECT product_id, warehouse_id, (created_at AT TIME ZONE 'UTC')::date AS day, operation_type::text AS kind,"
        " quantity FROM warehouse_operations WHERE created_at >= $1 AND created_at < $2", T0, T0 + timedelta(days=2),
    )  # fmt: skip
    for group_by, column in (("warehouse", "warehouse_id"), ("product", "product_id"), ("day", "day")):
        r = await api.get("/reports/movements", params={**period, "group_by": group_by})
        assert r.status_code == 200, r.text
        want: dict[str, dict[str, int]] = {}
        for o in ops:
            row = want.setdefault(str(o[column]), dict.fromkeys(FIELDS.values(), 0) | {"net": 0})
            row[FIELDS[o["kind"]]] += o["quantity"] if o["kind"] == "adjustment" else abs(o["quantity"])
            row["net"] += o["quantity"]
        got = {str(g[column]): {k: g[k] for k in want[str(g[column])]} for g in r.json()}
        assert got == want, group_by
        csv_rows = parsed(await as_csv(api, "/reports/movements", {**period, "group_by": group_by}))
        assert [{k: str(v) if v is not None else "" for k, v in g.items()} for g in r.json()] == csv_rows

    north = (await api.get("/reports/movements", params={**period, "warehouse_id": 1})).json()
    assert [(n["name"], n["receipts"], n["shipments"], n["transfers_out"], n["net"]) for n in north] == [
        ("North", 70, 22, 5, 43),
    ]  # fmt: skip
    bad = await api.get("/reports/movements", params={"since": period["until"], "until": period["since"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.since"


async def test_stock_outs_sum_each_pair_s_time_per_status_from_the_stored_log(api: Api, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO products (name) VALUES ('bolt'), ('nut'); INSERT INTO warehouses (name) VALUES ('North')"
    )
    changes = [  # product, old, new, hours after T0; the period is T0 … T0 + 10 h
        (1, "available", "out_of_stock", -1), (1, "out_of_stock", "running_low", 2), (1, "running_low", "available", 5),
        (1, "available", "out_of_stock", 8), (1, "out_of_stock", "available", 12),
        (2, "out_of_stock", "available", -3), (2, "available", "running_low", 9.5),
    ]  # fmt: skip
    for offset, (product, old, new, hours) in enumerate(changes):
        await db.execute(
            """INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status,
                                              quantity, operation_id, kafka_partition, kafka_offset)
               VALUES (gen_random_uuid(), $1, $2, 1, $3, $4, 0, NULL, 0, $5)""",
            T0 + timedelta(hours=hours), product, old, new, offset,
        )  # fmt: skip
    period = {"since": T0.isoformat(), "until": (T0 + timedelta(hours=10)).isoformat()}
    r = await api.get("/reports/stock-outs", params=period)
    assert r.status_code == 200, r.text
    assert [(s["product_name"], s["warehouse_name"], s["out_of_stock_seconds"], s["running_low_seconds"], s["changes"])
            for s in r.json()] == [("bolt", "North", 4 * 3600, 3 * 3600, 3), ("nut", "North", 0, 1800, 1)]  # fmt: skip
    rows = parsed(await as_csv(api, "/reports/stock-outs", period))
    assert [(row["product_id"], row["out_of_stock_seconds"]) for row in rows] == [("1", "14400.0"), ("2", "0.0")]
    only = (await api.get("/reports/stock-outs", params={**period, "product_id": 2}, role=Role.viewer)).json()
    assert [s["product_id"] for s in only] == [2]

    # A period reaching into the future counts up to now: nut has been running low since T0 + 9.5 h.
    until_tomorrow = {"since": T0.isoformat(), "until": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    bolt, nut = (await api.get("/reports/stock-outs", params=until_tomorrow)).json()
    assert (bolt["out_of_stock_seconds"], bolt["running_low_seconds"]) == (6 * 3600, 3 * 3600)
    so_far = (datetime.now(UTC) - (T0 + timedelta(hours=9.5))).total_seconds()
    assert so_far - 60 < nut["running_low_seconds"] <= so_far
