"""A second stack of a test's own (other ports, other folder), so the stack the other tests use is left alone."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stack:
    def __init__(self, folder: Path) -> None:
        self.pgport, self.kafka_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "STACK_DIR": str(folder),
            "PGPORT": str(self.pgport),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_HEAP": "256m",
        }
        self.database_url = f"postgresql://warehouse:warehouse@127.0.0.1:{self.pgport}/warehouse"
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-C", str(REPO), target], env=self.env, capture_output=True, text=True, timeout=300
        )

    def stack_sh(self, *args: str) -> None:
        """stack/stack.sh with this stack's settings; fails the test when it fails."""
        done = subprocess.run(
            ["bash", str(REPO / "stack" / "stack.sh"), *args], env=self.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


@contextmanager
def private_stack() -> Iterator[Stack]:
    # The postgres OS user must be able to reach the folder, so not under pytest's private tmp.
    folder = Path(tempfile.mkdtemp(prefix="wt-stack-", dir="/tmp"))
    folder.chmod(0o755)
    stack = Stack(folder)
    try:
        yield stack
    finally:
        stack.make("down")
        shutil.rmtree(folder, ignore_errors=True)
