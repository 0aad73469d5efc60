"""Reports: movements over a period grouped by warehouse, product or day, from the ledger; and stock-outs, the
time each pair spent out of stock and running low, from the stored status-change log. JSON, or CSV with
`Accept: text/csv`."""

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.models import MAX_BIGINT, IsoTime, MovementTotals, StockOutTimes
from api.problems import InvalidRequest, responses
from api.routes.common import store

router = APIRouter(tags=["reports"])
DEFAULT_DAYS = 30
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV if asked for"}
}
Since = Annotated[
    IsoTime | None, Query(description=f"From this time (ISO 8601); default: {DEFAULT_DAYS} days before until.")
]
Until = Annotated[IsoTime | None, Query(description="Up to (not including) this time; default: now.")]
Filter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT)]


def period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        message = "since must be before until"
        raise InvalidRequest(f"query.since: {message}", errors=[{"field": "query.since", "message": message}])
    return start, end


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def as_csv(rows: Sequence[BaseModel], model: type[BaseModel], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(model.model_fields), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(row.model_dump(mode="json") for row in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


@router.get("/reports/movements", responses={**responses(), **CSV}, response_model=list[MovementTotals])
async def movements(
    request: Request,
    group_by: Annotated[Literal["warehouse", "product", "day"], Query(description="One row per …")] = "warehouse",
    since: Since = None,
    until: Until = None,
    product_id: Filter = None,
    warehouse_id: Filter = None,
) -> Any:
    """Units moved in the period: received, shipped, transferred in and out (each a positive number of units),
    adjusted (signed), and the net change; one row per warehouse, product or day (UTC), those without movements
    left out. A row's net is what its balances changed by in the period."""
    start, end = period(since, until)
    rows = await store(request).fetch("movements", start, end, product_id, warehouse_id, group_by)
    totals = [MovementTotals(**r) for r in rows]
    return as_csv(totals, MovementTotals, f"movements-by-{group_by}.csv") if wants_csv(request) else totals


@router.get("/reports/stock-outs", responses={**responses(), **CSV}, response_model=list[StockOutTimes])
async def stock_outs(
    request: Request,
    since: Since = None,
    until: Until = None,
    product_id: Filter = None,
    warehouse_id: Filter = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Pairs, longest out of stock first.")] = 100,
) -> Any:
    """For each pair, the time it spent out of stock and running low in the period, from the stored status
    changes (`consumers.store`'s log; a pair counts from its first stored change on), longest out of stock first;
    pairs that were available throughout are left out."""
    start, end = period(since, until)
    rows = await store(request).fetch("stock_outs", start, end, product_id, warehouse_id, limit)
    times = [StockOutTimes(**r) for r in rows]
    return as_csv(times, StockOutTimes, "stock-outs.csv") if wants_csv(request) else times
