"""Live status changes, as they reach Kafka: Server-Sent Events and a WebSocket, with optional filters. For every
key (viewer); browsers, which cannot set headers on these, may pass the key as `?access_token=<key>`."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse

from api.auth import caller
from api.live import LiveFeed, LiveUnavailable, Subscription
from api.models import MAX_BIGINT
from api.problems import answer, responses

router = APIRouter(tags=["live"])
Filter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT)]
KEEP_ALIVE_S = 15.0


def feed(app: object) -> LiveFeed:
    live: LiveFeed = app.state.live  # type: ignore[attr-defined]
    return live


@router.get(
    "/status-changes/stream",
    response_class=StreamingResponse,
    responses={
        **responses(LiveUnavailable),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "An event stream"},
    },
)
async def stream(request: Request, product_id: Filter = None, warehouse_id: Filter = None) -> StreamingResponse:
    """Server-Sent Events: `event: status-changed`, `id:` the event id, `data:` the event's JSON (as on the topic).
    A comment every 15 s keeps the connection open. A client too far behind, or whose key is revoked, gets
    `event: closed` with the reason, and the stream ends."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if getattr(request.state, "head", False):  # HEAD: the headers a GET would have, no subscription
        return StreamingResponse(iter(()), media_type="text/event-stream", headers=headers)
    subscription = await feed(request.app).subscribe(caller(request).key_id, product_id, warehouse_id)

    async def events() -> AsyncIterator[str]:
        try:
            yield ": listening\n\n"
            while True:
                try:
                    first = await asyncio.wait_for(subscription.next(), KEEP_ALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                changes = [first, *subscription.pending()]
                sent = [c.sse for c in changes if c is not None]
                if None in changes:
                    sent.append(f"event: closed\ndata: {json.dumps({'reason': subscription.dropped})}\n\n")
                yield "".join(sent)
                if None in changes:
                    return
        finally:
            feed(request.app).unsubscribe(subscription)

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.websocket("/ws/status-changes")
async def websocket(ws: WebSocket, product_id: Filter = None, warehouse_id: Filter = None) -> None:
    """Each status change as one JSON text message. The server closes with a code and the reason: 1013 for a
    client too far behind, 4401 when the key is revoked, 1001 when the API shuts down."""
    try:
        subscription: Subscription = await feed(ws.app).subscribe(ws.state.caller.key_id, product_id, warehouse_id)
    except LiveUnavailable as e:
        await answer(ws.scope, ws.receive, ws.send, e)
        return
    await ws.accept()

    async def forward() -> None:
        while (change := await subscription.next()) is not None:
            await ws.send_text(change.json)
        await ws.close(code=subscription.close_code, reason=(subscription.dropped or "dropped")[:120])

    async def until_closed() -> None:  # the client says nothing; this notices when it goes
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(forward()), asyncio.create_task(until_closed())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        feed(ws.app).unsubscribe(subscription)
