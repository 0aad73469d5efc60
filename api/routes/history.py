"""The history of status changes: the event log that `consumers.store` keeps (status_change_log), newest first."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.models import MAX_BIGINT, IsoTime, MinuteCount, StatusChangeRecord
from api.pagination import LINK_HEADER, Cursor, Limit, decode, paginate
from api.problems import InvalidRequest, responses
from api.routes.common import store

router = APIRouter(tags=["history"])
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
KIND = "status-changes"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEWEST = (datetime.max.replace(tzinfo=UTC), UUID(int=2**128 - 1))  # before every row: infinity, the greatest id
_HALF = 2**63


def _key(row: Any) -> tuple[int, int, int]:
    """A row's place in the order, as the three bigints a cursor carries: microseconds, and the id's two halves."""
    micros = (row["occurred_at"] - _EPOCH) // timedelta(microseconds=1)
    u = row["event_id"].int
    return micros, (u >> 64) - _HALF, (u & (2**64 - 1)) - _HALF


def _after(cursor: str | None) -> tuple[datetime, UUID]:
    if cursor is None:
        return _NEWEST
    micros, high, low = decode(KIND, cursor, 3)
    try:
        return _EPOCH + timedelta(microseconds=micros), UUID(int=((high + _HALF) << 64) | (low + _HALF))
    except OverflowError as e:
        message = "not a cursor of this list: pass the one from the previous page's Link header, unchanged"
        raise InvalidRequest(f"query.cursor: {message}", errors=[{"field": "query.cursor", "message": message}]) from e


Filter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT)]


@router.get("/status-changes", responses={**responses(), **PAGE})
async def status_changes(
    request: Request,
    response: Response,
    limit: Limit = 100,
    cursor: Cursor = None,
    product_id: Filter = None,
    warehouse_id: Filter = None,
    since: Annotated[
        IsoTime | None, Query(description="Changes at or after this time (ISO 8601; UTC if no zone).")
    ] = None,
    until: Annotated[IsoTime | None, Query(description="Changes before this time.")] = None,
) -> list[StatusChangeRecord]:
    """Stored status changes, newest first; the filters combine. A change appears here once `consumers.store` has
    read it from the topic (well under a second behind, while it runs)."""
    db = store(request)
    after_time, after_id = _after(cursor)
    bounds = (since or datetime.min.replace(tzinfo=UTC), until or datetime.max.replace(tzinfo=UTC))
    if product_id is not None:
        rows = await db.fetch("status_changes_of_product", after_time, after_id, *bounds, product_id, warehouse_id,
                              limit + 1)  # fmt: skip
    elif warehouse_id is not None:
        rows = await db.fetch("status_changes_at_warehouse", after_time, after_id, *bounds, warehouse_id, limit + 1)
    else:
        rows = await db.fetch("status_changes", after_time, after_id, *bounds, limit + 1)
    return [StatusChangeRecord(**r) for r in paginate(request, response, rows, limit, KIND, _key)]


@router.get("/status-changes/per-minute", responses=responses())
async def per_minute(
    request: Request, minutes: Annotated[int, Query(ge=1, le=24 * 60, description="How far back.")] = 60
) -> list[MinuteCount]:
    """Stored status changes per minute over the last `minutes` (default an hour), oldest first, empty minutes too."""
    return [MinuteCount(**r) for r in await store(request).fetch("status_changes_per_minute", minutes)]
