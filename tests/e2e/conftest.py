"""The outage tests' stack: a second stack of the module's own (other ports, other folder), so that stopping Kafka
or PostgreSQL there leaves the stack the other tests use alone."""

from collections.abc import Iterator

import pytest

from tests.private_stack import Stack, private_stack


@pytest.fixture(scope="module")
def outage_stack() -> Iterator[Stack]:
    with private_stack() as stack:
        stack.stack_sh("start")
        yield stack
