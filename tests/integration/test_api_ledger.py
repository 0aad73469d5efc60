"""The ledger and its people, over HTTP against real PostgreSQL: who made each operation, reading the ledger,
documents of many lines, inventory counts, and products and warehouses with ids of their own."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.auth import Role
from tests.api_harness import Api

pytestmark = pytest.mark.integration


async def reference_data(api: Api, products: int = 2, warehouses: int = 3) -> None:
    for i in range(products):
        assert (await api.post("/products", {"name": f"product {i + 1}"})).status_code == 201
    for i in range(warehouses):
        assert (await api.post("/warehouses", {"name": f"warehouse {i + 1}"})).status_code == 201


async def operate(api: Api, kind: str, quantity: int, product: int = 1, warehouse: int = 1) -> httpx.Response:
    body = {"operation_type": kind, "product_id": product, "warehouse_id": warehouse, "quantity": quantity}
    return await api.post("/operations", body, role=Role.operator)


async def pages(api: Api, path: str) -> list[dict[str, object]]:
    """Every row of a list, following its Link headers."""
    rows: list[dict[str, object]] = []
    url: str | None = path
    while url is not None:
        r = await api.get(url)
        assert r.status_code == 200, r.text
        rows += r.json()
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    return rows


async def test_an_operation_records_the_key_that_made_it_and_an_sql_writer_says_who_it_is(
    api: Api, db: asyncpg.Connection
) -> None:
    await reference_data(api)
    made = (await operate(api, "receipt", 5)).json()
    operation = (await api.get(f"/operations/{made['operation_id']}")).json()
    key_id = await db.fetchval("SELECT id FROM api_keys WHERE name = 'test-operator'")
    assert (operation["actor"], operation["api_key_id"]) == ("test-operator", key_id)
    assert (operation["change"], operation["operation_type"]) == (5, "receipt")

    await db.execute("SET warehouse.actor = 'night import'")
    await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, 3)")
    await db.execute("RESET warehouse.actor")
    await db.execute("INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) VALUES (1, 1, -2)")
    role = await db.fetchval("SELECT current_user")
    newest = (await api.get("/operations", params={"limit": 2})).json()
    assert [(o["actor"], o["api_key_id"], o["change"]) for o in newest] == [(role, None, -2), ("night import", None, 3)]
    night = (await api.get("/operations", params={"actor": "night import"})).json()
    assert [o["change"] for o in night] == [3]


async def test_the_ledger_is_newest_first_filtered_and_paged_and_a_transfer_shows_both_legs(
    api: Api, db: asyncpg.Connection
) -> None:
    await reference_data(api)
    for warehouse in (1, 2, 3):
        for product in (1, 2):
            assert (await operate(api, "receipt", 10 * warehouse + product, product, warehouse)).status_code == 201
    moved = await api.post(
        "/transfers", {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 3, "quantity": 4}, role=Role.operator
    )
    assert moved.status_code == 201
    transfer_id = moved.json()["transfer_id"]
    assert (await operate(api, "adjustment", -1, 2, 2)).status_code == 201

    everything = await pages(api, "/operations?limit=3")  # three pages
    expected = await db.fetch("SELECT id, quantity FROM warehouse_operations ORDER BY created_at DESC, id DESC")
    assert [(o["operation_id"], o["change"]) for o in everything] == [(r["id"], r["quantity"]) for r in expected]

    of_pair = (await api.get("/operations", params={"product_id": 1, "warehouse_id": 3})).json()
    assert [(o["operation_type"], o["change"]) for o in of_pair] == [("transfer_in", 4), ("receipt", 31)]
    at_2 = await pages(api, "/operations?warehouse_id=2&limit=1")
    assert [(o["product_id"], o["change"]) for o in at_2] == [(2, -1), (2, 22), (1, 21)]
    kinds = (await api.get("/operations?operation_type=adjustment&operation_type=transfer_out")).json()
    assert [o["operation_type"] for o in kinds] == ["adjustment", "transfer_out"]
    legs = (await api.get("/operations", params={"transfer_id": transfer_id})).json()
    assert sorted(o["change"] for o in legs) == [-4, 4]

    later = datetime.now(UTC) + timedelta(hours=1)
    assert (await api.get("/operations", params={"since": later.isoformat()})).json() == []
    assert len((await api.get("/operations", params={"until": later.isoformat()})).json()) == len(expected)

    transfer = (await api.get(f"/transfers/{transfer_id}")).json()
    assert (transfer["from_warehouse_id"], transfer["to_warehouse_id"], transfer["quantity"]) == (1, 3, 4)
    assert [(leg["operation_type"], leg["warehouse_id"]) for leg in transfer["legs"]] == [
        ("transfer_out", 1), ("transfer_in", 3),
    ]  # fmt: skip
    assert transfer["actor"] == "test-operator"

    unknown = await api.get(f"/transfers/{uuid.uuid4()}")
    assert (unknown.status_code, unknown.json()["type"]) == (404, "/problems/unknown-transfer")
    unknown = await api.get("/operations/999999")
    assert (unknown.status_code, unknown.json()["type"]) == (404, "/problems/unknown-operation")
    bad = await api.get("/operations", params={"operation_type": "theft"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("query.operation_type")


async def test_a_document_applies_every_line_in_one_statement_or_none(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api)
    lines = [
        {"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 20},
        {"operation_type": "receipt", "product_id": 2, "warehouse_id": 2, "quantity": 5},
        {"operation_type": "transfer", "product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 3, "quantity": 8},
        {"operation_type": "shipment", "product_id": 1, "warehouse_id": 1, "quantity": 12},
        {"operation_type": "adjustment", "product_id": 2, "warehouse_id": 2, "quantity": -1},
    ]
    r = await api.post(
        "/documents", {"reference": "DN-42", "lines": lines}, role=Role.operator, **{"Idempotency-Key": "dn-42"}
    )
    assert r.status_code == 201, r.text
    document = r.json()
    assert (document["reference"], document["lines"], len(document["operation_ids"])) == ("DN-42", 5, 6)
    assert [(b["product_id"], b["warehouse_id"], b["quantity"], b["status"]) for b in document["balances"]] == [
        (1, 1, 0, "out_of_stock"), (1, 3, 8, "running_low"), (2, 2, 4, "running_low"),
    ]  # fmt: skip
    written = await db.fetch(
        "SELECT operation_type::text, quantity, document_id, actor FROM warehouse_operations ORDER BY id"
    )
    assert [(w["operation_type"], w["quantity"]) for w in written] == [
        ("receipt", 20), ("receipt", 5), ("transfer_out", -8), ("transfer_in", 8), ("shipment", -12),
        ("adjustment", -1),
    ]  # fmt: skip
    assert {(w["document_id"], w["actor"]) for w in written} == {(document["document_id"], "test-operator")}
    of_document = (await api.get("/operations", params={"document_id": document["document_id"]})).json()
    assert sorted(o["operation_id"] for o in of_document) == document["operation_ids"]

    again = await api.post(
        "/documents", {"reference": "DN-42", "lines": lines}, role=Role.operator, **{"Idempotency-Key": "dn-42"}
    )
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == document
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 6

    # Line 2 ships 3 of product 2 at warehouse 2, which has 4; line 3 ships 2 more: 1 short, after line 2.
    short = [
        {"operation_type": "receipt", "product_id": 1, "warehouse_id": 2, "quantity": 7},
        {"operation_type": "transfer", "product_id": 1, "from_warehouse_id": 2, "to_warehouse_id": 1, "quantity": 7},
        {"operation_type": "shipment", "product_id": 2, "warehouse_id": 2, "quantity": 3},
        {"operation_type": "shipment", "product_id": 2, "warehouse_id": 2, "quantity": 2},
    ]
    r = await api.post("/documents", {"lines": short}, role=Role.operator)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"] == "/problems/insufficient-stock"
    assert {k: problem[k] for k in ("line", "product_id", "warehouse_id", "available", "requested")} == {
        "line": 3, "product_id": 2, "warehouse_id": 2, "available": 1, "requested": 2,
    }  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 6
    assert await db.fetchval("SELECT count(*) FROM documents") == 1

    unknown = [lines[0], {"operation_type": "receipt", "product_id": 99, "warehouse_id": 1, "quantity": 1}]
    r = await api.post("/documents", {"lines": unknown}, role=Role.operator)
    assert (r.status_code, r.json()["type"], r.json()["line"]) == (404, "/problems/unknown-product", 1)
    bad = [lines[0], {"operation_type": "shipment", "product_id": 1, "warehouse_id": 1, "quantity": 0}]
    r = await api.post("/documents", {"lines": bad}, role=Role.operator)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["body.lines.1.shipment.quantity"]
    assert (await api.post("/documents", {"lines": []}, role=Role.operator)).status_code == 422
    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 6


async def test_a_document_of_ten_thousand_lines_goes_in_whole(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api, products=100, warehouses=2)
    lines = [
        {"operation_type": "receipt", "product_id": 1 + i % 100, "warehouse_id": 1 + i // 100 % 2, "quantity": 3}
        for i in range(10_000)
    ]
    r = await api.post("/documents", {"reference": "import", "lines": lines}, role=Role.operator)
    assert r.status_code == 201, r.text[:300]
    assert len(r.json()["balances"]) == 200
    assert await db.fetchval("SELECT sum(quantity) FROM stock_balance") == 30_000
    r = await api.post("/documents", {"lines": [*lines, lines[0]]}, role=Role.operator)
    assert r.status_code == 422 and "10000" in r.text


async def test_an_inventory_count_records_each_difference_as_an_adjustment(api: Api, db: asyncpg.Connection) -> None:
    await reference_data(api)
    await operate(api, "receipt", 20, 1, 1)
    await operate(api, "receipt", 4, 2, 1)
    counts = [
        {"product_id": 1, "warehouse_id": 1, "counted": 17},  # 3 lost
        {"product_id": 2, "warehouse_id": 1, "counted": 4},  # matches
        {"product_id": 2, "warehouse_id": 3, "counted": 6},  # never stocked: found
    ]
    r = await api.post("/inventory-counts", {"counts": counts}, role=Role.operator, **{"Idempotency-Key": "count-1"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["adjusted"] == 2
    assert [(c["line"], c["stored"], c["difference"], c["balance"]["quantity"]) for c in out["lines"]] == [
        (0, 20, -3, 17), (1, 4, 0, 4), (2, 0, 6, 6),
    ]  # fmt: skip
    assert out["lines"][1]["operation_id"] is None
    adjustments = await db.fetch(
        "SELECT product_id, warehouse_id, quantity FROM warehouse_operations WHERE operation_type = 'adjustment' "
        "ORDER BY product_id, warehouse_id"
    )
    assert [tuple(a) for a in adjustments] == [(1, 1, -3), (2, 3, 6)]
    again = await api.post(
        "/inventory-counts", {"counts": counts}, role=Role.operator, **{"Idempotency-Key": "count-1"}
    )
    assert again.json() == out and await db.fetchval("SELECT count(*) FROM warehouse_operations") == 4

    twice = await api.post("/inventory-counts", {"counts": [counts[0], counts[0]]}, role=Role.operator)
    assert twice.status_code == 422 and "line 1 counts product 1 at warehouse 1 again" in twice.text
    unknown = await api.post(
        "/inventory-counts", {"counts": [counts[0], {"product_id": 1, "warehouse_id": 9, "counted": 1}]},
        role=Role.operator,
    )  # fmt: skip
    assert unknown.status_code == 404
    assert await db.fetchval("SELECT quantity FROM stock_balance WHERE (product_id, warehouse_id) = (1, 1)") == 17


async def test_products_and_warehouses_with_their_own_ids_and_after_sql_imported_some(
    api: Api, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO products (id, name) VALUES (1, 'imported'), (2, 'imported too')")
    await db.execute("INSERT INTO warehouses (id, name) VALUES (7, 'imported')")
    r = await api.post("/products", {"name": "new"})
    assert (r.status_code, r.json()["id"]) == (201, 3)
    r = await api.post("/warehouses", {"name": "new"})
    assert (r.status_code, r.json()["id"]) == (201, 8)
    r = await api.post("/products", {"id": 500, "name": "our numbering"})
    assert (r.status_code, r.json()["id"]) == (201, 500)
    assert (await api.post("/products", {"name": "next"})).json()["id"] == 501
    taken = await api.post("/products", {"id": 2, "name": "clash"})
    assert (taken.status_code, taken.json()["type"]) == (409, "/problems/id-taken")
    assert "product 2 already exists" in taken.json()["detail"]
    taken = await api.post("/warehouses", {"id": 7, "name": "clash"})
    assert taken.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM products") == 5


async def test_products_are_found_by_a_part_of_their_name(api: Api) -> None:
    for name in ("Bolt M6", "bolt M8", "Nut M6", "100% cotton rag", "100 rags"):
        assert (await api.post("/products", {"name": name})).status_code == 201
    found = (await api.get("/products", params={"name": "BOLT"})).json()
    assert [p["name"] for p in found] == ["Bolt M6", "bolt M8"]
    assert [p["name"] for p in (await api.get("/products", params={"name": "m6"})).json()] == ["Bolt M6", "Nut M6"]
    assert [p["name"] for p in (await api.get("/products", params={"name": "100%"})).json()] == ["100% cotton rag"]
    paged = await pages(api, "/products?name=m&limit=1")
    assert [p["name"] for p in paged] == ["Bolt M6", "bolt M8", "Nut M6"]


async def test_documents_and_counts_take_bodies_up_to_2_mib_other_writes_64_kib(api: Api) -> None:
    line = {"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 1}
    too_large = await api.post("/documents", {"lines": [line] * 30_000}, role=Role.operator)  # ≈ 2.4 MB
    assert too_large.status_code == 413 and "at most 2,097,152 bytes" in too_large.json()["detail"]
    padded = {**line, "padding": "x" * 70_000}
    r = await api.post("/operations", padded, role=Role.operator)
    assert r.status_code == 413 and "at most 65,536 bytes" in r.json()["detail"]
    r = await api.post("/documents", {"lines": [padded]}, role=Role.operator)
    assert r.status_code == 422  # under 2 MiB: read, and refused for the unknown field
