"""Fixtures: real PostgreSQL and Kafka; a fresh database (cloned from a migrated template) and fresh topic
names per test, so tests never see each other's data."""

import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from db.migrate import migrate
from tests.services import NoServices, Services, services


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture(scope="session")
def stack() -> Iterator[Services]:
    try:
        with services() as found:
            yield found
    except NoServices as e:
        pytest.fail(str(e), pytrace=False)


async def _create_database(stack: Services, template: str | None = None) -> str:
    name = f"wt_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(stack.database_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_database(stack: Services, name: str) -> None:
    admin = await asyncpg.connect(stack.database_url)
    try:
        # Plain DROP stops autovacuum by itself; FORCE (for a leftover session) needs pg_signal_backend.
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        except asyncpg.ObjectInUseError:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def template_database(stack: Services) -> AsyncIterator[str]:
    """A database with every migration applied; each test clones it."""
    name = await _create_database(stack)
    conn = await asyncpg.connect(with_database(stack.database_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    await _drop_database(stack, name)


@pytest.fixture
async def database_url(stack: Services, template_database: str) -> AsyncIterator[str]:
    """URL of a fresh, fully migrated database of this test's own."""
    name = await _create_database(stack, template=template_database)
    yield with_database(stack.database_url, name)
    await _drop_database(stack, name)


@pytest.fixture
async def empty_database_url(stack: Services) -> AsyncIterator[str]:
    """URL of a fresh database with no migration applied."""
    name = await _create_database(stack)
    yield with_database(stack.database_url, name)
    await _drop_database(stack, name)


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
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])
        yield topic_name
        await admin.delete_topics([topic_name])
    finally:
        await admin.close()
