"""One of the project's services (`python -m <module>`) in a process of its own, its output in a log file, its
metrics endpoint on a free port."""

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.private_stack import REPO, free_port


class ServiceProcess:
    def __init__(self, command: list[str], env: dict[str, str], log: Path, metrics_port_setting: str) -> None:
        self.metrics_port = free_port()
        self.command = command
        self.env, self.log = {**env, metrics_port_setting: str(self.metrics_port)}, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.command], env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.metrics_port}") as client:
            return await client.get(path)

    async def metric(self, name: str) -> float:
        """The value of an unlabelled metric on /metrics."""
        return sample(name, (await self.get("/metrics")).text)

    async def readiness(self) -> tuple[int, Any]:
        """/readyz: its status code and its JSON; (0, None) while the process does not serve it yet."""
        assert self.running(), self.output()
        try:
            r = await self.get("/readyz")
        except httpx.ConnectError:
            return 0, None
        return r.status_code, r.json()

    async def printed(self, text: str) -> bool:
        """Whether the process printed `text` (it must still run)."""
        assert self.running(), self.output()
        return text in self.output()


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def sample(name: str, text: str, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels in a Prometheus exposition."""
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    assert len(values) == 1, f"{name}{labels} not found once in:\n{text}"
    return values[0]
