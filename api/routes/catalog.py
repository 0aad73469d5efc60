"""Products and warehouses: the reference data operations point at. Reads for every key, changes for admins."""

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from api.auth import ADMIN
from api.models import Name, Product, ProductIn, ProductPatch, Warehouse, WarehouseIn
from api.pagination import LINK_HEADER, Cursor, Limit, decode, paginate
from api.problems import IdTaken, UnknownProduct, UnknownWarehouse, responses
from api.routes.common import PathId, store

router = APIRouter()
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
DRAWS = 10  # ids drawn for a new row before giving up (each taken one moves the sequence on)


def by_id(row: Any) -> tuple[int]:
    return (row["id"],)


async def created(request: Request, what: str, wanted: int | None, query: str, *args: Any) -> asyncpg.Record:
    """The row `query` inserts: with the id asked for (409 if it is taken), or the next free one. Ids inserted
    in SQL keep the sequence ahead of them (migration 0007), but two sessions racing there can leave it a step
    behind: a drawn id that is taken is drawn again."""
    for _ in range(DRAWS):
        try:
            row = await store(request).fetchrow(query, wanted, *args)
        except asyncpg.UniqueViolationError as e:
            if wanted is not None:
                raise IdTaken(f"{what} {wanted} already exists; leave id out for the next free one") from e
            continue
        assert row is not None
        return row
    raise IdTaken(
        f"the next {DRAWS} {what} ids were all taken (rows inserted with their own ids while the table's trigger "
        f"keep_identity_ahead was off?); give an id, or move the sequence past them: SELECT setval("
        f"pg_get_serial_sequence('{what}s', 'id'), (SELECT max(id) FROM {what}s))"
    )


@router.post("/products", status_code=201, tags=["products"], responses=responses(IdTaken), dependencies=[ADMIN])
async def create_product(request: Request, body: ProductIn) -> Product:
    """A new product; its threshold defaults to 10. With `id`, that id (409 if a product has it)."""
    return Product(**await created(request, "product", body.id, "create_product", body.name, body.low_stock_threshold))


@router.get("/products", tags=["products"], responses={**responses(), **PAGE})
async def list_products(
    request: Request,
    response: Response,
    limit: Limit = 100,
    cursor: Cursor = None,
    name: Annotated[Name | None, Query(description="Only products whose name contains this, any case.")] = None,
) -> list[Product]:
    """Every product, by id; or those whose name contains `name`."""
    (after,) = decode("products", cursor, 1)
    pattern = None if name is None else "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await store(request).fetch("products", after, limit + 1, pattern)
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


@router.post("/warehouses", status_code=201, tags=["warehouses"], responses=responses(IdTaken), dependencies=[ADMIN])
async def create_warehouse(request: Request, body: WarehouseIn) -> Warehouse:
    """A new warehouse. With `id`, that id (409 if a warehouse has it)."""
    return Warehouse(**await created(request, "warehouse", body.id, "create_warehouse", body.name))


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
