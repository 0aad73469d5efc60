"""`python -m api` as `make up` runs it: a local admin key from `local-admin-key`, served requests, SIGTERM; and what
it logs."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.private_stack import free_port

pytestmark = pytest.mark.e2e


def local_admin_key(env: dict[str, str], folder: Path) -> str:
    """`python -m api local-admin-key`, as `make up` runs it: the key it prints."""
    made = subprocess.run(
        [sys.executable, "-m", "api", "local-admin-key", "--file", str(folder / "key")],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return made.stdout.splitlines()[-1]


def test_the_api_process_serves_with_the_local_admin_key_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "API_PORT": str(port), "API_HOST": "127.0.0.1",
           "API_METRICS_PORT": str(free_port())}  # fmt: skip
    key = local_admin_key(env, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the API exited while starting"
            assert time.monotonic() < deadline, "the API did not become ready within 20 s"
            time.sleep(0.1)
        auth = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"http://127.0.0.1:{port}/warehouses", json={"name": "Dock 1"}, headers=auth)
        assert r.status_code == 201
        assert httpx.get(f"http://127.0.0.1:{port}/warehouses/{r.json()['id']}", headers=auth).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out


async def answers(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.TransportError:
        return False


def key_pieces_in(text: str, key: str) -> list[str]:
    """Every 8 characters of `key` past the prefix the database keeps (10) that appear in `text`."""
    return [key[i : i + 8] for i in range(10, len(key) - 7) if key[i : i + 8] in text]


async def test_no_api_key_reaches_a_log_line_even_with_the_access_log_on(
    database_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "API_PORT": str(port), "API_HOST": "127.0.0.1",
           "API_METRICS_PORT": str(free_port()), "API_ACCESS_LOG": "true",
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": topic}  # fmt: skip
    admin = local_admin_key(env, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/status-changes"
    unknown = "wt_" + "Q" * 43  # looks like a key, is none
    try:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            deadline = time.monotonic() + 20
            while not await answers(client, "/readyz"):
                assert proc.poll() is None and time.monotonic() < deadline, "the API did not become ready"
                await asyncio.sleep(0.1)
            auth = {"Authorization": f"Bearer {admin}"}
            made_key = (await client.post("/api-keys", json={"name": "viewer", "role": "viewer"}, headers=auth)).json()
            viewer = made_key["key"]
            async with client.stream("GET", f"/status-changes/stream?access_token={viewer}") as sse:
                assert sse.status_code == 200
            async with connect(f"{ws_url}?product_id=1&access_token={viewer}"):
                pass
            assert (await client.delete(f"/api-keys/{made_key['id']}", headers=auth)).status_code == 204
            for token in (viewer, unknown):  # refused, and logged as refused
                assert (await client.get(f"/status-changes/stream?access_token={token}")).status_code == 401
                with pytest.raises(InvalidStatus):
                    async with connect(f"{ws_url}?access_token={token}"):
                        pass
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    log = out.decode(errors="replace")
    assert '"WebSocket /ws/status-changes?product_id=1&access_token=' in log, log  # the handshakes were logged…
    assert "GET /status-changes/stream?access_token=" in log, log  # …and so were the requests
    for key in (admin, viewer, unknown):
        assert key_pieces_in(log, key) == [], log
