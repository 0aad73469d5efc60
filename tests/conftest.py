"""Fixtures: real PostgreSQL and Kafka; a fresh database (cloned from a migrated template) and fresh topic
names per test, so tests never see each other's data."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from db.migrate import migrate
from db.scratch import create_database, drop_database, with_database
from tests.api_harness import Api, serve
from tests.bridge_harness import Bridges
from tests.services import NoServices, Services, services
from tests.topic import create_topic, delete_topics


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/containers (minutes of image builds and podman) runs under `make test-containers` alone, which sets
    WAREHOUSE_TEST_CONTAINERS=1; `make test` does not collect it, whatever its -m."""
    if collection_path == Path(__file__).parent / "containers" and not os.environ.get("WAREHOUSE_TEST_CONTAINERS"):
        return True
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[Services]:
    try:
        with services() as found:
            yield found
    except NoServices as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
async def template_database(stack: Services) -> AsyncIterator[str]:
    """A database with every migration applied; each test clones it."""
    name = await create_database(stack.database_url, "wt_template")
    conn = await asyncpg.connect(with_database(stack.database_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    await drop_database(stack.database_url, name)


@pytest.fixture
async def database_url(stack: Services, template_database: str) -> AsyncIterator[str]:
    """URL of a fresh, fully migrated database of this test's own."""
    name = await create_database(stack.database_url, "wt_test", template=template_database)
    yield with_database(stack.database_url, name)
    await drop_database(stack.database_url, name)


@pytest.fixture
async def empty_database_url(stack: Services) -> AsyncIterator[str]:
    """URL of a fresh database with no migration applied."""
    name = await create_database(stack.database_url, "wt_test")
    yield with_database(stack.database_url, name)
    await drop_database(stack.database_url, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
def kafka_bootstrap(stack: Services) -> str:
    return stack.kafka_bootstrap_servers


@pytest.fixture
def topic_name() -> str:
    """A topic name of this test's own (not created)."""
    return f"test.{uuid.uuid4().hex[:12]}.status-changes"


@pytest.fixture
async def topic(kafka_bootstrap: str, topic_name: str) -> AsyncIterator[str]:
    """A created topic of this test's own, one partition, deleted afterwards."""
    await create_topic(kafka_bootstrap, topic_name)
    yield topic_name
    await delete_topics(kafka_bootstrap, topic_name)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """The API over this test's database, served on a loopback port; a key for each role. Tests send many bad
    keys from this one address: the failed-authentication limit is raised here (its own test keeps it low)."""
    async with serve(database_url, api_auth_failures_per_minute=100_000) as running:
        yield running


@pytest.fixture
async def bridges(database_url: str, kafka_bootstrap: str, topic_name: str, tmp_path: Path) -> AsyncIterator[Bridges]:
    """A maker of bridges (real processes) over this test's database and topic; all killed afterwards."""
    made = Bridges(database_url, kafka_bootstrap, topic_name, tmp_path)
    yield made
    await made.cleanup()
