"""Schemathesis, stateless, against the running API's /openapi.json: a few hundred generated requests, valid and
invalid, as an admin. No server error; every response documented (status, content type, headers, body schema)."""

import asyncio
import re
import sys
from pathlib import Path

import asyncpg
import pytest

from api.auth import Role
from tests.api_harness import Api

pytestmark = pytest.mark.integration
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# positive_data_acceptance expects every schema-valid request to succeed; the API rightly refuses some that the
# schema cannot describe (an adjustment of 0, a transfer to its own warehouse, a made-up cursor) with a 422.
EXCLUDED_CHECKS = "positive_data_acceptance"
ENDLESS = "/status-changes/stream"  # a live stream never ends: test_api_live covers it


async def test_generated_requests_get_no_server_error_and_documented_responses(
    api: Api, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await db.execute("INSERT INTO products (name) SELECT 'p' || g FROM generate_series(1, 3) g")
    await db.execute("INSERT INTO warehouses (name) SELECT 'w' || g FROM generate_series(1, 3) g")
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type) "
        "SELECT p, w, 20, 'receipt' FROM generate_series(1, 3) p, generate_series(1, 3) w"
    )
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{api.url}/openapi.json",
        "--header", f"Authorization: Bearer {api.keys[Role.admin]}",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--phases", "examples,coverage,fuzzing", "--max-examples", "10", "--seed", "20261127",
        "--generation-allow-x00", "true", "--exclude-path", ENDLESS,
        "--generation-database", "none", "--workers", "1", "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # it keeps a cache in .schemathesis/ of its working directory
    )  # fmt: skip
    out_bytes, _ = await proc.communicate()
    out = out_bytes.decode()
    assert proc.returncode == 0, out
    generated = re.search(r"(\d+) generated", out)
    assert generated and int(generated.group(1)) >= 300, out
    assert "Authentication failed" not in out, out
