"""Balances and the global status-change counter: the original system's read endpoints, same paths and shapes."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.models import MAX_BIGINT, Balance, StatusChangeCount, StatusTotals, StockStatus
from api.pagination import LINK_HEADER, Cursor, Limit, decode, paginate
from api.problems import InvalidRequest, UnknownProduct, UnknownWarehouse, responses
from api.routes.common import PathId, store

router = APIRouter(tags=["balances"])
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
StatusFilter = Annotated[
    list[StockStatus] | None,
    Query(
        description="Only balances with this status; repeat it for several (`status=running_low&status=out_of_stock`)."
    ),
]
ProductFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="Only this product's balances.")]
WarehouseFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="Only this warehouse's balances.")]


def scope(product_id: int | None, warehouse_id: int | None) -> str:
    """The list a balance cursor belongs to: a cursor of one product's list means nothing in another's."""
    if product_id is not None:
        return f"balances of product {product_id}"
    if warehouse_id is not None:
        return f"balances at warehouse {warehouse_id}"
    return "balances"


def page(request: Request, response: Response, rows: list[Any], limit: int, kind: str) -> list[Balance]:
    shown = paginate(request, response, rows, limit, kind, lambda r: (r["product_id"], r["warehouse_id"]))
    return [Balance(**r) for r in shown]


def path_id(request: Request, name: str) -> int:
    """An id from the path, checked as FastAPI would check a `PathId` parameter."""
    value = request.path_params[name]
    number = int(value) if value.isascii() and value.isdigit() and len(value.lstrip("0")) <= 19 else 0
    if not 1 <= number <= MAX_BIGINT:
        message = f"must be a whole number from 1 to {MAX_BIGINT}, got {value[:30]!r}"
        raise InvalidRequest(f"path.{name}: {message}", errors=[{"field": f"path.{name}", "message": message}])
    return number


# The hottest route, so registered first (matched first) and lean: its ids are read from the path here, not
# declared as parameters (FastAPI's validation of two path parameters costs more than the rest of the request's
# Python), and the response is serialized once, here. Its parameters are documented by hand.
_PAIR_PARAMETERS = [
    {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}}
    for name in ("product_id", "warehouse_id")
]


@router.get(
    "/balances/product/{product_id}/warehouse/{warehouse_id}",
    responses=responses(UnknownProduct, UnknownWarehouse),
    response_model=Balance,
    openapi_extra={"parameters": _PAIR_PARAMETERS},
)
async def pair_balance(request: Request) -> Response:
    """One product at one warehouse. A pair never stocked has quantity 0, `out_of_stock`, `updated_at` null."""
    product_id, warehouse_id = path_id(request, "product_id"), path_id(request, "warehouse_id")
    row = await store(request).fetchrow("balance", product_id, warehouse_id)
    assert row is not None
    if not row["product_known"]:
        raise UnknownProduct(f"product {product_id} does not exist")
    if not row["warehouse_known"]:
        raise UnknownWarehouse(f"warehouse {warehouse_id} does not exist")
    balance = Balance(
        product_id=product_id, warehouse_id=warehouse_id, quantity=row["quantity"] or 0,
        status=row["status"] or StockStatus.out_of_stock, updated_at=row["updated_at"],
    )  # fmt: skip
    return Response(balance.model_dump_json(), media_type="application/json")


@router.get("/balances", responses={**responses(), **PAGE})
async def list_balances(
    request: Request,
    response: Response,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
    product_id: ProductFilter = None,
    warehouse_id: WarehouseFilter = None,
) -> list[Balance]:
    """Every balance, ordered by product, then warehouse. The filters combine."""
    db = store(request)
    kind = scope(product_id, warehouse_id)
    after_product, after_warehouse = decode(kind, cursor, 2)
    if product_id is not None:
        rows = await db.fetch("balances_of_product", product_id, after_warehouse, status, warehouse_id, limit + 1)
    elif warehouse_id is not None:
        rows = await db.fetch("balances_at_warehouse", warehouse_id, after_product, status, limit + 1)
    else:
        rows = await db.fetch("balances", after_product, after_warehouse, status, limit + 1)
    return page(request, response, rows, limit, kind)


@router.get("/balances/product/{product_id}", responses={**responses(UnknownProduct), **PAGE})
async def product_balances(
    request: Request,
    response: Response,
    product_id: PathId,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
) -> list[Balance]:
    """A product's balance at every warehouse that has stocked it, ordered by warehouse."""
    db = store(request)
    kind = scope(product_id, None)
    _, after_warehouse = decode(kind, cursor, 2)
    rows = await db.fetch("balances_of_product", product_id, after_warehouse, status, None, limit + 1)
    if not rows and not await db.fetchval("product_exists", product_id):
        raise UnknownProduct(f"product {product_id} does not exist")
    return page(request, response, rows, limit, kind)


@router.get("/balances/warehouse/{warehouse_id}", responses={**responses(UnknownWarehouse), **PAGE})
async def warehouse_balances(
    request: Request,
    response: Response,
    warehouse_id: PathId,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: StatusFilter = None,
) -> list[Balance]:
    """A warehouse's balance of every product it has stocked, ordered by product."""
    db = store(request)
    kind = scope(None, warehouse_id)
    after_product, _ = decode(kind, cursor, 2)
    rows = await db.fetch("balances_at_warehouse", warehouse_id, after_product, status, limit + 1)
    if not rows and not await db.fetchval("warehouse_exists", warehouse_id):
        raise UnknownWarehouse(f"warehouse {warehouse_id} does not exist")
    return page(request, response, rows, limit, kind)


@router.get("/status-change-count", responses=responses())
async def status_change_count(request: Request) -> StatusChangeCount:
    """How many times any balance's status has changed, ever: exact, whatever the bridge has published."""
    return StatusChangeCount(status_changes=await store(request).fetchval("status_change_count"))


@router.get("/status-totals", responses=responses())
async def status_totals(request: Request) -> StatusTotals:
    """How many balances are available, running low and out of stock now (pairs never stocked are not counted)."""
    counts = {r["status"]: r["balances"] for r in await store(request).fetch("status_totals")}
    return StatusTotals(**{status.value: counts.get(status.value, 0) for status in StockStatus})
