"""Writes of stock: operations (receipt, shipment, adjustment) and transfers. The database's triggers apply each
to the balances, statuses, counter and outbox in the same transaction; the response shows the balances after."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel

from api.auth import OPERATOR, caller
from api.models import BalanceAfterWrite, OperationIn, OperationOut, TransferIn, TransferOut
from api.problems import (
    IdempotencyKeyReused,
    InsufficientStock,
    OutsideKeyWarehouses,
    UnknownProduct,
    UnknownWarehouse,
    responses,
)
from api.routes.common import store
from api.store import Q, request_hash

router = APIRouter(tags=["operations"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): a retry with the same key gets the first result and writes nothing.",
    ),
]  # fmt: skip
WRITE_ERRORS = responses(
    UnknownProduct, UnknownWarehouse, InsufficientStock, IdempotencyKeyReused, OutsideKeyWarehouses
)
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored result of an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string"},
    }
}


async def balance_after(conn: asyncpg.Connection, product_id: int, warehouse_id: int) -> BalanceAfterWrite:
    row = await conn.fetchrow(Q["balance_after_write"], product_id, warehouse_id)
    assert row is not None, "the write made the row"
    return BalanceAfterWrite(**row)


async def written(
    request: Request,
    response: Response,
    route: str,
    body: BaseModel,
    warehouses: Iterable[int],
    idempotency_key: str | None,
    write: Callable[[asyncpg.Connection], Awaitable[BaseModel]],
) -> dict[str, Any]:
    """What every write route does around its `write`: refuses one touching a warehouse outside the key's, then
    runs it once per Idempotency-Key (a replay says so in its headers). Returns the result as JSON data."""
    by = caller(request)
    by.may_write_at(*warehouses)
    fingerprint = request_hash(route, body.model_dump_json())
    result, was_replayed = await store(request).write_once(by, idempotency_key, fingerprint, write)
    if was_replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post(
    "/operations",
    status_code=201,
    responses={**WRITE_ERRORS, 201: {"headers": REPLAYED}},
    dependencies=[OPERATOR],
)
async def record_operation(
    request: Request,
    response: Response,
    body: OperationIn,
    idempotency_key: IdempotencyKey = None,
) -> OperationOut:
    """Record a receipt, a shipment or an adjustment. A shipment (or a negative adjustment) larger than the stock
    is refused with 409 and changes nothing."""

    async def write(conn: asyncpg.Connection) -> OperationOut:
        row = await conn.fetchrow(
            Q["record_operation"], body.product_id, body.warehouse_id, body.signed_quantity, body.operation_type
        )
        assert row is not None
        return OperationOut(
            operation_id=row["id"], operation_type=body.operation_type, product_id=body.product_id,
            warehouse_id=body.warehouse_id, quantity=body.quantity, created_at=row["created_at"],
            balance=await balance_after(conn, body.product_id, body.warehouse_id),
        )  # fmt: skip

    result = await written(request, response, "POST /operations", body, [body.warehouse_id], idempotency_key, write)
    return OperationOut.model_validate(result)


@router.post(
    "/transfers",
    status_code=201,
    responses={**WRITE_ERRORS, 201: {"headers": REPLAYED}},
    dependencies=[OPERATOR],
)
async def transfer(
    request: Request,
    response: Response,
    body: TransferIn,
    idempotency_key: IdempotencyKey = None,
) -> TransferOut:
    """Move stock of a product from one warehouse to another, atomically: not enough at the source moves
    nothing (409)."""

    async def write(conn: asyncpg.Connection) -> TransferOut:
        transfer_id = await conn.fetchval(
            Q["transfer"], body.product_id, body.from_warehouse_id, body.to_warehouse_id, body.quantity
        )
        return TransferOut(
            transfer_id=transfer_id, product_id=body.product_id, quantity=body.quantity,
            source=await balance_after(conn, body.product_id, body.from_warehouse_id),
            destination=await balance_after(conn, body.product_id, body.to_warehouse_id),
        )  # fmt: skip

    warehouses = [body.from_warehouse_id, body.to_warehouse_id]
    result = await written(request, response, "POST /transfers", body, warehouses, idempotency_key, write)
    return TransferOut.model_validate(result)
