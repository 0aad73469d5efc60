"""Products and warehouses: the reference data operations point at. Reads for every key, changes for admins."""

from typing import Any

from fastapi import APIRouter, Request, Response

from api.auth import ADMIN
from api.models import Product, ProductIn, ProductPatch, Warehouse, WarehouseIn
from api.pagination import LINK_HEADER, Cursor, Limit, decode, paginate
from api.problems import UnknownProduct, UnknownWarehouse, responses
from api.routes.common import PathId, store

router = APIRouter()
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}


def by_id(row: Any) -> tuple[int]:
    return (row["id"],)


@router.post("/products", status_code=201, tags=["products"], responses=responses(), dependencies=[ADMIN])
async def create_product(request: Request, body: ProductIn) -> Product:
    """A new product; its threshold defaults to 10."""
    row = await store(request).fetchrow("create_product", body.name, body.low_stock_threshold)
    assert row is not None
    return Product(**row)


@router.get("/products", tags=["products"], responses={**responses(), **PAGE})
async def list_products(
    request: Request, response: Response, limit: Limit = 100, cursor: Cursor = None
) -> list[Product]:
    """Every product, by id."""
    (after,) = decode("products", cursor, 1)
    rows = await store(request).fetch("products", after, limit + 1)
    return [Product(**r) for r in paginate(request, response, rows, limit, "products", by_id)]


@router.get("/products/{product_id}", tags=["products"], responses=responses(UnknownProduct))
async def get_product(request: Request, product_id: PathId) -> Product:
    row = await store(request).fetchrow("product", product_id)
    if row is None:
        raise UnknownProduct(f"product {product_id} does not exist")
    return Product(**row)


@router.patch("/products/{product_id}", tags=["products"], responses=responses(UnknownProduct), dependencies=[ADMIN])
async def update_product(request: Request, product_id: PathId, body: ProductPatch) -> Product:
    """Rename a product or change its low-stock threshold. A new threshold re-evaluates the product's status at
    every warehouse in the same transaction (status changes are counted and published like any other); it waits
    for writes in progress."""
    row = await store(request).fetchrow("update_product", product_id, body.name, body.low_stock_threshold)
    if row is None:
        raise UnknownProduct(f"product {product_id} does not exist")
    return Product(**row)


@router.post("/warehouses", status_code=201, tags=["warehouses"], responses=responses(), dependencies=[ADMIN])
async def create_warehouse(request: Request, body: WarehouseIn) -> Warehouse:
    row = await store(request).fetchrow("create_warehouse", body.name)
    assert row is not None
    return Warehouse(**row)


@router.get("/warehouses", tags=["warehouses"], responses={**responses(), **PAGE})
async def list_warehouses(
    request: Request, response: Response, limit: Limit = 100, cursor: Cursor = None
) -> list[Warehouse]:
    """Every warehouse, by id."""
    (after,) = decode("warehouses", cursor, 1)
    rows = await store(request).fetch("warehouses", after, limit + 1)
    return [Warehouse(**r) for r in paginate(request, response, rows, limit, "warehouses", by_id)]


@router.get("/warehouses/{warehouse_id}", tags=["warehouses"], responses=responses(UnknownWarehouse))
async def get_warehouse(request: Request, warehouse_id: PathId) -> Warehouse:
    row = await store(request).fetchrow("warehouse", warehouse_id)
    if row is None:
        raise UnknownWarehouse(f"warehouse {warehouse_id} does not exist")
    return Warehouse(**row)
