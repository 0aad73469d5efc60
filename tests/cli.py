"""Running a command of the project (`python -m <module> …`) as a user would, against a database."""

import asyncio
import os
import sys


async def run_module(module: str, database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """`python -m <module> <args>` with DATABASE_URL (and `env`) set: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args,
        env={**os.environ, "DATABASE_URL": database_url, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
