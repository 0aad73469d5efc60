"""The live streams over HTTP and WebSocket, with the bridge running: an operation's status change reaches a
connected client within 2 s of its commit; filters; keys."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.auth import Role
from tests.api_harness import Api, serve
from tests.bridge_harness import Bridges, wait_for_log

pytestmark = pytest.mark.integration


@pytest.fixture
async def live_api(database_url: str, kafka_bootstrap: str, topic_name: str, bridges: Bridges) -> AsyncIterator[Api]:
    bridge = bridges().start()
    await wait_for_log(bridge, "leader: publishing")
    async with serve(database_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic_name) as api:
        for name in ("product 1", "product 2"):
            await api.post("/products", {"name": name, "low_stock_threshold": 5})
        await api.post("/warehouses", {"name": "North"})
        yield api


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


async def receipt(api: Api, product: int, quantity: int = 20) -> float:
    """Records a receipt that changes a status; the time its commit is known to the client."""
    body = {"operation_type": "receipt", "product_id": product, "warehouse_id": 1, "quantity": quantity}
    r = await api.post("/operations", body, role=Role.operator)
    assert r.status_code == 201 and r.json()["balance"]["previous_status"] != r.json()["balance"]["status"]
    return time.monotonic()


async def test_sse_and_websocket_deliver_a_change_within_2_s_of_its_commit_filtered(live_api: Api) -> None:
    api = live_api
    ws_url = (
        api.url.replace("http://", "ws://") + f"/ws/status-changes?product_id=1&access_token={api.keys[Role.viewer]}"
    )
    async with (
        api.client.stream("GET", "/status-changes/stream?product_id=1", headers=api.auth(Role.viewer)) as sse,
        connect(ws_url) as ws,
    ):
        assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
        events = sse_events(sse)
        await receipt(api, product=2)  # filtered out for both clients
        committed = await receipt(api, product=1)

        kind, data = await asyncio.wait_for(anext(events), 10)
        sse_latency = time.monotonic() - committed
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        ws_latency = time.monotonic() - committed

    assert kind == "status-changed"
    for event in (data, message):
        assert (event["product_id"], event["warehouse_id"]) == (1, 1)
        assert (event["old_status"], event["new_status"]) == ("out_of_stock", "available")
    assert data["event_id"] == message["event_id"]
    assert sse_latency < 2 and ws_latency < 2, (sse_latency, ws_latency)


async def test_the_streams_need_a_key(live_api: Api) -> None:
    api = live_api
    r = await api.client.get("/status-changes/stream")
    assert r.status_code == 401 and r.json()["type"] == "/problems/unauthenticated"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(api.url.replace("http://", "ws://") + "/ws/status-changes?access_token=wt_wrong"):
            pass
    assert refused.value.response.status_code == 403
    url = f"/status-changes/stream?access_token={api.keys[Role.viewer]}"  # as a browser's EventSource sends it
    async with api.client.stream("GET", url) as sse:
        assert sse.status_code == 200
    r = await api.client.get(f"/balances?access_token={api.keys[Role.viewer]}")  # only the streams take it
    assert r.status_code == 401
