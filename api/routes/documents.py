"""Documents: many lines (a delivery note, a picking list, a stock correction) applied as one statement through the
database's set-based path, all or nothing; and inventory counts, which record each difference as an adjustment."""

import uuid

import asyncpg
from fastapi import APIRouter, Request, Response

from api.auth import OPERATOR
from api.models import (
    BalanceAfterWrite,
    CountedLine,
    DocumentIn,
    DocumentOut,
    InventoryCountIn,
    InventoryCountOut,
    OperationIn,
)
from api.problems import InsufficientStock, UnknownProduct, UnknownWarehouse
from api.routes.operations import REPLAYED, WRITE_ERRORS, IdempotencyKey, written
from api.store import Q, translated

router = APIRouter(tags=["operations"])


async def balances_after(conn: asyncpg.Connection, pairs: set[tuple[int, int]]) -> list[BalanceAfterWrite]:
    products, warehouses = zip(*sorted(pairs), strict=True)
    return [BalanceAfterWrite(**r) for r in await conn.fetch(Q["balances_after_write"], products, warehouses)]


@router.post(
    "/documents", status_code=201, responses={**WRITE_ERRORS, 201: {"headers": REPLAYED}}, dependencies=[OPERATOR]
)
async def record_document(
    request: Request, response: Response, body: DocumentIn, idempotency_key: IdempotencyKey = None
) -> DocumentOut:
    """Up to 10,000 lines in one transaction and one statement: every line applies, in order, or none does. A
    line that would take a balance below zero (counting the document's earlier lines) refuses the whole document
    with 409, naming the line (`line`, from 0) with its product, warehouse, available and requested; an unknown
    product or warehouse is a 404 naming a line with it (of the smallest unknown id, its first)."""
    products: list[int] = []
    warehouses: list[int] = []
    quantities: list[int] = []
    kinds: list[str] = []
    transfers: list[uuid.UUID | None] = []
    row_line: list[int] = []  # the line of each operation written, in order
    for i, line in enumerate(body.lines):
        legs: list[tuple[int, int, str, uuid.UUID | None]]
        if isinstance(line, OperationIn):
            legs = [(line.warehouse_id, line.signed_quantity, line.operation_type, None)]
        else:
            transfer = uuid.uuid4()
            legs = [(line.from_warehouse_id, -line.quantity, "transfer_out", transfer),
                    (line.to_warehouse_id, line.quantity, "transfer_in", transfer)]  # fmt: skip
        for warehouse, quantity, kind, transfer_id in legs:
            products.append(line.product_id)
            warehouses.append(warehouse)
            quantities.append(quantity)
            kinds.append(kind)
            transfers.append(transfer_id)
            row_line.append(i)

    async def write(conn: asyncpg.Connection) -> DocumentOut:
        document = await conn.fetchrow(Q["create_document"], body.reference, len(body.lines))
        assert document is not None
        try:
            async with translated():  # here, to name the line
                rows = await conn.fetch(
                    Q["document_lines"], products, warehouses, quantities, kinds, transfers, document["id"]
                )
        except (InsufficientStock, UnknownProduct, UnknownWarehouse) as e:
            raise named_line(e, row_line, products, warehouses) from e
        return DocumentOut(
            document_id=document["id"], reference=body.reference, lines=len(body.lines),
            operation_ids=sorted(r["id"] for r in rows),
            created_at=document["created_at"],
            balances=await balances_after(conn, set(zip(products, warehouses, strict=True))),
        )  # fmt: skip

    result = await written(request, response, "POST /documents", body, warehouses, idempotency_key, write)
    return DocumentOut.model_validate(result)


def named_line(
    error: InsufficientStock | UnknownProduct | UnknownWarehouse,
    row_line: list[int],
    products: list[int],
    warehouses: list[int],
) -> Exception:
    """The database's error, with the document's line it is about."""
    if isinstance(error, InsufficientStock):
        line = row_line[error.row - 1]
        product, warehouse = error.pair
        available, requested = error.extensions["available"], error.extensions["requested"]
        return InsufficientStock(
            f"line {line}: product {product} at warehouse {warehouse} has {available} (after the document's earlier "
            f"lines), the line requests {requested}; nothing of the document was applied",
            line=line, product_id=product, warehouse_id=warehouse, available=available, requested=requested,
        )  # fmt: skip
    if isinstance(error, UnknownProduct):
        line = row_line[products.index(error.missing)]
        return UnknownProduct(
            f"line {line}: product {error.missing} does not exist; nothing of the document was applied", line=line
        )
    line = row_line[warehouses.index(error.missing)]
    return UnknownWarehouse(
        f"line {line}: warehouse {error.missing} does not exist; nothing of the document was applied", line=line
    )


@router.post(
    "/inventory-counts",
    status_code=201,
    responses={**WRITE_ERRORS, 201: {"headers": REPLAYED}},
    dependencies=[OPERATOR],
)
async def record_inventory_count(
    request: Request, response: Response, body: InventoryCountIn, idempotency_key: IdempotencyKey = None
) -> InventoryCountOut:
    """What was counted, for one or many pairs (up to 10,000, each once): for each, the difference from the stored
    balance is recorded as an adjustment, computed under the pair's lock so that no operation slips in between
    (a count that matches records nothing). All lines or none, in one transaction."""
    products = [c.product_id for c in body.counts]
    warehouses = [c.warehouse_id for c in body.counts]

    async def write(conn: asyncpg.Connection) -> InventoryCountOut:
        rows = await conn.fetch(Q["count_stock"], products, warehouses, [c.counted for c in body.counts])
        after = {
            (b.product_id, b.warehouse_id): b
            for b in await balances_after(conn, set(zip(products, warehouses, strict=True)))
        }
        lines = [counted_line(r, after[r["product_id"], r["warehouse_id"]]) for r in rows]
        return InventoryCountOut(adjusted=sum(line.operation_id is not None for line in lines), lines=lines)

    result = await written(request, response, "POST /inventory-counts", body, warehouses, idempotency_key, write)
    return InventoryCountOut.model_validate(result)


def counted_line(row: asyncpg.Record, balance: BalanceAfterWrite) -> CountedLine:
    return CountedLine(
        line=row["line"] - 1, product_id=row["product_id"], warehouse_id=row["warehouse_id"], counted=row["counted"],
        stored=row["stored"], difference=row["counted"] - row["stored"], operation_id=row["operation_id"],
        balance=balance,
    )  # fmt: skip
