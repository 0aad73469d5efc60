"""Balances and the global status-change counter: the original system's read endpoints, same paths and shapes."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import Role, require
from api.models import MAX_BIGINT, Balance, StatusChangeCount, StockStatus
from api.pagination import LINK_HEADER, Cursor, Limit, decode, paginate
from api.problems import UnknownProduct, UnknownWarehouse, responses
from api.routes.common import Db, PathId

router = APIRouter(tags=["balances"], dependencies=[Depends(require(Role.viewer))])
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
StatusFilter = Annotated[StockStatus | None, Query(description="Only balances with this status.")]
ProductFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="Only this product's balances.")]
WarehouseFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="Only this warehouse's balances.")]


def page(request: Request, response: Response, rows: list[Any], limit: int) -> list[Balance]:
    key = ("product_id", "warehouse_id")
    return [Balance(**r) for r in paginate(request, response, rows, limit, "balances", key)]


@router.get("/balances", responses={**responses(), **PAGE})
async def list_balances(
    request: Request,
    response: Response,
    db: Db,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
    product_id: ProductFilter = None,
    warehouse_id: WarehouseFilter = None,
) -> list[Balance]:
    """Every balance, ordered by product, then warehouse. The filters combine."""
    after_product, after_warehouse = decode("balances", cursor, 2)
    if product_id is not None:
        rows = await db.fetch("balances_of_product", product_id, after_warehouse, status, warehouse_id, limit + 1)
    elif warehouse_id is not None:
        rows = await db.fetch("balances_at_warehouse", warehouse_id, after_product, status, limit + 1)
    else:
        rows = await db.fetch("balances", after_product, after_warehouse, status, limit + 1)
    return page(request, response, rows, limit)


@router.get("/balances/product/{product_id}", responses={**responses(UnknownProduct), **PAGE})
async def product_balances(
    request: Request,
    response: Response,
    db: Db,
    product_id: PathId,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
) -> list[Balance]:
    """A product's balance at every warehouse that has stocked it, ordered by warehouse."""
    _, after_warehouse = decode("balances", cursor, 2)
    rows = await db.fetch("balances_of_product", product_id, after_warehouse, status, None, limit + 1)
    if not rows and not await db.fetchval("product_exists", product_id):
        raise UnknownProduct(f"product {product_id} does not exist")
    return page(request, response, rows, limit)


@router.get("/balances/warehouse/{warehouse_id}", responses={**responses(UnknownWarehouse), **PAGE})
async def warehouse_balances(
    request: Request,
    response: Response,
    db: Db,
    warehouse_id: PathId,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
) -> list[Balance]:
    """A warehouse's balance of every product it has stocked, ordered by product."""
    after_product, _ = decode("balances", cursor, 2)
    rows = await db.fetch("balances_at_warehouse", warehouse_id, after_product, status, limit + 1)
    if not rows and not await db.fetchval("warehouse_exists", warehouse_id):
        raise UnknownWarehouse(f"warehouse {warehouse_id} does not exist")
    return page(request, response, rows, limit)


@router.get(
    "/balances/product/{product_id}/warehouse/{warehouse_id}",
    responses=responses(UnknownProduct, UnknownWarehouse),
)
async def pair_balance(db: Db, product_id: PathId, warehouse_id: PathId) -> Balance:
    """One product at one warehouse. A pair never stocked has quantity 0, `out_of_stock`, `updated_at` null."""
    row = await db.fetchrow("balance", product_id, warehouse_id)
    assert row is not None
    if not row["product_known"]:
        raise UnknownProduct(f"product {product_id} does not exist")
    if not row["warehouse_known"]:
        raise UnknownWarehouse(f"warehouse {warehouse_id} does not exist")
    if row["quantity"] is None:
        return Balance(product_id=product_id, warehouse_id=warehouse_id, quantity=0,
                       status=StockStatus.out_of_stock, updated_at=None)  # fmt: skip
    return Balance(
        product_id=product_id, warehouse_id=warehouse_id, quantity=row["quantity"], status=row["status"],
        updated_at=row["updated_at"],
    )  # fmt: skip


@router.get("/status-change-count", responses=responses())
async def status_change_count(db: Db) -> StatusChangeCount:
    """How many times any balance's status has changed, ever: exact, whatever the bridge has published."""
    return StatusChangeCount(status_changes=await db.fetchval("status_change_count"))
