"""One of the project's services (`python -m <module>`) in a process of its own, its output in a log file, its
metrics endpoint on a free port."""

import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

import httpx

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
        text = (await self.get("/metrics")).text
        values = [float(line.split()[1]) for line in text.splitlines() if line.split(" ")[0] == name]
        assert len(values) == 1, f"{name} not found once in:\n{text}"
        return values[0]
