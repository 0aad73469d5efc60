"""HTTP details a client relies on: no redirect that names another server, HEAD wherever GET is, 415 for a body
that is not JSON, and the documented problem for one that is not valid JSON."""

import asyncio

import asyncpg
import pytest

from api.auth import Role
from tests.api_harness import Api, serve
from tests.private_stack import free_port

pytestmark = pytest.mark.integration


async def test_a_trailing_slash_is_a_404_without_a_redirect_to_the_host_header(api: Api) -> None:
    for path in ("/balances/", "/products/", "/status-change-count/"):
        r = await api.client.get(path, headers={**api.auth(Role.viewer), "Host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers, (path, r.headers)
        assert r.json()["type"] == "/problems/not-found"


async def test_head_answers_wherever_get_does_with_the_same_status_and_headers_and_no_body(
    api: Api, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO products (name) VALUES ('p1'); INSERT INTO warehouses (name) VALUES ('w1')")
    paths = [
        path.replace("{product_id}", "1").replace("{warehouse_id}", "1").replace("{key_id}", "1")
        for path, operations in (await api.client.get("/openapi.json")).json()["paths"].items()
        if "get" in operations and not path.endswith("/stream")  # below
    ]
    assert len(paths) > 10
    for path in [*paths, "/", "/docs", "/dashboard", "/static/dashboard.js", "/balances/product/999/warehouse/1"]:
        get = await api.client.get(path, headers=api.auth(Role.admin))
        head = await api.client.head(path, headers=api.auth(Role.admin))
        same = {name: value for name, value in get.headers.items() if name not in ("date", "etag", "last-modified")}
        assert head.status_code == get.status_code, path
        assert {name: head.headers.get(name) for name in same} == same, path  # content-length included
        assert head.content == b"", path
    r = await api.client.head("/balances")
    assert r.status_code == 401 and r.content == b""  # a key is needed as for GET
    r = await api.client.post("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


async def test_head_on_the_live_stream_answers_at_once_without_starting_the_feed(database_url: str) -> None:
    """With no Kafka to reach, a GET would wait 10 s for the feed and answer 503; HEAD needs no feed."""
    async with serve(database_url, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}") as api:
        r = await asyncio.wait_for(api.client.head("/status-changes/stream", headers=api.auth(Role.viewer)), 3)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.content == b""
        assert (await api.client.get("/readyz")).json()["kafka"] == "not used yet"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_is_a_415_and_writes_nothing(api: Api, content_type: str | None) -> None:
    headers = {**api.auth(Role.admin), **({"Content-Type": content_type} if content_type else {})}
    r = await api.client.post("/products", content=b'{"name": "bolt"}', headers=headers)
    assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/unsupported-media-type" and "application/json" in r.json()["detail"]
    assert (await api.get("/products")).json() == []
    ok = await api.client.post(  # JSON with parameters, or a +json type, is JSON
        "/products",
        content=b'{"name": "bolt"}',
        headers={**api.auth(Role.admin), "Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 201


@pytest.mark.parametrize("body", [b'{"name": "x",', b'{"name": "\xff"}', b"\x00"])
async def test_a_body_that_is_not_valid_json_gets_the_documented_400(api: Api, body: bytes) -> None:
    headers = {**api.auth(Role.admin), "Content-Type": "application/json"}
    r = await api.client.post("/products", content=body, headers=headers)
    assert r.status_code == 400
    problem = r.json()
    assert (problem["type"], problem["title"]) == ("/problems/malformed-request", "Malformed request"), problem
    assert problem["detail"].startswith("the body is not JSON")


async def test_the_first_page_sends_a_browser_to_the_dashboard_and_tells_a_client_how_to_start(api: Api) -> None:
    browser = await api.client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 303 and browser.headers["location"] == "/dashboard"
    client = await api.client.get("/")  # no key, no Accept: as curl asks
    assert client.status_code == 200 and browser.headers["vary"] == client.headers["vary"] == "Accept"
    first = client.json()
    assert (first["docs"], first["openapi"], first["dashboard"]) == ("/docs", "/openapi.json", "/dashboard")
    assert "python -m api create-key" in first["key"] and "Authorization: Bearer" in first["key"]
    for path in (first["docs"], first["openapi"], first["dashboard"]):
        assert (await api.client.get(path)).status_code == 200, path  # each link works without a key
