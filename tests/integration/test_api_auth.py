"""Users and roles: every route against every role, missing and revoked keys, the key commands."""

import asyncio

import asyncpg
import pytest

from api.app import create_app
from api.auth import Role
from api.config import ApiSettings
from tests.api_harness import Api, serve
from tests.cli import run_module
from tests.service_process import sample

pytestmark = pytest.mark.integration

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
NEEDS = {
    ("GET", "/balances"): Role.viewer,
    ("GET", "/balances/product/{product_id}"): Role.viewer,
    ("GET", "/balances/warehouse/{warehouse_id}"): Role.viewer,
    ("GET", "/balances/product/{product_id}/warehouse/{warehouse_id}"): Role.viewer,
    ("GET", "/status-change-count"): Role.viewer,
    ("GET", "/status-changes"): Role.viewer,
    ("GET", "/status-changes/per-minute"): Role.viewer,
    ("GET", "/status-changes/stream"): Role.viewer,
    ("GET", "/status-totals"): Role.viewer,
    ("GET", "/products"): Role.viewer,
    ("GET", "/products/{product_id}"): Role.viewer,
    ("GET", "/warehouses"): Role.viewer,
    ("GET", "/warehouses/{warehouse_id}"): Role.viewer,
    ("GET", "/operations"): Role.viewer,
    ("GET", "/operations/{operation_id}"): Role.viewer,
    ("GET", "/transfers/{transfer_id}"): Role.viewer,
    ("GET", "/reports/movements"): Role.viewer,
    ("GET", "/reports/stock-outs"): Role.viewer,
    ("POST", "/operations"): Role.operator,
    ("POST", "/transfers"): Role.operator,
    ("POST", "/documents"): Role.operator,
    ("POST", "/inventory-counts"): Role.operator,
    ("POST", "/products"): Role.admin,
    ("PATCH", "/products/{product_id}"): Role.admin,
    ("POST", "/warehouses"): Role.admin,
    ("POST", "/api-keys"): Role.admin,
    ("GET", "/api-keys"): Role.admin,
    ("DELETE", "/api-keys/{key_id}"): Role.admin,
}
BODIES = {
    "/operations": {"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 1},
    "/transfers": {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 2, "quantity": 1},
    "/documents": {"lines": [{"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 1}]},
    "/inventory-counts": {"counts": [{"product_id": 1, "warehouse_id": 1, "counted": 50}]},
    "/products": {"name": "p"},
    "/products/{product_id}": {"name": "renamed"},
    "/warehouses": {"name": "w"},
    "/api-keys": {"name": "k", "role": "viewer"},
}
RANK = list(Role)


def api_routes() -> set[tuple[str, str]]:
    """Every (method, path) the API documents: what clients can call."""
    paths = create_app(ApiSettings()).openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def test_every_route_of_the_app_is_in_the_matrix() -> None:
    assert api_routes() == set(NEEDS) | PUBLIC


async def seed(db: asyncpg.Connection) -> tuple[str, int]:
    """A product, two warehouses, a receipt, a transfer, and a spare key for DELETE to revoke: its id, and the
    transfer's."""
    await db.execute(
        "INSERT INTO products (name) VALUES ('p1'); INSERT INTO warehouses (name) VALUES ('w1'), ('w2');"
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)"
        " VALUES (1, 1, 100, 'receipt')"
    )
    transfer = str(await db.fetchval("SELECT transfer_stock(1, 1, 2, 1)"))
    return transfer, int(
        await db.fetchval(
            "INSERT INTO api_keys (name, role, key_hash, key_prefix) "
            "VALUES ('spare', 'viewer', sha256('spare'::bytea), 'wt_spare') RETURNING id"
        )
    )


async def test_each_role_on_each_route_gets_through_or_403(api: Api, db: asyncpg.Connection) -> None:
    transfer, spare = await seed(db)
    for (method, template), needed in sorted(NEEDS.items()):
        path = template.format(product_id=1, warehouse_id=1, key_id=spare, operation_id=1, transfer_id=transfer)
        for role in Role:
            if path == "/status-changes/stream":
                continue  # every key may read it (no role check to test); test_api_live reads it with a viewer key
            r = await api.client.request(method, path, json=BODIES.get(template), headers=api.auth(role))
            if RANK.index(role) < RANK.index(needed):
                assert r.status_code == 403, (method, path, role, r.text)
                assert r.json()["type"] == "/problems/forbidden" and needed in r.json()["detail"]
            else:
                assert r.status_code < 400, (method, path, role, r.text)


async def test_a_role_too_low_is_told_403_before_anything_about_its_input(api: Api, db: asyncpg.Connection) -> None:
    await seed(db)
    for method, path, body in (
        ("POST", "/products", {"x": 1}),
        ("PATCH", "/products/abc", {"name": ""}),
        ("POST", "/operations", {"operation_type": "sold"}),
        ("DELETE", "/api-keys/0", None),
    ):
        r = await api.client.request(method, path, json=body, headers=api.auth(Role.viewer))
        assert r.status_code == 403, (method, path, r.text)


async def test_without_a_valid_key_every_route_but_health_and_docs_is_401(api: Api, db: asyncpg.Connection) -> None:
    transfer, spare = await seed(db)
    for method, template in sorted(NEEDS):
        path = template.format(product_id=1, warehouse_id=1, key_id=spare, operation_id=1, transfer_id=transfer)
        for headers in ({}, {"Authorization": "Bearer wt_wrong"}, {"Authorization": "Basic dTpw"},
                        {"Authorization": "Bearer"}, {"Authorization": "Bearer wt_" + "x" * 300}):  # fmt: skip
            r = await api.client.request(method, path, json=BODIES.get(template), headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["type"] == "/problems/unauthenticated"
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert (await api.client.get(path)).status_code == 200, path
    assert await db.fetchval("SELECT count(*) FROM products") == 1


async def test_a_key_made_through_the_api_works_and_stops_working_when_revoked(api: Api) -> None:
    r = await api.post("/api-keys", {"name": "scanner 7", "role": "operator"})
    assert r.status_code == 201
    made = r.json()
    assert made["key"].startswith(made["key_prefix"]) and made["role"] == "operator"
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert (await api.client.get("/balances", headers=headers)).status_code == 200

    listed = (await api.get("/api-keys", role=Role.admin)).json()
    assert "scanner 7" in {k["name"] for k in listed} and all("key" not in k for k in listed)

    assert (await api.client.delete(f"/api-keys/{made['id']}", headers=api.auth(Role.admin))).status_code == 204
    assert (await api.client.get("/balances", headers=headers)).status_code == 401
    assert (await api.client.delete(f"/api-keys/{made['id']}", headers=api.auth(Role.admin))).status_code == 204
    r = await api.client.delete("/api-keys/999", headers=api.auth(Role.admin))
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-api-key"


async def test_the_last_admin_key_cannot_be_revoked(api: Api, db: asyncpg.Connection) -> None:
    admin_id = await db.fetchval("SELECT id FROM api_keys WHERE role = 'admin'")
    r = await api.client.delete(f"/api-keys/{admin_id}", headers=api.auth(Role.admin))
    assert r.status_code == 409 and r.json()["type"] == "/problems/last-admin-key"
    assert (await api.get("/api-keys", role=Role.admin)).status_code == 200


async def run_api_cli(database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    return await run_module("api", database_url, *args, **env)


async def test_create_key_prints_the_key_alone_on_its_last_line(api: Api, database_url: str) -> None:
    code, out, err = await run_api_cli(database_url, "create-key", "--name", "night shift", "--role", "viewer")
    assert code == 0, err
    key = out.splitlines()[-1]
    r = await api.client.get("/status-change-count", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    r = await api.client.post("/products", json={"name": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403

    code, _, err = await run_api_cli(database_url, "create-key", "--name", "x", "--role", "root")
    assert code == 2 and "invalid choice" in err


async def test_a_key_limited_to_warehouses_writes_only_there_and_reads_everywhere(
    api: Api, db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute(
        "INSERT INTO products (name) VALUES ('p1'); INSERT INTO warehouses (name) VALUES ('w1'), ('w2'), ('w3');"
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity)"
        " VALUES (1, 1, 50), (1, 2, 50), (1, 3, 50)"
    )
    code, out, err = await run_api_cli(
        database_url, "create-key", "--name", "store 1 and 3", "--role", "operator", "--warehouses", "1,3"
    )
    assert code == 0, err
    assert "warehouses 1,3" in out
    store_key = {"Authorization": f"Bearer {out.splitlines()[-1]}"}

    def receipt(warehouse: int) -> dict[str, object]:
        return {"operation_type": "receipt", "product_id": 1, "warehouse_id": warehouse, "quantity": 1}

    def transfer(source: int, destination: int) -> dict[str, object]:
        return {"product_id": 1, "from_warehouse_id": source, "to_warehouse_id": destination, "quantity": 1}

    def document(*warehouses: int) -> dict[str, object]:
        return {"lines": [receipt(w) for w in warehouses]}

    def count(*warehouses: int) -> dict[str, object]:
        return {"counts": [{"product_id": 1, "warehouse_id": w, "counted": 60} for w in warehouses]}

    matrix = [
        ("/operations", receipt(1), 201), ("/operations", receipt(3), 201), ("/operations", receipt(2), 403),
        ("/transfers", transfer(1, 3), 201), ("/transfers", transfer(1, 2), 403), ("/transfers", transfer(2, 1), 403),
        ("/documents", document(1, 3), 201), ("/documents", document(1, 2, 3), 403),
        ("/inventory-counts", count(3), 201), ("/inventory-counts", count(1, 2), 403),
    ]  # fmt: skip
    for path, body, expected in matrix:
        before = await db.fetchval("SELECT count(*) FROM warehouse_operations")
        r = await api.client.post(path, json=body, headers=store_key)
        assert r.status_code == expected, (path, body, r.text)
        if expected == 403:
            problem = r.json()
            assert problem["type"] == "/problems/outside-key-warehouses"
            assert "writes at warehouse(s) 1, 3 only" in problem["detail"] and "touches 2" in problem["detail"]
            assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == before
        # The same writes with an unlimited operator key all go through.
        assert (await api.post(path, body, role=Role.operator)).status_code == 201, (path, body)
    assert await db.fetchval("SELECT quantity FROM stock_balance WHERE warehouse_id = 2") > 50

    # Reads are not limited: a store's staff sees where else the stock is (to ask for a transfer).
    for path in ("/balances/warehouse/2", "/operations?warehouse_id=2", "/balances/product/1"):
        assert (await api.client.get(path, headers=store_key)).status_code == 200, path

    listed = {k["name"]: k["warehouses"] for k in (await api.get("/api-keys", role=Role.admin)).json()}
    assert (listed["store 1 and 3"], listed["test-operator"]) == ([1, 3], None)
    made = await api.post("/api-keys", {"name": "store 2", "role": "operator", "warehouses": [2]})
    assert made.status_code == 201 and made.json()["warehouses"] == [2]
    for key_body, status in (({"name": "x", "role": "viewer", "warehouses": [1]}, 422),
                         ({"name": "x", "role": "operator", "warehouses": []}, 422),
                         ({"name": "x", "role": "operator", "warehouses": [9]}, 404)):  # fmt: skip
        assert (await api.post("/api-keys", key_body)).status_code == status, key_body
    code, _, err = await run_api_cli(database_url, "create-key", "--name", "x", "--role", "admin", "--warehouses", "1")
    assert code == 2 and "only operator keys" in err
    code, _, err = await run_api_cli(
        database_url, "create-key", "--name", "x", "--role", "operator", "--warehouses", "a"
    )
    assert code == 2 and "not a comma-separated list" in err


async def test_local_admin_key_is_made_once_and_printed_again(database_url: str, tmp_path: object) -> None:
    from pathlib import Path

    file = Path(str(tmp_path)) / "admin-key"
    code, out, err = await run_api_cli(database_url, "local-admin-key", "--file", str(file))
    assert code == 0, err
    key = out.splitlines()[-1]
    assert file.read_text().strip() == key and (file.stat().st_mode & 0o777) == 0o600
    code, out, _ = await run_api_cli(database_url, "local-admin-key", "--file", str(file))
    assert code == 0 and out.splitlines()[-1] == key

    production = database_url.replace(":warehouse@", ":s3cret@")
    code, _, err = await run_api_cli(production, "local-admin-key", "--file", str(file), ENVIRONMENT="production")
    assert code == 2 and "local development" in err


async def test_metrics_count_requests_by_route_template_and_code(api: Api, db: asyncpg.Connection) -> None:
    await seed(db)
    for product in (1, 2, 3):
        await api.get(f"/balances/product/{product}")
    await api.client.get("/balances/product/1", headers={"Authorization": "Bearer wt_unknown"})  # refused unrouted
    too_large = {**api.auth(Role.admin), "Content-Type": "application/json"}
    await api.client.post("/products", content=b"x" * 70_000, headers=too_large)  # refused unread
    r = await api.metrics()  # on the metrics port: no key
    assert r.status_code == 200
    text = r.text
    route = {"method": "GET", "route": "/balances/product/{product_id}"}
    assert sample("warehouse_api_requests_total", text, **route, code="200") == 1
    assert sample("warehouse_api_requests_total", text, **route, code="404") == 2
    assert sample("warehouse_api_requests_total", text, **route, code="401") == 1
    assert sample("warehouse_api_requests_total", text, method="POST", route="/products", code="413") == 1
    assert sample("warehouse_api_request_duration_seconds_count", text, **route) == 4
    assert sample("process_open_fds", text) > 0


async def test_after_too_many_bad_keys_an_address_gets_429_and_its_good_keys_still_work(database_url: str) -> None:
    async with serve(database_url, api_auth_failures_per_minute=5, api_key_cache_seconds=1) as api:
        for role in (Role.viewer, Role.admin):  # good keys, checked once
            assert (await api.get("/products", role=role)).status_code == 200
        for i in range(5):
            r = await api.client.get("/products", headers={"Authorization": f"Bearer wt_made_up_{i}"})
            assert r.status_code == 401
        r = await api.client.get("/products", headers={"Authorization": "Bearer wt_made_up_5"})  # one more
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/too-many-failed-authentications"
        assert r.headers["retry-after"] == "12"  # 5 a minute: one more every 12 s
        r = await api.client.get("/products", headers={"Authorization": "Bearer wt_made_up_0"})
        assert r.status_code == 401  # refused before, and remembered: refused again without a query
        await asyncio.sleep(1.2)  # past the key cache's lifetime (1 s): known good, so checked again, not refused
        for role in (Role.viewer, Role.admin):
            assert (await api.get("/products", role=role)).status_code == 200
        r = await api.get("/products", role=Role.operator)  # a good key this process has not seen: refused too
        assert r.status_code == 429
