"""Reading the ledger: the operations (every movement, who made it), one operation, both legs of a transfer."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.models import MAX_BIGINT, IsoTime, Name, Operation, Transfer
from api.pagination import LINK_HEADER, MIN_BIGINT, Cursor, Limit, decode, paginate
from api.problems import UnknownOperation, UnknownTransfer, responses
from api.routes.common import PathId, store
from api.store import Q

router = APIRouter(tags=["ledger"])
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
KIND = "operations"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEWEST = (2**63 - 1, 2**63 - 1)  # microseconds and id after every row's
_TICK = timedelta(microseconds=1)  # PostgreSQL's time resolution

Filter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT)]
OperationType = Literal["receipt", "shipment", "transfer_in", "transfer_out", "adjustment"]

# Each filter's condition on the ledger (alias o); the query's $1..$3 are the cursor and the rows.
CONDITIONS = {
    "product_id": "o.product_id = ${}",
    "warehouse_id": "o.warehouse_id = ${}",
    "operation_type": "o.operation_type = ANY (${}::operation_type[])",
    "transfer_id": "o.transfer_id = ${}",
    "document_id": "o.document_id = ${}",
    "actor": "o.actor = ${}",
    "api_key_id": "o.api_key_id = ${}",
    "since": "o.created_at >= ${}",
    "until": "o.created_at < ${}",
}


def _key(row: Any) -> tuple[int, int]:
    """A row's place in the order: its time in microseconds, then its id."""
    return (row["created_at"] - _EPOCH) // timedelta(microseconds=1), row["operation_id"]


def start_after(cursor: str | None, until: datetime | None) -> tuple[datetime, int]:
    """Where a page starts: after the cursor's row, or from the newest; never after `until`, which then is the
    bound the index scan starts from (as a mere filter it would be checked against every row newer than it)."""
    micros, after_id = _NEWEST if cursor is None else decode(KIND, cursor, 2)
    try:
        after_time = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        after_time = datetime.max.replace(tzinfo=UTC)
    if until is not None and after_time >= until:
        return until, MIN_BIGINT
    return after_time, after_id


def ledger_query(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """The page query with the given filters (their values not None), and their values, from $4 on."""
    given = [(name, value) for name, value in filters.items() if value is not None]
    where = "".join(f" AND {CONDITIONS[name].format(i)}" for i, (name, _) in enumerate(given, start=4))
    return Q["operations"].replace("/* filters */", where), [value for _, value in given]


@router.get("/operations", responses={**responses(), **PAGE})
async def list_operations(
    request: Request,
    response: Response,
    limit: Limit = 100,
    cursor: Cursor = None,
    product_id: Filter = None,
    warehouse_id: Filter = None,
    operation_type: Annotated[
        list[OperationType] | None, Query(description="One or more (repeat the parameter): any of them.")
    ] = None,
    transfer_id: UUID | None = None,
    document_id: Filter = None,
    actor: Annotated[Name | None, Query(description="Operations made by this actor (an API key's name, …).")] = None,
    api_key_id: Filter = None,
    since: Annotated[IsoTime | None, Query(description="At or after this time (ISO 8601; UTC if no zone).")] = None,
    until: Annotated[IsoTime | None, Query(description="Before this time.")] = None,
) -> list[Operation]:
    """The ledger, newest first; the filters combine. A page reads down the ledger's time index and skips the
    rows that do not match: a few ms for any common value at any depth of a ledger of millions, longer for a rare
    one (one pair of thousands: see docs/operations.md, "Reading the ledger")."""
    db = store(request)
    if document_id is not None:  # its operations share its time (one transaction): the scan's bounds
        at = await db.fetchval("document_time", document_id)
        if at is None:
            return []
        since, until = max(since or at, at), min(until or at + _TICK, at + _TICK)
    after_time, after_id = start_after(cursor, until)
    sql, values = ledger_query({
        "product_id": product_id, "warehouse_id": warehouse_id, "operation_type": operation_type,
        "transfer_id": transfer_id, "document_id": document_id, "actor": actor, "api_key_id": api_key_id,
        "since": since, "until": until,
    })  # fmt: skip
    rows = await db.fetch_sql(sql, after_time, after_id, limit + 1, *values)
    return [Operation(**r) for r in paginate(request, response, rows, limit, KIND, _key)]


@router.get("/operations/{operation_id}", responses=responses(UnknownOperation))
async def get_operation(request: Request, operation_id: PathId) -> Operation:
    row = await store(request).fetchrow("operation", operation_id)
    if row is None:
        raise UnknownOperation(f"operation {operation_id} does not exist")
    return Operation(**row)


@router.get("/transfers/{transfer_id}", responses=responses(UnknownTransfer))
async def get_transfer(request: Request, transfer_id: UUID) -> Transfer:
    """Both legs of a transfer."""
    legs = [Operation(**r) for r in await store(request).fetch("transfer_legs", transfer_id)]
    if not legs:
        raise UnknownTransfer(f"transfer {transfer_id} does not exist")
    out = next(leg for leg in legs if leg.operation_type == "transfer_out")
    into = next(leg for leg in legs if leg.operation_type == "transfer_in")
    return Transfer(
        transfer_id=transfer_id, product_id=out.product_id, quantity=into.change,
        from_warehouse_id=out.warehouse_id, to_warehouse_id=into.warehouse_id, created_at=out.created_at,
        actor=out.actor, legs=[out, into],
    )  # fmt: skip
