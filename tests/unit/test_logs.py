"""The one logging setup: readable lines by default, JSON lines with LOG_FORMAT=json, context fields included."""

import json
import logging
from collections.abc import Iterator

import pytest

from common import logs


@pytest.fixture
def root_handlers() -> Iterator[None]:
    """setup() replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved, level


def test_json_lines_carry_time_level_logger_message_and_the_context(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup("json")
    log = logging.getLogger("consumers.runner")
    log.warning("skipped the message at partition %d, offset %d: %s", 2, 17, "not JSON",
                extra={"partition": 2, "offset": 17})  # fmt: skip
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first.keys() == {"time", "level", "logger", "message", "partition", "offset"}
    assert first["level"] == "WARNING" and first["logger"] == "consumers.runner"
    assert first["message"] == "skipped the message at partition 2, offset 17: not JSON"
    assert (first["partition"], first["offset"]) == (2, 17)
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert second["message"] == "it failed" and "ValueError: boom" in second["exception"]


def test_text_lines_are_for_people(root_handlers: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup()
    logging.getLogger("bridge.relay").warning("Kafka unavailable, retrying: %s", "KafkaConnectionError")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" WARNING bridge.relay: Kafka unavailable, retrying: KafkaConnectionError")


def test_aiokafka_is_quiet(root_handlers: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup()
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id 1")
    assert capsys.readouterr().err == ""
