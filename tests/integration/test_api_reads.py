"""The read endpoints over HTTP: the original system's paths and shapes, pagination, filters, errors."""

import base64
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from api.auth import Role
from tests.api_harness import Api, serve
from tests.private_stack import free_port
from tests.service_process import sample

pytestmark = pytest.mark.integration


async def stock(db: asyncpg.Connection, products: int, warehouses: int, quantity: int = 50) -> None:
    """Products 1..n, warehouses 1..m (threshold 10), and a receipt of `quantity` for every pair."""
    await db.execute("INSERT INTO products (name) SELECT 'product ' || g FROM generate_series(1, $1) g", products)
    await db.execute("INSERT INTO warehouses (name) SELECT 'warehouse ' || g FROM generate_series(1, $1) g", warehouses)
    await db.execute(
        """INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)
           SELECT p, w, $3, 'receipt' FROM generate_series(1, $1) p, generate_series(1, $2) w""",
        products, warehouses, quantity,
    )  # fmt: skip


async def walk(api: Api, path: str) -> tuple[list[dict[str, object]], int]:
    """Every row of a paginated list, following Link headers; and how many pages it took."""
    rows: list[dict[str, object]] = []
    url: str | None = path
    pages = 0
    while url is not None:
        r = await api.get(url)
        assert r.status_code == 200, r.text
        rows += r.json()
        pages += 1
        url = r.links.get("next", {}).get("url")
    return rows, pages


async def test_balances_walk_2500_rows_page_by_page_without_duplicate_or_gap(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 50, 50)
    await db.execute("UPDATE products SET low_stock_threshold = 100 WHERE id % 7 = 0")  # some running low

    rows, pages = await walk(api, "/balances?limit=300")

    assert pages == 9
    keys = [(r["product_id"], r["warehouse_id"]) for r in rows]
    assert keys == [(p, w) for p in range(1, 51) for w in range(1, 51)]
    expected = {
        (r["product_id"], r["warehouse_id"]): (r["quantity"], r["status"])
        for r in await db.fetch("SELECT product_id, warehouse_id, quantity, status::text FROM stock_balance")
    }
    assert {k: (r["quantity"], r["status"]) for k, r in zip(keys, rows, strict=True)} == expected
    assert set(rows[0]) == {"product_id", "warehouse_id", "quantity", "status", "updated_at"}

    low, _ = await walk(api, "/balances?status=running_low&limit=100")
    assert {r["product_id"] for r in low} == {p for p in range(1, 51) if p % 7 == 0}
    assert len(low) == 7 * 50
    both, _ = await walk(api, "/balances?status=running_low&status=available&limit=400")
    assert [(r["product_id"], r["warehouse_id"]) for r in both] == keys


async def test_a_product_a_warehouse_and_both_filters_page_in_their_order(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 30, 30)
    by_product, pages = await walk(api, "/balances/product/7?limit=7")
    assert [r["warehouse_id"] for r in by_product] == list(range(1, 31)) and pages == 5
    assert {r["product_id"] for r in by_product} == {7}

    at_warehouse, _ = await walk(api, "/balances/warehouse/4?limit=8")
    assert [r["product_id"] for r in at_warehouse] == list(range(1, 31))
    assert {r["warehouse_id"] for r in at_warehouse} == {4}

    filtered, _ = await walk(api, "/balances?product_id=3&limit=4")
    assert [(r["product_id"], r["warehouse_id"]) for r in filtered] == [(3, w) for w in range(1, 31)]
    filtered, _ = await walk(api, "/balances?warehouse_id=9&limit=4")
    assert [(r["product_id"], r["warehouse_id"]) for r in filtered] == [(p, 9) for p in range(1, 31)]
    both = (await api.get("/balances?product_id=3&warehouse_id=9")).json()
    assert [(r["product_id"], r["warehouse_id"]) for r in both] == [(3, 9)]


async def test_one_pair_and_a_pair_never_stocked(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 2, 2, quantity=7)
    await db.execute("INSERT INTO warehouses (name) VALUES ('empty')")

    r = await api.get("/balances/product/2/warehouse/1")
    assert r.status_code == 200
    body = r.json()
    assert (body["product_id"], body["warehouse_id"], body["quantity"], body["status"]) == (2, 1, 7, "running_low")
    assert body["updated_at"] is not None

    r = await api.get("/balances/product/2/warehouse/3")
    assert r.status_code == 200
    assert r.json() == {"product_id": 2, "warehouse_id": 3, "quantity": 0, "status": "out_of_stock", "updated_at": None}

    assert (await api.get("/balances/warehouse/3")).json() == []


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/balances/product/99", "/problems/unknown-product"),
        ("/balances/warehouse/99", "/problems/unknown-warehouse"),
        ("/balances/product/99/warehouse/1", "/problems/unknown-product"),
        ("/balances/product/1/warehouse/99", "/problems/unknown-warehouse"),
        ("/products/99", "/problems/unknown-product"),
        ("/warehouses/99", "/problems/unknown-warehouse"),
    ],
)
async def test_unknown_product_or_warehouse_is_a_404_problem(
    api: Api, db: asyncpg.Connection, path: str, problem: str
) -> None:
    await stock(db, 1, 1)
    r = await api.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == problem and body["status"] == 404 and "99" in body["detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("cursor=not-a-cursor", "query.cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["products", 3]').decode(), "query.cursor"),
        ("status=sold", "query.status.0"),  # the first (and only) status given
        ("product_id=0", "query.product_id"),
        ("warehouse_id=99999999999999999999", "query.warehouse_id"),
    ],
)
async def test_a_bad_query_is_a_422_naming_the_field(api: Api, query: str, field: str) -> None:
    r = await api.get(f"/balances?{query}")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "/problems/validation"
    assert [e["field"] for e in body["errors"]] == [field]


async def test_the_counter_is_exact_and_counts_published_changes_too(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 3, 2, quantity=5)  # 6 pairs: out_of_stock → running_low, one change each
    assert (await api.get("/status-change-count")).json() == {"status_changes": 6}
    await db.execute("DELETE FROM status_change_outbox WHERE id <= 4")  # as the bridge does after publishing
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type) "
        "VALUES (1, 1, 100, 'receipt')"
    )
    assert (await api.get("/status-change-count")).json() == {"status_changes": 7}


async def test_products_and_warehouses_are_listed_by_id_in_pages(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 25, 12)
    products, pages = await walk(api, "/products?limit=10")
    assert [p["id"] for p in products] == list(range(1, 26)) and pages == 3
    assert products[0]["name"] == "product 1" and products[0]["low_stock_threshold"] == 10
    warehouses, _ = await walk(api, "/warehouses?limit=5")
    assert [w["id"] for w in warehouses] == list(range(1, 13))


async def test_requests_answer_503_while_postgresql_is_unreachable(database_url: str) -> None:
    parts = urlsplit(database_url)
    unreachable = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{free_port()}").geturl()
    async with serve(unreachable, make_keys=False) as api:
        assert (await api.client.get("/healthz")).status_code == 200
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and r.json()["type"] == "/problems/database-unavailable"
        said = r.json()
        assert said["detail"] == said["postgresql"] == "PostgreSQL cannot be reached: connection refused; try again"
        assert said["kafka"] == "not used yet"
        r = await api.client.get("/balances", headers={"Authorization": "Bearer wt_not-checkable-now"})
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "1" and "Error" not in r.json()["detail"]

        # The metrics port needs neither a key nor PostgreSQL, and counts the 503 under its route.
        metrics, ready = await api.metrics(), await api.metrics("/readyz")
        assert metrics.status_code == 200
        assert sample("warehouse_api_requests_total", metrics.text, method="GET", route="/balances", code="503") == 1
        assert ready.status_code == 503 and ready.json()["postgresql"].startswith("PostgreSQL cannot be reached")


@pytest.mark.parametrize("path", ["/balances/product/0/warehouse/1", "/balances/product/1/warehouse/x1",
                                  "/balances/product/1/warehouse/99999999999999999999", "/products/-1",
                                  "/balances/product/" + "1" * 5000 + "/warehouse/1"])  # fmt: skip
async def test_a_bad_id_in_the_path_is_a_422_naming_it(api: Api, path: str) -> None:
    r = await api.get(path)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] in {"path.product_id", "path.warehouse_id"}


async def test_a_wrong_method_is_a_405_listing_every_method_of_the_path(api: Api) -> None:
    r = await api.client.put("/products/1", headers=api.auth(Role.admin))
    assert r.status_code == 405 and r.json()["type"] == "/problems/method-not-allowed"
    assert r.headers["allow"] == "GET, HEAD, PATCH"


async def test_a_body_over_64_kib_is_refused(api: Api, db: asyncpg.Connection) -> None:
    r = await api.client.post(
        "/products", content=b'{"name": "' + b"x" * 70_000 + b'"}', headers={**api.auth(Role.admin),
        "content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length
        yield b'{"name": "'
        for _ in range(70):
            yield b"x" * 1000
        yield b'"}'

    headers = {**api.auth(Role.admin), "content-type": "application/json"}
    r = await api.client.post("/products", content=chunked(), headers=headers)
    assert r.status_code == 413 and r.json()["type"] == "/problems/body-too-large"

    async def small() -> AsyncIterator[bytes]:
        yield b'{"name": "chunked'
        yield b' but small"}'

    r = await api.client.post("/products", content=small(), headers=headers)
    assert r.status_code == 201 and r.json()["name"] == "chunked but small"
    assert await db.fetchval("SELECT count(*) FROM products") == 1


async def test_a_cursor_belongs_to_its_list(api: Api, db: asyncpg.Connection) -> None:
    await stock(db, 3, 3)
    r = await api.get("/balances?limit=2")
    cursor = r.links["next"]["url"].split("cursor=")[1]
    for other in ("/balances?product_id=3", "/balances/warehouse/1", "/balances/product/2"):
        r = await api.get(f"{other}{'&' if '?' in other else '?'}cursor={cursor}")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor", other
    with_status = await api.get(f"/balances?status=available&cursor={cursor}")  # a filter keeps the order
    first = with_status.json()[0]
    assert (first["product_id"], first["warehouse_id"]) == (1, 3)


async def test_a_body_that_is_not_json_is_a_400(api: Api) -> None:
    headers = {**api.auth(Role.admin), "content-type": "application/json"}
    r = await api.client.post("/products", content=b'{"name": "x",', headers=headers)
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-request"
    assert "not JSON" in r.json()["detail"]


async def test_readyz_answers_503_until_the_database_is_migrated(empty_database_url: str) -> None:
    async with serve(empty_database_url, make_keys=False) as api:
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and "python -m db migrate" in r.json()["detail"]
