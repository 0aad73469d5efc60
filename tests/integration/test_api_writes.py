"""Writes over HTTP: operations, transfers, idempotent retries, products and warehouses."""

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from api.auth import Role
from tests.api_harness import Api

pytestmark = pytest.mark.integration


async def reference_data(api: Api, products: int = 1, warehouses: int = 2) -> None:
    for i in range(products):
        assert (await api.post("/products", {"name": f"product {i + 1}"})).status_code == 201
    for i in range(warehouses):
        assert (await api.post("/warehouses", {"name": f"warehouse {i + 1}"})).status_code == 201


async def operate(
    api: Api, kind: str, quantity: int, product: int = 1, warehouse: int = 1, idempotency_key: str | None = None
) -> httpx.Response:
    body = {"operation_type": kind, "product_id": product, "warehouse_id": warehouse, "quantity": quantity}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return await api.post("/operations", body, role=Role.operator, **headers)


async def test_receipt_shipment_adjustment_return_the_balance_and_status_after(api: Api) -> None:
    await reference_data(api)
    r = await operate(api, "receipt", 15)
    assert r.status_code == 201
    body = r.json()
    assert (body["operation_type"], body["quantity"]) == ("receipt", 15)
    balance = body["balance"]
    assert (balance["quantity"], balance["status"], balance["previous_status"]) == (15, "available", "out_of_stock")

    body = (await operate(api, "shipment", 6)).json()
    assert (body["balance"]["quantity"], body["balance"]["status"]) == (9, "running_low")
    body = (await operate(api, "adjustment", -9)).json()
    assert (body["balance"]["quantity"], body["balance"]["status"]) == (0, "out_of_stock")
    body = (await operate(api, "adjustment", 4)).json()
    assert body["balance"]["quantity"] == 4

    pair = (await api.get("/balances/product/1/warehouse/1")).json()
    assert (pair["quantity"], pair["status"]) == (4, "running_low")
    assert (await api.get("/status-change-count")).json() == {"status_changes": 4}


async def test_a_shipment_beyond_the_stock_is_a_409_naming_both_and_changes_nothing(
    api: Api, db: asyncpg.Connection
) -> None:
    await reference_data(api)
    await operate(api, "receipt", 5)
    r = await operate(api, "shipment", 8)
    assert r.status_code == 409
    problem = r.json()
    assert problem["type"] == "/problems/insufficient-stock"
    assert (problem["available"], problem["requested"]) == (5, 8)
    assert "has 5" in problem["detail"] and "requests 8" in problem["detail"]
    assert await db.fetchval("SELECT quantity FROM stock_balance") == 5
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 0}, ["body.quantity"]),
        ({"operation_type": "shipment", "product_id": 1, "warehouse_id": 1, "quantity": -3}, ["body.quantity"]),
        ({"operation_type": "adjustment", "product_id": 1, "warehouse_id": 1, "quantity": 0}, ["body.quantity"]),
        ({"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": True}, ["body.quantity"]),
        ({"operation_type": "transfer_in", "product_id": 1, "warehouse_id": 1, "quantity": 1}, ["body.operation_type"]),
        ({"operation_type": "receipt", "product_id": 0, "warehouse_id": 1, "quantity": 1}, ["body.product_id"]),
        ({"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 2**31}, ["body.quantity"]),
        ({"operation_type": "receipt", "product_id": 1, "warehouse_id": 1}, ["body.quantity"]),
        ({"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 1, "x": 1}, ["body.x"]),
    ],
)
async def test_an_invalid_operation_is_a_422_naming_the_field_and_writes_nothing(
    api: Api, db: asyncpg.Connection, body: dict[str, object], fields: list[str]
) -> None:
    await reference_data(api)
    r = await api.post("/operations", body, role=Role.operator)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == fields
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 0


async def test_unknown_product_or_warehouse_in_a_write_is_a_404(api: Api) -> None:
    await reference_data(api)
    r = await operate(api, "receipt", 1, product=42)
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-product"
    r = await operate(api, "receipt", 1, warehouse=42)
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-warehouse"
    transfer = {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 42, "quantity": 1}
    r = await api.post("/transfers", transfer, role=Role.operator)
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-warehouse"


async def test_a_retry_with_the_same_idempotency_key_writes_once_and_gets_the_first_result(
    api: Api, db: asyncpg.Connection
) -> None:
    await reference_data(api)
    key = str(uuid.uuid4())
    first = await operate(api, "receipt", 5, idempotency_key=key)
    again = await operate(api, "receipt", 5, idempotency_key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 1

    # Ten concurrent retries of a new key: one write.
    key = str(uuid.uuid4())
    results = await asyncio.gather(*(operate(api, "receipt", 3, idempotency_key=key) for _ in range(10)))
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["operation_id"] for r in results}) == 1
    assert await db.fetchval("SELECT quantity FROM stock_balance") == 8

    # The same key with another body: refused, nothing written.
    r = await operate(api, "receipt", 4, idempotency_key=key)
    assert r.status_code == 422 and r.json()["type"] == "/problems/idempotency-key-reused"
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 2

    # A refused write is not remembered: its retry runs again (and succeeds once the stock is there).
    key = str(uuid.uuid4())
    assert (await operate(api, "shipment", 20, idempotency_key=key)).status_code == 409
    await operate(api, "receipt", 20)
    assert (await operate(api, "shipment", 20, idempotency_key=key)).status_code == 201


async def test_idempotency_keys_belong_to_their_api_key(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api)
    body = {"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 2}
    for role in (Role.operator, Role.admin):
        assert (await api.post("/operations", body, role=role, **{"Idempotency-Key": "same"})).status_code == 201
    assert await db.fetchval("SELECT quantity FROM stock_balance") == 4


async def test_a_transfer_moves_stock_atomically_and_shows_both_balances(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api)
    await operate(api, "receipt", 30)
    r = await api.post(
        "/transfers",
        {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 2, "quantity": 25},
        role=Role.operator,
    )
    assert r.status_code == 201
    body = r.json()
    assert (body["source"]["warehouse_id"], body["source"]["quantity"], body["source"]["status"]) == (
        1, 5, "running_low"
    )  # fmt: skip
    assert (body["destination"]["quantity"], body["destination"]["status"]) == (25, "available")
    legs = await db.fetch(
        "SELECT operation_type::text, quantity, transfer_id FROM warehouse_operations WHERE transfer_id IS NOT NULL"
    )
    assert sorted((leg["operation_type"], leg["quantity"]) for leg in legs) == [
        ("transfer_in", 25),
        ("transfer_out", -25),
    ]
    assert {str(leg["transfer_id"]) for leg in legs} == {body["transfer_id"]}

    r = await api.post(
        "/transfers", {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 2, "quantity": 6}, role=Role.operator
    )
    assert r.status_code == 409 and (r.json()["available"], r.json()["requested"]) == (5, 6)
    r = await api.post(
        "/transfers", {"product_id": 1, "from_warehouse_id": 2, "to_warehouse_id": 2, "quantity": 1}, role=Role.operator
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["body.to_warehouse_id"]
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 3


async def test_concurrent_transfers_never_overdraw(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api, warehouses=3)
    await operate(api, "receipt", 100)
    transfer = {"product_id": 1, "from_warehouse_id": 1, "quantity": 7}
    results = await asyncio.gather(
        *(api.post("/transfers", {**transfer, "to_warehouse_id": 2 + i % 2}, role=Role.operator) for i in range(40))
    )
    codes = [r.status_code for r in results]
    assert codes.count(201) == 14 and codes.count(409) == 26, codes  # 14 transfers of 7 = 98 of 100
    balances = {
        r["warehouse_id"]: r["quantity"] for r in await db.fetch("SELECT warehouse_id, quantity FROM stock_balance")
    }
    assert balances[1] == 2 and balances[2] + balances[3] == 98


async def test_products_and_warehouses_are_made_renamed_and_a_threshold_change_reevaluates(
    api: Api, db: asyncpg.Connection
) -> None:
    r = await api.post("/products", {"name": "  Bolt M6  "})
    assert r.status_code == 201
    product = r.json()
    assert (product["name"], product["low_stock_threshold"]) == ("Bolt M6", 10)
    r = await api.post("/warehouses", {"name": "North"})
    assert r.status_code == 201 and r.json()["name"] == "North"
    await operate(api, "receipt", 20, product=product["id"], warehouse=r.json()["id"])
    assert (await api.get("/status-change-count")).json() == {"status_changes": 1}

    r = await api.client.patch(
        f"/products/{product['id']}", json={"low_stock_threshold": 50}, headers=api.auth(Role.admin)
    )
    assert r.status_code == 200 and r.json()["low_stock_threshold"] == 50 and r.json()["name"] == "Bolt M6"
    assert (await api.get("/balances/product/1/warehouse/1")).json()["status"] == "running_low"
    assert (await api.get("/status-change-count")).json() == {"status_changes": 2}

    r = await api.client.patch("/products/1", json={"name": "Bolt M6 zinc"}, headers=api.auth(Role.admin))
    assert r.json()["name"] == "Bolt M6 zinc" and r.json()["low_stock_threshold"] == 50
    assert (await api.get("/products/1")).json()["name"] == "Bolt M6 zinc"

    bad_bodies: tuple[dict[str, object], ...] = (
        {}, {"low_stock_threshold": -1}, {"low_stock_threshold": "5"}, {"name": ""}, {"name": "x" * 201},
        {"name": "a\tb"}, {"name": "a\u200bb"}, {"name": "a\u0000b"}, {"id": 5},
    )  # fmt: skip
    for bad in bad_bodies:
        r = await api.client.patch("/products/1", json=bad, headers=api.auth(Role.admin))
        assert r.status_code == 422, bad
    r = await api.client.patch("/products/77", json={"name": "x"}, headers=api.auth(Role.admin))
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-product"
    assert (await api.post("/products", {"name": ""})).status_code == 422
    assert await db.fetchval("SELECT count(*) FROM products") == 1
