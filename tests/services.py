"""Where the tests find PostgreSQL and Kafka: the environment, else testcontainers, else a clear failure."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from db.config import normalize_database_url

POSTGRES_IMAGE = "postgres:15"
KAFKA_IMAGE = "apache/kafka:4.1.1"


@dataclass(frozen=True)
class Services:
    database_url: str
    kafka_bootstrap_servers: str


class NoServices(RuntimeError):
    pass


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@contextmanager
def _containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer(POSTGRES_IMAGE, username="warehouse", password="warehouse", dbname="warehouse") as pg,
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
    ):
        url = pg.get_connection_url(driver=None)
        yield Services(normalize_database_url(url), kafka.get_bootstrap_server())


@contextmanager
def services() -> Iterator[Services]:
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if database_url and bootstrap:
        yield Services(normalize_database_url(database_url), bootstrap)
    elif database_url or bootstrap:
        raise NoServices("set both DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS, or neither")
    elif _docker_answers():
        with _containers() as started:
            yield started
    else:
        raise NoServices(
            "the tests need PostgreSQL and Kafka: run `make stack` and use `make test` "
            "(or set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS;"
            " with a Docker engine, testcontainers starts them)"
        )
