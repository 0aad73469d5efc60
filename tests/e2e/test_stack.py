"""`make stack` / `make down` as a user runs them, on a second stack of its own (other ports, other folder),
so the stack the other tests use is left alone."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.test_kafka_transactions import read_all
from tests.private_stack import Stack, private_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def second_stack() -> Iterator[Stack]:
    with private_stack() as stack:
        yield stack


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
