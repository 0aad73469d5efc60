"""The live streams over HTTP and WebSocket, with the bridge running: an operation's status change reaches a
connected client within 2 s of its commit; filters; keys."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

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
    assert refused.value.response.status_code == 401  # told as an HTTP request would be
    assert json.loads(refused.value.response.body)["type"] == "/problems/unauthenticated"
    with pytest.raises(InvalidStatus) as refused:  # a bad filter is told so, not as an auth failure
        url = f"/ws/status-changes?product_id=x&access_token={api.keys[Role.viewer]}"
        async with connect(api.url.replace("http://", "ws://") + url):
            pass
    assert refused.value.response.status_code == 422
    problem = json.loads(refused.value.response.body)
    assert problem["type"] == "/problems/validation" and problem["errors"][0]["field"] == "query.product_id"
    url = f"/status-changes/stream?access_token={api.keys[Role.viewer]}"  # as a browser's EventSource sends it
    async with api.client.stream("GET", url) as sse:
        assert sse.status_code == 200
    r = await api.client.get(f"/balances?access_token={api.keys[Role.viewer]}")  # only the streams take it
    assert r.status_code == 401
    r = await asyncio.wait_for(api.client.head("/status-changes/stream", headers=api.auth(Role.viewer)), 10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream") and r.content == b""


@pytest.fixture
async def quick_api(database_url: str, kafka_bootstrap: str, topic: str) -> AsyncIterator[Api]:
    """Keys trusted for 1 s; headers and bodies due within 1 s (an open stream is past both)."""
    async with serve(
        database_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic,
        api_key_cache_seconds=1, api_header_timeout=1, api_body_timeout=1,
    ) as api:  # fmt: skip
        yield api


async def new_key(api: Api, role: Role) -> tuple[int, str]:
    r = await api.post("/api-keys", {"name": f"streamer {role}", "role": role})
    assert r.status_code == 201
    return r.json()["id"], r.json()["key"]


async def sse_end(response: httpx.Response) -> dict[str, object]:
    """The `event: closed` a stream ends with (its data)."""
    async for kind, data in sse_events(response):
        if kind == "closed":
            return data
    raise AssertionError("the stream ended without event: closed")


@pytest.mark.parametrize("revoked_by", ["another process (SQL)", "this process (DELETE /api-keys)"])
async def test_a_revoked_key_ends_the_streams_it_opened_within_the_key_cache_lifetime(
    quick_api: Api, db: asyncpg.Connection, revoked_by: str
) -> None:
    api = quick_api
    ws_base = api.url.replace("http://", "ws://") + "/ws/status-changes?access_token="
    viewer_id, viewer = await new_key(api, Role.viewer)
    operator_id, operator = await new_key(api, Role.operator)
    _, bystander = await new_key(api, Role.viewer)
    async with (
        api.client.stream("GET", f"/status-changes/stream?access_token={viewer}") as viewer_sse,
        api.client.stream("GET", f"/status-changes/stream?access_token={operator}") as operator_sse,
        api.client.stream("GET", f"/status-changes/stream?access_token={bystander}") as bystander_sse,
        connect(ws_base + viewer) as viewer_ws,
        connect(ws_base + operator) as operator_ws,
    ):
        assert {viewer_sse.status_code, operator_sse.status_code, bystander_sse.status_code} == {200}
        await asyncio.sleep(2)  # past API_HEADER_TIMEOUT and the key cache's lifetime: the streams run on
        revoked = time.monotonic()
        for key_id in (viewer_id, operator_id):
            if revoked_by.startswith("another"):
                await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
            else:
                assert (await api.client.delete(f"/api-keys/{key_id}", headers=api.auth(Role.admin))).status_code == 204
        ends = await asyncio.wait_for(asyncio.gather(sse_end(viewer_sse), sse_end(operator_sse)), 10)
        for ws in (viewer_ws, operator_ws):
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "the API key was revoked")
        took = time.monotonic() - revoked
        assert list(ends) == [{"reason": "the API key was revoked"}] * 2
        assert took < 1 + 1.5, took  # the cache's lifetime (1 s), and a margin for a loaded machine
        # Another key's stream goes on.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sse_end(bystander_sse), 1.5)
