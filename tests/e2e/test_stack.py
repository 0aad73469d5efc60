"""`make stack` / `make down` as a user runs them, on a second stack of its own (other ports, other folder),
so the stack the other tests use is left alone."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.test_kafka_transactions import read_all

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def second_stack() -> Iterator[Stack]:
    # The postgres OS user must be able to reach the folder, so not under pytest's private tmp.
    folder = Path(tempfile.mkdtemp(prefix="wt-stack-", dir="/tmp"))
    folder.chmod(0o755)
    stack = Stack(folder)
    try:
        yield stack
    finally:
        stack.make("down")
        shutil.rmtree(folder, ignore_errors=True)


async def test_stack_twice_is_harmless_and_data_survives_down_and_up(second_stack: Stack) -> None:
    first = second_stack.make("stack")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ready" in first.stdout
    assert f"DATABASE_URL={second_stack.database_url}" in first.stdout
    assert f"KAFKA_BOOTSTRAP_SERVERS={second_stack.bootstrap}" in first.stdout

    again = second_stack.make("stack")
    assert again.returncode == 0 and "already running; nothing to do" in again.stdout
    status = second_stack.make("stack-status")
    assert status.returncode == 0 and status.stdout.count(": running") == 2

    conn = await asyncpg.connect(second_stack.database_url)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
    await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=second_stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("kept", num_partitions=1, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=second_stack.bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait("kept", b"still here")
    await producer.stop()

    down = second_stack.make("down")
    assert down.returncode == 0, down.stderr
    stopped = second_stack.make("stack-status")
    assert stopped.returncode != 0 and stopped.stdout.count(": stopped") == 2

    back = second_stack.make("stack")
    assert back.returncode == 0, back.stdout + back.stderr
    conn = await asyncpg.connect(second_stack.database_url)
    assert await conn.fetchval("SELECT v FROM kept") == "still here"
    await conn.close()
    assert await read_all(second_stack.bootstrap, "kept", "read_committed") == [b"still here"]


def test_a_missing_prerequisite_names_what_to_install(second_stack: Stack, tmp_path: Path) -> None:
    # A PATH with bash and coreutils but no java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (
        "bash",
        "dirname",
        "id",
        "cat",
        "env",
        "make",
        "mkdir",
        "sed",
        "grep",
        "sleep",
        "touch",
        "runuser",
        "md5sum",
    ):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    second_stack.env["PATH"] = str(bin_dir)

    result = second_stack.make("stack")

    assert result.returncode != 0
    assert "missing java" in result.stderr and "docker compose up --build" in result.stderr
