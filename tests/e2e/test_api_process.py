"""`python -m api` as `make up` runs it: a local admin key from `local-admin-key`, served requests, SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.private_stack import free_port

pytestmark = pytest.mark.e2e


def test_the_api_process_serves_with_the_local_admin_key_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    made = subprocess.run(
        [sys.executable, "-m", "api", "local-admin-key", "--file", str(tmp_path / "key")],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = made.stdout.splitlines()[-1]
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
