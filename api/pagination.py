"""Keyset pagination: a page is `limit` rows after the last key of the previous page, which travels in an opaque
`cursor`; the next page's URL is in the `Link: <…>; rel="next"` header (none on the last page)."""

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Query, Request, Response

from api.problems import InvalidRequest

MIN_BIGINT = -(2**63)
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="From the previous page's `Link` header; absent: the first page.")
]
LINK_HEADER = {
    "Link": {
        "description": 'The next page: `<URL>; rel="next"`. Absent on the last page.',
        "schema": {"type": "string"},
    }
}


def encode(kind: str, key: Sequence[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, *key]).encode()).decode().rstrip("=")


def decode(kind: str, cursor: str | None, size: int) -> tuple[int, ...]:
    """The key a cursor of this kind of list carries; the smallest key when there is no cursor."""
    if cursor is None:
        return (MIN_BIGINT,) * size
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        data = None
    valid = (
        isinstance(data, list)
        and len(data) == size + 1
        and data[0] == kind
        and all(type(v) is int and MIN_BIGINT <= v < 2**63 for v in data[1:])
    )
    if not valid:
        message = "not a cursor of this list: pass the one from the previous page's Link header, unchanged"
        raise InvalidRequest(f"query.cursor: {message}", errors=[{"field": "query.cursor", "message": message}])
    return tuple(data[1:])


def paginate(
    request: Request,
    response: Response,
    rows: Sequence[Any],
    limit: int,
    kind: str,
    key: Callable[[Any], Sequence[int]],
) -> Sequence[Any]:
    """The page's rows (the query fetched one more than `limit`, to know whether a next page exists), with the
    Link header set when it does; `key` gives a row's place in the list's order."""
    if len(rows) <= limit:
        return rows
    page = rows[:limit]
    cursor = encode(kind, key(page[-1]))
    # A relative reference (RFC 8288): right behind a proxy, and never built from a client's Host header.
    next_url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'
    return page
