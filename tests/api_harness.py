"""The API served by a real uvicorn on a loopback port, in the test's event loop, over a test's own database, with
one key per role; tests talk to it over HTTP."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import uvicorn

from api.__main__ import make_key
from api.app import create_app
from api.auth import Role
from api.config import ApiSettings
from api.server import config
from tests.private_stack import free_port


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest keeps its own signal handlers


@dataclass
class Api:
    url: str
    keys: dict[Role, str]
    client: httpx.AsyncClient
    metrics_url: str
    """The API's own port for /metrics, /healthz and /readyz (API_METRICS_PORT)."""

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def metrics(self, path: str = "/metrics") -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.metrics_url) as client:
            return await client.get(path)

    async def get(self, path: str, role: Role = Role.viewer, **kw: object) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(role), **kw)  # type: ignore[arg-type]

    async def post(self, path: str, json: object, role: Role = Role.admin, **headers: str) -> httpx.Response:
        return await self.client.post(path, json=json, headers={**self.auth(role), **headers})


@contextlib.asynccontextmanager
async def serve(database_url: str, make_keys: bool = True, **settings: object) -> AsyncIterator[Api]:
    settings.setdefault("api_metrics_port", free_port())
    api_settings = ApiSettings(database_url=database_url, **settings)  # type: ignore[arg-type]
    app = create_app(api_settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(config(app, api_settings, log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the API stopped while starting")
            await asyncio.sleep(0.01)
        keys = {role: await make_key(database_url, f"test-{role}", role) for role in Role} if make_keys else {}
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Api(url, keys, client, f"http://127.0.0.1:{api_settings.api_metrics_port}")
    finally:
        server.should_exit = True
        await task
        sock.close()
